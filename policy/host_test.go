package policy

import (
	"strings"
	"testing"
)

func TestNormalizeHost(t *testing.T) {
	tests := []struct {
		in       string
		wildcard bool
		want     string // "" = refused
	}{
		{"api.openai.com", false, "api.openai.com"},
		{" API.OpenAI.COM. ", false, "api.openai.com"},
		{"a-b.c9.test", false, "a-b.c9.test"},
		{"*.openai.azure.com", true, "*.openai.azure.com"},
		{"*.openai.azure.com", false, ""},
		{"*.com", true, ""}, // a wildcard needs at least two labels below it
		{"a.*.com", true, ""},
		{"**.a.com", true, ""},
		{"", false, ""},
		{".", false, ""},
		{"a..b", false, ""},
		{".a.b", false, ""},
		{"-a.b", false, ""},
		{"a-.b", false, ""},
		{"a_b.c", false, ""},
		{"api.openai.com:443", false, ""},
		{"user@api.openai.com", false, ""},
		{"https://api.openai.com", false, ""},
		{"api.openai.com/v1", false, ""},
		{"[::1]", false, ""},
		{"bücher.de", false, ""},
		{"a\x00b.c", false, ""},
		{strings.Repeat("a", 64) + ".com", false, ""},
		{strings.Repeat("a", 63) + ".com", false, strings.Repeat("a", 63) + ".com"},
		{strings.Repeat("a.", 127) + "co", false, ""},
	}
	for _, tc := range tests {
		got, err := NormalizeHost(tc.in, tc.wildcard)
		if tc.want == "" {
			if err == nil {
				t.Errorf("NormalizeHost(%q, %v) = %q, want refusal", tc.in, tc.wildcard, got)
				continue
			}
			rqtWantErr(t, err, ClassInvalidRequest, "")
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("NormalizeHost(%q, %v) = %q, %v; want %q", tc.in, tc.wildcard, got, err, tc.want)
		}
	}
}

func TestMatchHostPattern(t *testing.T) {
	tests := []struct {
		pattern, host string
		want          bool
	}{
		{"api.openai.com", "api.openai.com", true},
		{"API.openai.com.", "api.OPENAI.com", true},
		{"api.openai.com", "api.openai.com.evil.test", false},
		{"api.openai.com", "xapi.openai.com", false},
		{"*.openai.azure.com", "tenant.openai.azure.com", true},
		{"*.openai.azure.com", "a.b.openai.azure.com", true},
		{"*.openai.azure.com", "openai.azure.com", false},
		{"*.openai.azure.com", "evilopenai.azure.com", false},
		{"*.openai.azure.com", "tenant.openai.azure.com.evil.test", false},
		{"*.openai.azure.com", "*.openai.azure.com", false},
		{"*.openai.azure.com", "", false},
		{"", "api.openai.com", false},
	}
	for _, tc := range tests {
		if got := MatchHostPattern(tc.pattern, tc.host); got != tc.want {
			t.Errorf("MatchHostPattern(%q, %q) = %v, want %v", tc.pattern, tc.host, got, tc.want)
		}
	}
}

func TestIsWildcardHost(t *testing.T) {
	for h, want := range map[string]bool{"*.a.b": true, "a.b": false, "a.*.b": false, "*": false} {
		if got := IsWildcardHost(h); got != want {
			t.Errorf("IsWildcardHost(%q) = %v, want %v", h, got, want)
		}
	}
}

// FuzzHostNormalize: a normalised host is stable (normalising again changes
// nothing), matches itself as a pattern, and contains only [a-z0-9-.*].
func FuzzHostNormalize(f *testing.F) {
	for _, s := range []string{"api.openai.com", "*.openai.azure.com", "A.B.", "a..b", "[::1]", "x:1"} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, in string, wildcard bool) {
		n, err := NormalizeHost(in, wildcard)
		if err != nil {
			return
		}
		again, err := NormalizeHost(n, wildcard)
		if err != nil || again != n {
			t.Fatalf("not stable: %q -> %q -> %q, %v", in, n, again, err)
		}
		if strings.Trim(n, "abcdefghijklmnopqrstuvwxyz0123456789-.*") != "" {
			t.Fatalf("odd characters in %q", n)
		}
		if !IsWildcardHost(n) && !MatchHostPattern(n, n) {
			t.Fatalf("%q does not match itself", n)
		}
	})
}

// FuzzMatchHostPattern: a match is never a look-alike. An exact pattern
// matches only the same name (case and one trailing dot aside); a "*.suffix"
// pattern matches only names ending in ".suffix" at a label boundary, with at
// least one label before it and never the apex.
func FuzzMatchHostPattern(f *testing.F) {
	f.Add("api.openai.com", "api.openai.com.evil.test")
	f.Add("*.openai.azure.com", "tenant.openai.azure.com")
	f.Add("*.openai.azure.com", "evilopenai.azure.com")
	f.Add("*.openai.azure.com", "openai.azure.com.")
	f.Add("API.openai.com.", "api.OPENAI.com")
	f.Add("*.a.b", "*.a.b")
	f.Fuzz(func(t *testing.T, pattern, host string) {
		if !MatchHostPattern(pattern, host) {
			return
		}
		p := strings.TrimSuffix(strings.ToLower(pattern), ".")
		h := strings.TrimSuffix(strings.ToLower(host), ".")
		if h == "" {
			t.Fatalf("%q matched an empty host", pattern)
		}
		if rest, ok := strings.CutPrefix(p, "*."); ok {
			if !strings.HasSuffix(h, "."+rest) || len(h) <= len(rest)+1 || strings.Contains(strings.TrimSuffix(h, "."+rest), "*") {
				t.Fatalf("wildcard %q matched %q", pattern, host)
			}
			return
		}
		if p != h {
			t.Fatalf("%q matched %q", pattern, host)
		}
	})
}
