package suggest

import "testing"

func TestNearest(t *testing.T) {
	known := []string{"member_id", "card_number", "store_id", "receipt", "purchase_amount", "points", "reason"}
	for _, c := range []struct{ in, want string }{
		{"purchase_amout", "purchase_amount"},  // a letter left out
		{"purchase_amuont", "purchase_amount"}, // two swapped
		{"recipt", "receipt"},
		{"memberid", "member_id"},
		{"storeid", "store_id"},
		{"Points", "points"},
		{"colour", ""}, // nothing near: no guess
		{"x", ""},
		{"reason", "reason"},
	} {
		if got := Nearest(c.in, known); got != c.want {
			t.Errorf("Nearest(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestDistance(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "", 3}, {"", "abc", 3}, {"abc", "abc", 0},
		{"abc", "acb", 1}, {"kitten", "sitting", 3}, {"batch-max", "bach-max", 1},
	} {
		if got := distance(c.a, c.b); got != c.want {
			t.Errorf("distance(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
