package ledger

import "testing"

func TestCardNumbers(t *testing.T) {
	t.Run("generated numbers pass their own check", func(t *testing.T) {
		for range 1000 {
			c := NewCardNumber()
			if !ValidCardNumber(c) {
				t.Fatalf("%s fails its check digit", c)
			}
		}
	})
	t.Run("a known Luhn number is accepted and a typo refused", func(t *testing.T) {
		if !ValidCardNumber("4111111111111111") {
			t.Fatal("the classic test card should pass")
		}
		if ValidCardNumber("4111111111111121") {
			t.Fatal("a changed digit should fail")
		}
		if ValidCardNumber("411111111111111") || ValidCardNumber("411111111111111x") {
			t.Fatal("wrong length or a letter should fail")
		}
	})
}
