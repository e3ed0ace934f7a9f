package sandbox

import (
	"bytes"
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
)

// refScrub is the obviously-correct reference: at each position take the
// longest needle that matches, else copy one byte. It also returns where
// the markers were put.
func refScrub(needles [][]byte, in []byte) (out []byte, markers [][2]int) {
	for i := 0; i < len(in); {
		best := 0
		for _, n := range needles {
			if len(n) > best && bytes.HasPrefix(in[i:], n) {
				best = len(n)
			}
		}
		if best == 0 {
			out = append(out, in[i])
			i++
			continue
		}
		markers = append(markers, [2]int{len(out), len(out) + len(RedactMarker)})
		out = append(out, RedactMarker...)
		i += best
	}
	return out, markers
}

// scrubChunked feeds in to a Scrubber in chunks of the given sizes.
func scrubChunked(s *Scrubber, in []byte, sizes []int) []byte {
	var out []byte
	k := 0
	for len(in) > 0 {
		n := 1
		if len(sizes) > 0 {
			n = sizes[k%len(sizes)]
			k++
		}
		n = max(1, min(n, len(in)))
		out = append(out, s.Write(in[:n])...)
		in = in[n:]
	}
	return append(out, s.Flush()...)
}

func TestScrubber(t *testing.T) {
	for _, tc := range []struct {
		name    string
		needles []string
		in      string
		want    string
	}{
		{"none", nil, "hello", "hello"},
		{"simple", []string{"secret"}, "a secret b", "a [REDACTED] b"},
		{"twice adjacent", []string{"ab"}, "ababab", "[REDACTED][REDACTED][REDACTED]"},
		{"longest wins", []string{"ab", "abcd"}, "xabcdx", "x[REDACTED]x"},
		{"overlap leftmost", []string{"abc", "bcd"}, "abcd", "[REDACTED]d"},
		{"partial at end", []string{"secret"}, "a secre", "a secre"},
		{"prefix then match", []string{"aab"}, "aaab", "a[REDACTED]"},
		{"empty needle ignored", []string{""}, "abc", "abc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var needles [][]byte
			for _, n := range tc.needles {
				needles = append(needles, []byte(n))
			}
			for _, sizes := range [][]int{nil, {1}, {2}, {3, 1}, {1000}} {
				got := scrubChunked(NewScrubber(needles), []byte(tc.in), sizes)
				if string(got) != tc.want {
					t.Errorf("chunks %v: got %q, want %q", sizes, got, tc.want)
				}
			}
		})
	}
}

func TestScrubberHoldsBackOnlyPossibleStarts(t *testing.T) {
	s := NewScrubber([][]byte{[]byte("secret")})
	if got := s.Write([]byte("data: x\n\n")); string(got) != "data: x\n\n" {
		t.Fatalf("held back without cause: %q", got)
	}
	if got := s.Write([]byte("tail sec")); string(got) != "tail " {
		t.Fatalf("got %q, want %q", got, "tail ")
	}
	if got := s.Write([]byte("ret!")); string(got) != RedactMarker+"!" {
		t.Fatalf("split needle: got %q", got)
	}
	if got := s.Flush(); len(got) != 0 {
		t.Fatalf("flush = %q", got)
	}
	if s.Redactions() != 1 {
		t.Fatalf("redactions = %d", s.Redactions())
	}
}

func TestNeedlesForms(t *testing.T) {
	secret := []byte("p@ss/w0rd+?&=x")
	needles := Needles([][]byte{secret}, []string{"internal-host.corp"})
	has := func(s string) bool {
		for _, n := range needles {
			if string(n) == s {
				return true
			}
		}
		return false
	}
	for _, want := range []string{
		string(secret),
		url.QueryEscape(string(secret)),
		url.PathEscape(string(secret)),
		strings.ToLower(url.QueryEscape(string(secret))),
		base64.StdEncoding.EncodeToString(secret),
		base64.URLEncoding.EncodeToString(secret),
		base64.RawStdEncoding.EncodeToString(secret),
		base64.RawURLEncoding.EncodeToString(secret),
		"internal-host.corp",
	} {
		if !has(want) {
			t.Errorf("needles lack %q", want)
		}
	}
	seen := map[string]bool{}
	for _, n := range needles {
		if seen[string(n)] {
			t.Errorf("duplicate needle %q", n)
		}
		seen[string(n)] = true
	}
	if len(Needles([][]byte{nil, {}}, []string{""})) != 0 {
		t.Error("empty values produced needles")
	}
}

// TestNeedlesCatchEmbeddedBase64 checks the alignment fragments: the secret
// inside a larger base64 blob (Basic auth) is still redacted.
func TestNeedlesCatchEmbeddedBase64(t *testing.T) {
	secret := "hunter2-very-secret"
	s := NewScrubber(Needles([][]byte{[]byte(secret)}, nil))
	for _, prefix := range []string{"", "u:", "us:", "use:", "user:"} {
		for _, suffix := range []string{"", "!", "!!", "!!!"} {
			for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
				blob := enc.EncodeToString([]byte(prefix + secret + suffix))
				out := string(s.Once([]byte("Basic " + blob)))
				if !strings.Contains(out, RedactMarker) {
					t.Errorf("prefix %q suffix %q: %q not redacted", prefix, suffix, out)
				}
			}
		}
	}
}

func TestScrubberWipe(t *testing.T) {
	needle := []byte("secret")
	s := NewScrubber([][]byte{needle})
	s.Write([]byte("sec"))
	s.Wipe()
	if string(needle) != "secret" {
		t.Fatal("Wipe touched the caller's slice")
	}
	if got := s.Once([]byte("secret")); string(got) != "secret" {
		t.Fatalf("a wiped scrubber still matches: %q", got)
	}
}

func FuzzScrubber(f *testing.F) {
	f.Add([]byte("hello secret world"), []byte("secret"), []byte("wor"), uint8(3))
	f.Add([]byte("aaaaab"), []byte("aab"), []byte("a"), uint8(1))
	f.Add([]byte("[REDACTED]x"), []byte("D]x"), []byte(""), uint8(2))
	f.Add([]byte("no needles here"), []byte(""), []byte(""), uint8(5))
	f.Fuzz(func(t *testing.T, in, n1, n2 []byte, chunk uint8) {
		var needles [][]byte
		for _, n := range [][]byte{n1, n2} {
			if len(n) > 0 {
				needles = append(needles, n)
			}
		}
		sizes := []int{int(chunk%17) + 1, int(chunk%5) + 1}
		got := scrubChunked(NewScrubber(needles), in, sizes)
		want, markers := refScrub(needles, in)
		if !bytes.Equal(got, want) {
			t.Fatalf("streaming %q != one-shot %q", got, want)
		}
		if len(needles) == 0 && !bytes.Equal(got, in) {
			t.Fatalf("no needles: output %q != input %q", got, in)
		}
		// No needle survives except where it overlaps an inserted marker
		// (a needle made of marker characters).
		for _, n := range needles {
			for off := 0; ; {
				i := bytes.Index(got[off:], n)
				if i < 0 {
					break
				}
				start, end := off+i, off+i+len(n)
				overlaps := false
				for _, m := range markers {
					if start < m[1] && m[0] < end {
						overlaps = true
						break
					}
				}
				if !overlaps {
					t.Fatalf("needle %q survives at %d in %q", n, start, got)
				}
				off = start + 1
			}
		}
	})
}
