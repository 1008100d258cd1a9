package member

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pointd/pointd/internal/ledger"
)

// A member reads their own number whole and every consent; the same member
// encoded as a ledger.Member (what operators' answers carry) is masked.
func TestProfileJSON(t *testing.T) {
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	m := ledger.Member{ID: "m1", CardNumber: "9410000000000000", Phone: "+821012345678", Name: "Ada", Status: "active"}
	b, err := json.Marshal(Profile{Member: m, MarketingConsent: true, ConsentsUpdatedAt: &at})
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got["phone"] != "+821012345678" || got["name"] != "Ada" || got["marketing_consent"] != true ||
		got["analytics_consent"] != false || got["consents_updated_at"] == nil || got["id"] != "m1" {
		t.Fatalf("profile encodes %s", b)
	}
	b, _ = json.Marshal(m)
	if strings.Contains(string(b), "12345678") || !strings.Contains(string(b), "5678") {
		t.Fatalf("member encodes %s: want the phone masked", b)
	}
}
