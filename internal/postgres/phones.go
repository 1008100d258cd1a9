package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/member"
)

var _ member.PhoneRekeyer = (*DB)(nil)

// rekeyName is the data_migrations row of NormalizePhones.
const rekeyName = "phone-e164"

// NormalizePhones re-seals and re-hashes every member's number in E.164,
// once, in one transaction. Several instances started at once all try: the
// first to insert the data_migrations row does the work, and the others
// wait on that row's unique key until it commits, then find it there and
// change nothing.
func (db *DB) NormalizePhones(ctx context.Context, normalize func(string) (string, error)) (member.PhoneRekey, error) {
	var rep member.PhoneRekey
	err := pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO data_migrations (name, done_at) VALUES ($1, now()) ON CONFLICT (name) DO NOTHING`, rekeyName)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			rep.AlreadyDone = true
			return nil
		}
		// Members created meanwhile by a running instance wait for this
		// transaction (their unique hash could be one re-keyed here).
		if _, err := tx.Exec(ctx, `LOCK TABLE members IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return err
		}
		ms, err := list(ctx, tx, db.scanMember, `SELECT `+memberCols+` FROM members m WHERE m.phone_enc IS NOT NULL
			ORDER BY m.created_at, m.id`)
		if err != nil {
			return err
		}
		steps, r := member.PlanPhoneRekey(ms, normalize)
		rep = r
		// Every hash is cleared first: a number that moves to the form
		// another member already stores must not trip the unique index
		// halfway through.
		if _, err := tx.Exec(ctx, `UPDATE members SET phone_hash = NULL, phone_dup_hash = NULL WHERE phone_enc IS NOT NULL`); err != nil {
			return err
		}
		p := db.phoneKey()
		for _, s := range steps {
			enc, hash, dup := s.Columns(p)
			if _, err := tx.Exec(ctx, `UPDATE members SET phone_enc = coalesce($1, phone_enc), phone_hash = $2, phone_dup_hash = $3
				WHERE id = $4`, enc, hash, dup, s.MemberID); err != nil {
				return fmt.Errorf("re-key the phone of member %s: %w", s.MemberID, err)
			}
		}
		return nil
	})
	if err != nil {
		return member.PhoneRekey{}, fmt.Errorf("postgres: phone numbers to E.164: %w", err)
	}
	return rep, nil
}

// PhoneDuplicates lists the members that share one number: those whose
// number is marked a duplicate, with the member the number finds.
// Withdrawn members have no number; merged ones are settled.
func (db *DB) PhoneDuplicates(ctx context.Context) ([][]ledger.Member, bool, error) {
	var done bool
	if err := db.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM data_migrations WHERE name = $1)`, rekeyName).Scan(&done); err != nil {
		return nil, false, fmt.Errorf("postgres: phone duplicates: %w", err)
	}
	scan := func(row pgx.Row) (member.HashedMember, error) {
		var r member.HashedMember
		var phone pgtype.Text
		var created pgtype.Timestamptz
		m := &r.Member
		if err := row.Scan(&r.Hash, &m.ID, &m.CardNumber, &phone, &m.Name, &m.Status, &m.AccountID, &created, &m.MergedInto); err != nil {
			return r, err
		}
		m.Phone, m.CreatedAt = phone.String, timeOf(created)
		return r, db.openPhone(m)
	}
	found, err := list(ctx, db.pool, scan, `
		WITH dup AS (SELECT DISTINCT phone_dup_hash AS h FROM members
		             WHERE phone_dup_hash IS NOT NULL AND status NOT IN ('withdrawn', 'merged'))
		SELECT dup.h, `+memberCols+`
		FROM dup JOIN members m ON m.phone_hash = dup.h OR m.phone_dup_hash = dup.h
		WHERE m.status NOT IN ('withdrawn', 'merged')
		ORDER BY dup.h, m.created_at, m.id`)
	if err != nil {
		return nil, false, fmt.Errorf("postgres: phone duplicates: %w", err)
	}
	return member.GroupByHash(found), done, nil
}
