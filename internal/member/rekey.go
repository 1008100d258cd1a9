package member

import (
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/privacy"
)

// RekeyStep is what a store writes for one member when it re-keys phone
// numbers (PhoneRekeyer.NormalizePhones).
type RekeyStep struct {
	MemberID string
	// Phone is the number to keep: normalised, or as it was when the
	// normaliser refused it.
	Phone string
	// Changed: Phone is not what was stored, so it is sealed again.
	Changed bool
	// Duplicate: an older member has Phone. Its lookup hash goes to the
	// column that finds no one (phone_dup_hash), so that the unique lookup
	// hash stays the older member's and nothing is merged silently.
	Duplicate bool
}

// Columns are what the store writes for the step under data key p: the
// sealed number (nil when unchanged: the stored one stays), and its lookup
// hash either in the unique column that finds the member or, for a
// duplicate, in the one that finds no one.
func (s RekeyStep) Columns(p *privacy.Phones) (enc, hash, dupHash []byte) {
	if s.Changed {
		enc = p.Seal(s.Phone)
	}
	if s.Duplicate {
		return enc, nil, p.Index(s.Phone)
	}
	return enc, p.Index(s.Phone), nil
}

// PlanPhoneRekey decides the re-keying of members (given oldest first,
// with their numbers opened) the same way for every store: each number in
// the form normalize gives, the oldest member of a number keeps finding
// it, later ones are duplicates.
func PlanPhoneRekey(members []ledger.Member, normalize func(string) (string, error)) ([]RekeyStep, PhoneRekey) {
	var rep PhoneRekey
	steps := make([]RekeyStep, 0, len(members))
	owner := make(map[string]bool, len(members))
	for _, m := range members {
		rep.Read++
		s := RekeyStep{MemberID: m.ID, Phone: m.Phone}
		if n, err := normalize(m.Phone); err != nil {
			rep.Unparsed = append(rep.Unparsed, m)
		} else if n != m.Phone {
			s.Phone, s.Changed = n, true
			rep.Changed++
		}
		if owner[s.Phone] {
			s.Duplicate = true
			rep.Duplicates = append(rep.Duplicates, m)
		}
		owner[s.Phone] = true
		steps = append(steps, s)
	}
	return steps, rep
}

// HashedMember is a member with the lookup hash a duplicates query grouped
// it by.
type HashedMember struct {
	Hash   []byte
	Member ledger.Member
}

// GroupByHash turns the rows of a duplicates query, ordered by hash and
// then oldest first, into groups of members sharing one number. A group of
// one is dropped: a duplicate whose older twin has left (withdrawn, merged)
// is no longer anyone's duplicate.
func GroupByHash(rows []HashedMember) [][]ledger.Member {
	var groups [][]ledger.Member
	for i, r := range rows {
		if i == 0 || string(r.Hash) != string(rows[i-1].Hash) {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], r.Member)
	}
	out := groups[:0]
	for _, g := range groups {
		if len(g) > 1 {
			out = append(out, g)
		}
	}
	return out
}
