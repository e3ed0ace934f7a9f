package audit

import (
	"bytes"
	"crypto/hmac"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Event is one audit record. Callers fill the descriptive fields; Append
// fills Seq, Prev and MAC (and TsMs when zero). There is deliberately no
// field for bodies, headers or secret values: callers pass redacted paths
// and never put secret values into Reason or Detail.
type Event struct {
	TsMs       int64             `json:"tsMs"`
	Kind       string            `json:"kind"`               // "invoke", "secret.create", "vault.init", "connection.refused", "checkpoint", ...
	Decision   string            `json:"decision,omitempty"` // allow | deny
	Reason     string            `json:"reason,omitempty"`   // "PolicyViolation: ..."
	UID        *int              `json:"uid,omitempty"`
	GID        *int              `json:"gid,omitempty"`
	User       string            `json:"user,omitempty"`
	PID        int               `json:"pid,omitempty"`
	Comm       string            `json:"comm,omitempty"`
	Exe        string            `json:"exe,omitempty"`
	Role       string            `json:"role,omitempty"`
	Capability string            `json:"capability,omitempty"`
	Credential string            `json:"credential,omitempty"`
	SecretID   string            `json:"secretId,omitempty"`
	SecretName string            `json:"secretName,omitempty"`
	Method     string            `json:"method,omitempty"`
	Host       string            `json:"host,omitempty"`
	Path       string            `json:"path,omitempty"`
	Status     int               `json:"status,omitempty"`
	BytesIn    int64             `json:"bytesIn,omitempty"`
	BytesOut   int64             `json:"bytesOut,omitempty"`
	DurationMs int64             `json:"durationMs,omitempty"`
	Worker     string            `json:"worker,omitempty"` // ok | killed | timeout
	Count      int               `json:"count,omitempty"`
	Detail     map[string]string `json:"detail,omitempty"`
	Seq        uint64            `json:"seq"`
	Prev       string            `json:"prev"` // hex MAC of the previous record; filled by Append
	MAC        string            `json:"mac"`  // hex HMAC-SHA256; filled by Append
}

// Event kinds written by this package itself.
const (
	// KindCheckpoint marks a Prune: old day files were removed.
	KindCheckpoint = "checkpoint"
	// KindConnectionRefused is the default kind of Refused records.
	KindConnectionRefused = "connection.refused"
)

// MaxRecordBytes bounds one encoded record (one line, without the newline).
const MaxRecordBytes = 64 << 10

const macHexLen = 64

// zeroMAC is the Prev of the first record ever (genesis).
var zeroMAC = strings.Repeat("0", macHexLen)

// ErrMalformed is returned (wrapped) by ParseLine for a line that is not a
// canonical audit record.
var ErrMalformed = errors.New("audit: malformed record")

const recordLabel = "aivault-audit-record-v1\x00"

// encodeLine returns the canonical line of ev (no newline).
func encodeLine(ev *Event) ([]byte, error) {
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("audit: encode record: %w", err)
	}
	return b, nil
}

// ParseLine parses one stored line (without its trailing newline) strictly:
// exactly one JSON object, no unknown or duplicate fields, well-formed
// seq/prev/mac, and the bytes must be exactly the canonical encoding of the
// parsed Event, so that any change to the line is detectable. It does not
// check the MAC (that needs the key; see Verify).
func ParseLine(b []byte) (Event, error) {
	var ev Event
	if len(b) == 0 {
		return Event{}, fmt.Errorf("%w: empty line", ErrMalformed)
	}
	if len(b) > MaxRecordBytes {
		return Event{}, fmt.Errorf("%w: line longer than %d bytes", ErrMalformed, MaxRecordBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if dec.More() {
		return Event{}, fmt.Errorf("%w: trailing data", ErrMalformed)
	}
	canon, err := encodeLine(&ev)
	if err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if !bytes.Equal(canon, b) {
		return Event{}, fmt.Errorf("%w: not in canonical form", ErrMalformed)
	}
	if ev.Kind == "" {
		return Event{}, fmt.Errorf("%w: empty kind", ErrMalformed)
	}
	if ev.Seq == 0 {
		return Event{}, fmt.Errorf("%w: seq must be >= 1", ErrMalformed)
	}
	if !isMACHex(ev.Prev) {
		return Event{}, fmt.Errorf("%w: prev is not 64 lowercase hex digits", ErrMalformed)
	}
	if !isMACHex(ev.MAC) {
		return Event{}, fmt.Errorf("%w: mac is not 64 lowercase hex digits", ErrMalformed)
	}
	return ev, nil
}

func isMACHex(s string) bool {
	if len(s) != macHexLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// computeMAC returns the hex MAC of ev (its MAC field is ignored) under the
// keyed hash m, which is Reset first.
func computeMAC(m hash.Hash, ev Event) (string, error) {
	prev, err := hex.DecodeString(ev.Prev)
	if err != nil || len(prev) != macHexLen/2 {
		return "", fmt.Errorf("%w: bad prev", ErrMalformed)
	}
	ev.MAC = ""
	canon, err := encodeLine(&ev)
	if err != nil {
		return "", err
	}
	m.Reset()
	m.Write([]byte(recordLabel))
	m.Write(prev)
	m.Write(canon)
	return hex.EncodeToString(m.Sum(nil)), nil
}

// macEqual compares two hex MACs in constant time.
func macEqual(a, b string) bool {
	return hmac.Equal([]byte(a), []byte(b))
}

// sealEvent fills Seq, Prev and MAC and returns the canonical line. The
// event is first normalised through one encode/decode round trip (invalid
// UTF-8 becomes U+FFFD, …) so that the stored line parses back to itself.
func sealEvent(m hash.Hash, ev Event, seq uint64, prev string) (Event, []byte, error) {
	ev.Seq, ev.Prev, ev.MAC = seq, prev, zeroMAC
	raw, err := encodeLine(&ev)
	if err != nil {
		return Event{}, nil, err
	}
	var norm Event
	if err := json.Unmarshal(raw, &norm); err != nil {
		return Event{}, nil, fmt.Errorf("audit: normalise record: %w", err)
	}
	mac, err := computeMAC(m, norm)
	if err != nil {
		return Event{}, nil, err
	}
	norm.MAC = mac
	line, err := encodeLine(&norm)
	if err != nil {
		return Event{}, nil, err
	}
	if len(line) > MaxRecordBytes {
		return Event{}, nil, fmt.Errorf("audit: record of kind %q is %d bytes, limit %d", ev.Kind, len(line), MaxRecordBytes)
	}
	if _, err := ParseLine(line); err != nil {
		return Event{}, nil, fmt.Errorf("audit: record does not round-trip: %w", err)
	}
	return norm, line, nil
}

// FormatHuman renders ev on one line for operators: time, kind, decision,
// user(uid), capability, method host path, status, reason. Control and other
// non-printable characters are escaped, so a hostile path cannot inject
// newlines or terminal escape sequences.
func FormatHuman(ev Event) string {
	var parts []string
	add := func(s string) {
		if s != "" {
			parts = append(parts, sanitize(s))
		}
	}
	parts = append(parts, time.UnixMilli(ev.TsMs).UTC().Format("2006-01-02T15:04:05.000Z"))
	add(ev.Kind)
	add(ev.Decision)
	who := ev.User
	if ev.UID != nil {
		who += "(" + strconv.Itoa(*ev.UID) + ")"
	}
	add(who)
	if ev.Capability != "" {
		add("cap=" + ev.Capability)
	}
	if ev.Method != "" || ev.Host != "" || ev.Path != "" {
		add(strings.TrimSpace(strings.Join([]string{ev.Method, ev.Host, ev.Path}, " ")))
	}
	if ev.Status != 0 {
		add("status=" + strconv.Itoa(ev.Status))
	}
	if ev.Worker != "" {
		add("worker=" + ev.Worker)
	}
	if ev.Count != 0 {
		add("count=" + strconv.Itoa(ev.Count))
	}
	if ev.Reason != "" {
		add("reason=" + ev.Reason)
	}
	return strings.Join(parts, " ")
}

// sanitize escapes everything that is not a printable rune.
func sanitize(s string) string {
	clean := utf8.ValidString(s)
	for _, r := range s {
		if !clean {
			break
		}
		clean = r == ' ' || unicode.IsPrint(r)
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == ' ' || unicode.IsPrint(r):
			b.WriteRune(r)
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += n
	}
	return b.String()
}
