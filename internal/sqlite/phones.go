package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/member"
)

var _ member.PhoneRekeyer = (*DB)(nil)

// rekeyName is the data_migrations row of NormalizePhones.
const rekeyName = "phone-e164"

// NormalizePhones re-seals and re-hashes every member's number in E.164,
// once, in one write transaction: SQLite has one writer, so two processes
// opening one folder at once take turns and the second finds the row the
// first recorded.
func (db *DB) NormalizePhones(ctx context.Context, normalize func(string) (string, error)) (member.PhoneRekey, error) {
	var rep member.PhoneRekey
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO data_migrations (name, done_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING`,
			rekeyName, timeArg(time.Now()))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			rep.AlreadyDone = true
			return nil
		}
		rows, err := tx.QueryContext(ctx, `SELECT `+memberCols+` FROM members m WHERE m.phone_enc IS NOT NULL
			ORDER BY m.created_at, m.id`)
		if err != nil {
			return err
		}
		var ms []ledger.Member
		for rows.Next() {
			var m ledger.Member
			if err := scanMember(rows, &m); err != nil {
				rows.Close()
				return err
			}
			ms = append(ms, m)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for i := range ms {
			if err := db.openPhone(&ms[i]); err != nil {
				return err
			}
		}
		steps, r := member.PlanPhoneRekey(ms, normalize)
		rep = r
		// Every hash is cleared first: a number that moves to the form
		// another member already stores must not trip the unique index
		// halfway through.
		if _, err := tx.ExecContext(ctx, `UPDATE members SET phone_hash = NULL, phone_dup_hash = NULL WHERE phone_enc IS NOT NULL`); err != nil {
			return err
		}
		p := db.phoneKey()
		for _, s := range steps {
			enc, hash, dup := s.Columns(p)
			if _, err := tx.ExecContext(ctx, `UPDATE members SET phone_enc = coalesce(?, phone_enc), phone_hash = ?, phone_dup_hash = ?
				WHERE id = ?`, enc, hash, dup, s.MemberID); err != nil {
				return fmt.Errorf("re-key the phone of member %s: %w", s.MemberID, err)
			}
		}
		return nil
	})
	if err != nil {
		return member.PhoneRekey{}, fmt.Errorf("sqlite: phone numbers to E.164: %w", err)
	}
	return rep, nil
}

// PhoneDuplicates lists the members that share one number: those whose
// number is marked a duplicate, with the member the number finds.
// Withdrawn members have no number; merged ones ('merged') are settled.
func (db *DB) PhoneDuplicates(ctx context.Context) ([][]ledger.Member, bool, error) {
	var done int
	if err := db.r.QueryRowContext(ctx, `SELECT count(*) FROM data_migrations WHERE name = ?`, rekeyName).Scan(&done); err != nil {
		return nil, false, fmt.Errorf("sqlite: phone duplicates: %w", err)
	}
	rows, err := db.r.QueryContext(ctx, `
		WITH dup AS (SELECT DISTINCT phone_dup_hash AS h FROM members
		             WHERE phone_dup_hash IS NOT NULL AND status NOT IN ('withdrawn', 'merged'))
		SELECT dup.h, `+memberCols+`
		FROM dup JOIN members m ON m.phone_hash = dup.h OR m.phone_dup_hash = dup.h
		WHERE m.status NOT IN ('withdrawn', 'merged')
		ORDER BY dup.h, m.created_at, m.id`)
	if err != nil {
		return nil, false, fmt.Errorf("sqlite: phone duplicates: %w", err)
	}
	defer rows.Close()
	var found []member.HashedMember
	for rows.Next() {
		var r member.HashedMember
		var phone sql.NullString
		var created sql.NullInt64
		m := &r.Member
		if err := rows.Scan(&r.Hash, &m.ID, &m.CardNumber, &phone, &m.Name, &m.Status, &m.AccountID, &created, &m.MergedInto); err != nil {
			return nil, false, fmt.Errorf("sqlite: phone duplicates: %w", err)
		}
		m.Phone, m.CreatedAt = phone.String, timeOf(created)
		if err := db.openPhone(m); err != nil {
			return nil, false, err
		}
		found = append(found, r)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("sqlite: phone duplicates: %w", err)
	}
	return member.GroupByHash(found), done > 0, nil
}
