package backoffice

import (
	"encoding/json"
	"time"

	"github.com/pointd/pointd/internal/auth"
	"github.com/pointd/pointd/internal/ledger"
	"github.com/pointd/pointd/internal/privacy"
)

// The audit log keeps, of each target, only the fields an operator changes
// and nothing personal: a member is its status (and a masked phone when it
// is created), never its name; a key is its role, owner and prefix, never
// its hash.

// MerchantFields is what the audit log keeps of a merchant.
func MerchantFields(m ledger.Merchant) json.RawMessage {
	return mustJSON(struct {
		Name              string `json:"name"`
		EarnRateBP        int64  `json:"earn_rate_bp"`
		PointValidityDays int    `json:"point_validity_days"`
		Status            string `json:"status"`
		MaxExplicitPoints int64  `json:"max_explicit_points"`
		// Only when set: the snapshots of merchants that never used it
		// read as they did before the setting existed.
		RequireMemberCode bool `json:"require_member_code,omitempty"`
	}{m.Name, m.EarnRateBP, m.PointValidityDays, m.Status, m.MaxExplicitPoints, m.RequireMemberCode})
}

// StoreFields is what the audit log keeps of a store.
func StoreFields(s ledger.Shop) json.RawMessage {
	return mustJSON(struct {
		MerchantID string `json:"merchant_id"`
		Name       string `json:"name"`
		Status     string `json:"status"`
	}{s.MerchantID, s.Name, s.Status})
}

// MemberFields is what the audit log keeps of a member: its status, and the
// phone masked (privacy.Mask) when withPhone (a creation).
func MemberFields(m ledger.Member, withPhone bool) json.RawMessage {
	v := struct {
		Phone  string `json:"phone,omitempty"`
		Status string `json:"status"`
	}{Status: m.Status}
	if withPhone {
		v.Phone = privacy.Mask(m.Phone)
	}
	return mustJSON(v)
}

// KeyFields is what the audit log keeps of an API key.
func KeyFields(k auth.Key) json.RawMessage {
	return mustJSON(struct {
		Prefix     string     `json:"prefix"`
		Role       auth.Role  `json:"role"`
		MerchantID string     `json:"merchant_id,omitempty"`
		StoreID    string     `json:"store_id,omitempty"`
		Name       string     `json:"name,omitempty"`
		RevokedAt  *time.Time `json:"revoked_at,omitempty"`
		ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	}{k.Prefix, k.Role, k.MerchantID, k.StoreID, k.Name, timePtr(k.RevokedAt), timePtr(k.ExpiresAt)})
}

// MergeFields is what the audit log keeps of a merged member after its
// merge: where it went and the points (its balance) it took there.
func MergeFields(into string, points int64) json.RawMessage {
	return mustJSON(struct {
		Status     string `json:"status"`
		MergedInto string `json:"merged_into"`
		Points     int64  `json:"points"`
	}{ledger.StatusMerged, into, points})
}

// AdjustmentFields is what the audit log keeps of an adjustment.
// ExplicitEarnFields is what the audit log keeps of an earn whose points
// were named instead of earned by the rate.
func ExplicitEarnFields(storeID, receipt string, purchaseAmount, points int64) json.RawMessage {
	return mustJSON(struct {
		StoreID        string `json:"store_id"`
		Receipt        string `json:"receipt"`
		PurchaseAmount int64  `json:"purchase_amount"`
		Points         int64  `json:"points"`
	}{storeID, receipt, purchaseAmount, points})
}

func AdjustmentFields(points int64) json.RawMessage {
	return mustJSON(struct {
		Points int64 `json:"points"`
	}{points})
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs of strings, numbers and times always encode
	}
	return b
}
