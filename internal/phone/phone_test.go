package phone

import (
	"strings"
	"testing"
)

func plan(t *testing.T, region string) Plan {
	t.Helper()
	p, err := NewPlan(region)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Every way of writing one Korean mobile number is that one number. The
// bare "821012345678" is one of them: libphonenumber reads leading digits
// equal to the region's country code as that code when what follows is a
// valid national number, which is what a person typing it means.
func TestOneNumberHoweverWritten(t *testing.T) {
	kr := plan(t, "KR")
	for _, s := range []string{
		"010-1234-5678", "01012345678", "010 1234 5678", "(010) 1234-5678",
		"+82 10 1234 5678", "+82 10-1234-5678", "+821012345678", "+82 010 1234 5678",
		"821012345678", " 821012345678", "+82 (0)10 1234 5678", "０１０-１２３４-５６７８",
	} {
		got, err := kr.Normalize(s)
		if err != nil || got != "+821012345678" {
			t.Errorf("Normalize(%q) = %q, %v; want +821012345678", s, got, err)
		}
	}
}

func TestRefusals(t *testing.T) {
	kr := plan(t, "KR")
	for _, s := range []string{
		"", "   ", "abc", "123", "010-12-345", "010-1234-56789", "+82 10 1234",
		"010-1234-5678 ext. 5", "+1 555", "+3312345678", "+999 1234 5678",
	} {
		got, err := kr.Normalize(s)
		if err == nil {
			t.Errorf("Normalize(%q) = %q, want a refusal", s, got)
			continue
		}
		if strings.Contains(err.Error(), "1234") {
			t.Errorf("Normalize(%q): the refusal repeats the number: %v", s, err)
		}
	}
	_, err := kr.Normalize("010-12-345")
	if err == nil || !strings.Contains(err.Error(), "valid in KR, such as 010-") || !strings.Contains(err.Error(), "+82 10") {
		t.Errorf("the refusal does not say what is expected: %v", err)
	}
}

// A number of the plan's own country is checked against its numbering
// plan; another country's for its length only (see Normalize).
func TestOtherCountries(t *testing.T) {
	kr, us := plan(t, "KR"), plan(t, "us")
	if us.Region() != "US" {
		t.Errorf("Region = %q", us.Region())
	}
	cases := []struct {
		p          Plan
		in, want   string
		wantRefuse bool
	}{
		{kr, "+1 201-555-0123", "+12015550123", false},
		{kr, "+1 555 010 4477", "+15550104477", false}, // not assigned, but a possible length
		{kr, "+44 20 7946 0001", "+442079460001", false},
		{us, "(201) 555-0123", "+12015550123", false},
		{us, "+1 555 010 4477", "", true}, // the plan's own country: checked in full
		{us, "010-1234-5678", "", true},   // not a US number, and not read as a Korean one
		{us, "+82 10 1234 5678", "+821012345678", false},
	}
	for _, c := range cases {
		got, err := c.p.Normalize(c.in)
		if (err != nil) != c.wantRefuse || got != c.want {
			t.Errorf("%s: Normalize(%q) = %q, %v; want %q (refused: %v)", c.p.Region(), c.in, got, err, c.want, c.wantRefuse)
		}
	}
}

func TestUnknownRegion(t *testing.T) {
	for _, r := range []string{"", "XX", "KOR", "001", "k"} {
		if _, err := NewPlan(r); err == nil || !strings.Contains(err.Error(), "KR") {
			t.Errorf("NewPlan(%q) = %v, want a refusal naming an example", r, err)
		}
	}
	var zero Plan
	if got, err := zero.Normalize("010-1234-5678"); err != nil || got != "+821012345678" || zero.Region() != DefaultRegion {
		t.Errorf("the zero Plan: %q, %v, region %q", got, err, zero.Region())
	}
}

// In a query string an unencoded + arrives as a space: it is read as the
// +, never as the start of a national number that might be someone else's.
func TestNormalizeQuery(t *testing.T) {
	kr, us := plan(t, "KR"), plan(t, "US")
	for _, c := range []struct {
		p    Plan
		in   string
		want string
	}{
		{kr, " 821012345678", "+821012345678"},
		{kr, " 82 10 1234 5678", "+821012345678"},
		{kr, "+821012345678", "+821012345678"},
		{kr, "010-1234-5678", "+821012345678"},
		{kr, " 010-1234-5678", "+821012345678"}, // a + never comes before a 0
		{us, " 821012345678", "+821012345678"},  // as Normalize("821012345678") in US would refuse
		{us, " 12015550123", "+12015550123"},
	} {
		if got, err := c.p.NormalizeQuery(c.in); err != nil || got != c.want {
			t.Errorf("%s: NormalizeQuery(%q) = %q, %v; want %q", c.p.Region(), c.in, got, err, c.want)
		}
	}
	// A space where a + was sent, and the + reading is no number: refused,
	// with how to send the +, not tried as a national number.
	for _, in := range []string{" 999 1234 5678", " 1 2345"} {
		if _, err := us.NormalizeQuery(in); err == nil || !strings.Contains(err.Error(), "%2B") {
			t.Errorf("NormalizeQuery(%q) in US = %v, want a refusal that says %%2B", in, err)
		}
	}
}

// BenchmarkNormalize is the cost of reading one number, paid once per
// member creation, lookup by phone and login code.
func BenchmarkNormalize(b *testing.B) {
	kr, _ := NewPlan("KR")
	for _, s := range []string{"010-1234-5678", "+1 201-555-0123"} {
		b.Run(s, func(b *testing.B) {
			for b.Loop() {
				if _, err := kr.Normalize(s); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
