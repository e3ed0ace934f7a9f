package sandbox

import (
	"bytes"
	"encoding/base64"
	"net/url"
	"slices"
)

// RedactMarker replaces every scrubbed value.
const RedactMarker = "[REDACTED]"

// minFragmentLen is the shortest base64 fragment (see Needles) worth
// scrubbing; shorter fragments would redact unrelated text.
const minFragmentLen = 6

// Needles expands injected values and operator block strings into the byte
// strings a Scrubber removes. Each injected value contributes its raw form,
// its URL-encoded forms (url.QueryEscape and url.PathEscape, with upper- and
// lower-case hex), its base64 forms (standard, URL-safe, padded and raw) and
// the base64 fragments that encode the value when it sits inside a larger
// base64-encoded string (for example "user:secret" in Basic auth) at any of
// the three byte alignments. Block strings are used as given. Empty values
// are ignored; the result holds no duplicates. The returned slices are fresh
// copies the caller may wipe.
func Needles(scrub [][]byte, block []string) [][]byte {
	var out [][]byte
	seen := map[string]bool{}
	add := func(b []byte) {
		if len(b) == 0 || seen[string(b)] {
			return
		}
		seen[string(b)] = true
		out = append(out, bytes.Clone(b))
	}
	for _, v := range scrub {
		if len(v) == 0 {
			continue
		}
		add(v)
		for _, esc := range []string{url.QueryEscape(string(v)), url.PathEscape(string(v))} {
			add([]byte(esc))
			add(lowerHexEscapes([]byte(esc)))
		}
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			add([]byte(enc.EncodeToString(v)))
		}
		for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
			for k := 0; k < 3; k++ {
				if f := base64Fragment(enc, v, k); len(f) >= minFragmentLen {
					add(f)
				}
			}
		}
	}
	for _, b := range block {
		add([]byte(b))
	}
	seen = nil
	return out
}

// base64Fragment returns the characters of the base64 encoding of
// (k zero bytes ‖ v ‖ anything) that depend only on v.
func base64Fragment(enc *base64.Encoding, v []byte, k int) []byte {
	buf := make([]byte, k+len(v))
	copy(buf[k:], v)
	full := []byte(enc.EncodeToString(buf))
	clear(buf)
	first := (8*k + 5) / 6       // first character whose 6 bits all lie in v
	last := (8*k+8*len(v))/6 - 1 // last such character
	if last < first || last >= len(full) {
		clear(full)
		return nil
	}
	frag := bytes.Clone(full[first : last+1])
	clear(full)
	return frag
}

// lowerHexEscapes returns s with the hex digits of %XX escapes lower-cased,
// or nil when that changes nothing.
func lowerHexEscapes(s []byte) []byte {
	out := bytes.Clone(s)
	changed := false
	for i := 0; i+2 < len(out); i++ {
		if out[i] != '%' {
			continue
		}
		for j := i + 1; j <= i+2; j++ {
			if out[j] >= 'A' && out[j] <= 'F' {
				out[j] += 'a' - 'A'
				changed = true
			}
		}
		i += 2
	}
	if !changed {
		clear(out)
		return nil
	}
	return out
}

// matcher finds, at a position, the longest needle that starts there.
type matcher struct {
	needles [][]byte
	first   [256][]int // needle indices by first byte, longest first
	maxLen  int
}

func newMatcher(needles [][]byte) *matcher {
	m := &matcher{}
	for _, n := range needles {
		if len(n) == 0 {
			continue
		}
		m.needles = append(m.needles, bytes.Clone(n))
	}
	for i, n := range m.needles {
		m.first[n[0]] = append(m.first[n[0]], i)
		m.maxLen = max(m.maxLen, len(n))
	}
	for c := range m.first {
		slices.SortStableFunc(m.first[c], func(a, b int) int { return len(m.needles[b]) - len(m.needles[a]) })
	}
	return m
}

// matchAt returns the length of the longest needle equal to b[i:i+len], or 0.
func (m *matcher) matchAt(b []byte, i int) int {
	for _, idx := range m.first[b[i]] {
		n := m.needles[idx]
		if len(b)-i >= len(n) && bytes.Equal(b[i:i+len(n)], n) {
			return len(n)
		}
	}
	return 0
}

// undecided reports whether a needle longer than the rest of buf could
// still start at i: buf[i:] is a proper prefix of it.
func (m *matcher) undecided(buf []byte, i int) bool {
	rest := buf[i:]
	for _, idx := range m.first[buf[i]] {
		n := m.needles[idx]
		if len(n) > len(rest) && bytes.HasPrefix(n, rest) {
			return true
		}
	}
	return false
}

// scan replaces needles in buf from the left, taking the longest match at
// each position. Unless final, it stops at the first position whose
// outcome depends on bytes not seen yet (only possible within the last
// maxLen-1 bytes) and returns the bytes from there as rest.
func (m *matcher) scan(dst, buf []byte, final bool) (out, rest []byte, hits int) {
	tail := len(buf) - m.maxLen + 1 // positions from here on may be undecided
	lit, i := 0, 0
	for i < len(buf) {
		if len(m.first[buf[i]]) == 0 {
			i++
			continue
		}
		if !final && i >= tail && m.undecided(buf, i) {
			break
		}
		l := m.matchAt(buf, i)
		if l == 0 {
			i++
			continue
		}
		dst = append(dst, buf[lit:i]...)
		dst = append(dst, RedactMarker...)
		hits++
		i += l
		lit = i
	}
	dst = append(dst, buf[lit:i]...)
	return dst, buf[i:], hits
}

// Scrubber removes needles from a stream split into arbitrary chunks. Write
// returns the bytes that are safe to emit so far. It holds back at most
// len(longest needle)-1 bytes — only a tail that could still begin a needle
// — so that a needle split across chunks is still caught, while a chunk
// that ends in, say, an SSE event's "\n\n" goes out whole; Flush returns the
// held-back bytes at the end of the stream. Matching is leftmost-longest,
// identical to scrubbing the whole stream at once.
// A Scrubber is not safe for concurrent use.
type Scrubber struct {
	m       *matcher
	pending []byte
	hits    int
}

// NewScrubber returns a Scrubber for the given needles (usually the result
// of Needles). The needles are copied; empty ones are ignored.
func NewScrubber(needles [][]byte) *Scrubber {
	return &Scrubber{m: newMatcher(needles)}
}

// Write feeds p and returns the output that is final so far (a fresh slice,
// possibly empty).
func (s *Scrubber) Write(p []byte) []byte {
	if s.m.maxLen == 0 {
		return bytes.Clone(p)
	}
	s.pending = append(s.pending, p...)
	out, rest, hits := s.m.scan(nil, s.pending, false)
	s.hits += hits
	n := copy(s.pending, rest)
	clear(s.pending[n:])
	s.pending = s.pending[:n]
	return out
}

// Flush ends the stream and returns the held-back output. The Scrubber may
// be reused for a new stream afterwards.
func (s *Scrubber) Flush() []byte {
	out, _, hits := s.m.scan(nil, s.pending, true)
	s.hits += hits
	clear(s.pending)
	s.pending = s.pending[:0]
	return out
}

// Once scrubs p as a complete, separate stream, leaving the Scrubber's own
// stream state alone (for header values and error messages).
func (s *Scrubber) Once(p []byte) []byte {
	out, _, hits := s.m.scan(nil, p, true)
	s.hits += hits
	return out
}

// Redactions returns how many needles were replaced so far.
func (s *Scrubber) Redactions() int { return s.hits }

// Empty reports whether the Scrubber has no needles (output equals input).
func (s *Scrubber) Empty() bool { return s.m.maxLen == 0 }

// Wipe zeroes the Scrubber's copies of the needles and any held-back bytes;
// the Scrubber must not be used afterwards.
func (s *Scrubber) Wipe() {
	for _, n := range s.m.needles {
		clear(n)
	}
	clear(s.pending)
	s.m = &matcher{}
	s.pending = nil
}
