package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
)

// validLine returns a sealed canonical line for ev.
func validLine(t testing.TB, ev Event) []byte {
	t.Helper()
	_, line, err := sealEvent(hmac.New(sha256.New, testKey), ev, 1, zeroMAC)
	if err != nil {
		t.Fatal(err)
	}
	return line
}

func TestParseLine(t *testing.T) {
	good := validLine(t, Event{TsMs: 1, Kind: "invoke", User: "alice", UID: intp(0), Path: "/a<b>", Detail: map[string]string{"b": "2", "a": "1"}})
	if _, err := ParseLine(good); err != nil {
		t.Fatalf("ParseLine(valid): %v", err)
	}
	mac := strings.Repeat("a", 64)
	tests := []struct {
		name string
		line string
	}{
		{"empty", ""},
		{"not json", "hello"},
		{"array", "[]"},
		{"leading space", " " + string(good)},
		{"trailing space", string(good) + " "},
		{"trailing newline", string(good) + "\n"},
		{"two objects", string(good) + string(good)},
		{"unknown field", `{"tsMs":1,"kind":"a","seq":1,"prev":"` + zeroMAC + `","mac":"` + mac + `","x":1}`},
		{"duplicate field", `{"tsMs":1,"kind":"a","kind":"a","seq":1,"prev":"` + zeroMAC + `","mac":"` + mac + `"}`},
		{"wrong case key", `{"TsMs":1,"kind":"a","seq":1,"prev":"` + zeroMAC + `","mac":"` + mac + `"}`},
		{"reordered fields", `{"kind":"a","tsMs":1,"seq":1,"prev":"` + zeroMAC + `","mac":"` + mac + `"}`},
		{"unescaped html", `{"tsMs":1,"kind":"<","seq":1,"prev":"` + zeroMAC + `","mac":"` + mac + `"}`},
		{"empty kind", `{"tsMs":1,"kind":"","seq":1,"prev":"` + zeroMAC + `","mac":"` + mac + `"}`},
		{"seq zero", `{"tsMs":1,"kind":"a","seq":0,"prev":"` + zeroMAC + `","mac":"` + mac + `"}`},
		{"short mac", `{"tsMs":1,"kind":"a","seq":1,"prev":"` + zeroMAC + `","mac":"abc"}`},
		{"upper-case mac", `{"tsMs":1,"kind":"a","seq":1,"prev":"` + zeroMAC + `","mac":"` + strings.ToUpper(mac) + `"}`},
		{"float", `{"tsMs":1.5,"kind":"a","seq":1,"prev":"` + zeroMAC + `","mac":"` + mac + `"}`},
		{"empty detail", `{"tsMs":1,"kind":"a","detail":{},"seq":1,"prev":"` + zeroMAC + `","mac":"` + mac + `"}`},
		{"null uid", `{"tsMs":1,"kind":"a","uid":null,"seq":1,"prev":"` + zeroMAC + `","mac":"` + mac + `"}`},
		{"too long", `{"tsMs":1,"kind":"` + strings.Repeat("a", MaxRecordBytes) + `","seq":1,"prev":"` + zeroMAC + `","mac":"` + mac + `"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ParseLine([]byte(tc.line)); !errors.Is(err, ErrMalformed) {
				t.Errorf("err = %v, want ErrMalformed", err)
			}
		})
	}
	// The minimal valid form parses.
	if _, err := ParseLine([]byte(`{"tsMs":1,"kind":"a","seq":1,"prev":"` + zeroMAC + `","mac":"` + mac + `"}`)); err != nil {
		t.Errorf("minimal line: %v", err)
	}
}

func TestFormatHuman(t *testing.T) {
	tests := []struct {
		name string
		ev   Event
		want string
	}{
		{"invoke", Event{TsMs: day1.UnixMilli(), Kind: "invoke", Decision: "deny", User: "alice", UID: intp(1000),
			Capability: "openai/chat", Method: "POST", Host: "api.openai.com", Path: "/v1/chat", Status: 403,
			Reason: "PolicyViolation: path not allowed"},
			"2025-03-01T10:00:00.000Z invoke deny alice(1000) cap=openai/chat POST api.openai.com /v1/chat status=403 reason=PolicyViolation: path not allowed"},
		{"uid only", Event{TsMs: 0, Kind: "connection.refused", UID: intp(0), Count: 3},
			"1970-01-01T00:00:00.000Z connection.refused (0) count=3"},
		{"hostile path is escaped", Event{TsMs: 0, Kind: "invoke", Path: "/x\n\x1b[31mFAKE\u2028\xff"},
			`1970-01-01T00:00:00.000Z invoke /x\n\x1b[31mFAKE\u2028\xff`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := FormatHuman(tc.ev); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// FuzzParseLine: whatever ParseLine accepts re-encodes to exactly the input
// (so the MAC over the re-encoding covers every byte of the line).
func FuzzParseLine(f *testing.F) {
	f.Add(validLine(f, Event{TsMs: 1, Kind: "invoke", User: "alice", UID: intp(1000), Detail: map[string]string{"a": "b"}}))
	f.Add([]byte(`{"tsMs":1,"kind":"a","seq":1,"prev":"` + zeroMAC + `","mac":"` + zeroMAC + `"}`))
	f.Add([]byte(`{"tsMs":1,"kind":"a","kind":"b","seq":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ParseLine(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		re, err := encodeLine(&ev)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(re, b) {
			t.Fatalf("accepted a non-canonical line:\n in  %q\n out %q", b, re)
		}
		if _, err := ParseLine(re); err != nil {
			t.Fatalf("re-encoding does not parse: %v", err)
		}
		_ = FormatHuman(ev)
	})
}
