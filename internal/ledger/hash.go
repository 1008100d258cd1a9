package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
)

// ChainHash is SHA-256 over the previous transaction's hash and t's content
// (not its cancellation counters, which later cancellations change). Any edit
// of a transaction or its postings behind the ledger's back breaks the chain
// from that transaction on.
func ChainHash(prev []byte, t *Transaction) []byte {
	h := sha256.New()
	h.Write(prev)
	putInt(h, t.Seq)
	putStr(h, t.ID)
	putStr(h, string(t.Type))
	putStr(h, t.MemberID)
	putStr(h, t.MerchantID)
	putStr(h, t.StoreID)
	putStr(h, t.Receipt)
	putInt(h, t.PurchaseAmount)
	putInt(h, t.Points)
	putStr(h, t.RefID)
	putStr(h, t.Reason)
	putInt(h, t.CreatedAt.UnixMicro())
	if t.RestoreExpiresAt.IsZero() {
		putInt(h, 0)
	} else {
		putInt(h, t.RestoreExpiresAt.UnixMicro())
	}
	putInt(h, int64(len(t.Postings)))
	for _, p := range t.Postings {
		putInt(h, p.AccountID)
		putInt(h, p.Amount)
	}
	return h.Sum(nil)
}

// Length-prefixed fields: no two different contents hash the same input.
func putStr(h hash.Hash, s string) {
	putInt(h, int64(len(s)))
	h.Write([]byte(s))
}

func putInt(h hash.Hash, v int64) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	h.Write(b[:])
}
