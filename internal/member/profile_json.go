package member

import (
	"encoding/json"
	"time"

	"github.com/pointd/pointd/internal/ledger"
)

// MarshalJSON encodes a profile flat, as its fields read, with the phone
// whole: a profile is what a member reads of themselves. (ledger.Member
// encodes its phone masked; embedded as it is, its method would be the
// profile's and drop the consents.)
func (p Profile) MarshalJSON() ([]byte, error) {
	type own ledger.Member // the fields, without the masking method
	return json.Marshal(struct {
		own
		MarketingConsent  bool       `json:"marketing_consent"`
		AnalyticsConsent  bool       `json:"analytics_consent"`
		ConsentsUpdatedAt *time.Time `json:"consents_updated_at,omitempty"`
		WithdrawnAt       *time.Time `json:"withdrawn_at,omitempty"`
	}{own(p.Member), p.MarketingConsent, p.AnalyticsConsent, p.ConsentsUpdatedAt, p.WithdrawnAt})
}
