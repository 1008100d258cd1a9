package backoffice

import (
	"strings"
	"testing"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
)

// The audit log's snapshots carry nothing personal and never a key's hash.
func TestSnapshotsHoldNothingPersonal(t *testing.T) {
	m := ledger.Member{ID: "m1", CardNumber: "9410001234567892", Phone: "+821012345678", Name: "Kim Min-jun", Status: "active"}
	for _, got := range []string{string(MemberFields(m, true)), string(MemberFields(m, false))} {
		for _, secret := range []string{"Kim", "12345678", m.CardNumber} {
			if strings.Contains(got, secret) {
				t.Errorf("member snapshot %s shows %q", got, secret)
			}
		}
	}
	if got := string(MemberFields(m, true)); !strings.Contains(got, `"phone":"+82 10-****-5678"`) {
		t.Errorf("a created member's snapshot %s lacks the masked phone", got)
	}
	_, k := auth.NewSecret(auth.ModeLive)
	k.Role = auth.RolePOS
	if got := string(KeyFields(k)); strings.Contains(got, "hash") || !strings.Contains(got, k.Prefix) {
		t.Errorf("key snapshot %s", got)
	}
}
