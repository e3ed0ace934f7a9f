package ipc

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
)

// frameRoundTrip decodes one frame from data into a fresh *T and, when that
// succeeds, checks decode → encode → decode gives the same value and that the
// re-encoded frame is itself canonical (encode is a fixed point).
func frameRoundTrip[T any](t *testing.T, data []byte, max int) {
	var v T
	err := ReadFrame(bytes.NewReader(data), max, &v)
	if err != nil {
		if len(data) >= 4 {
			n := int(data[0])<<24 | int(data[1])<<16 | int(data[2])<<8 | int(data[3])
			if n > max && !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("a %d-byte announcement over the %d limit gave %v", n, max, err)
			}
		}
		return
	}
	var buf bytes.Buffer
	if err := WriteFrame(&buf, v); err != nil {
		t.Fatalf("decoded frame does not re-encode: %v", err)
	}
	first := bytes.Clone(buf.Bytes())
	var v2 T
	if err := ReadFrame(&buf, max, &v2); err != nil {
		t.Fatalf("re-encoded frame refused: %v\n%q", err, first)
	}
	if buf.Len() != 0 {
		t.Fatalf("re-encoded frame left %d bytes behind", buf.Len())
	}
	if !reflect.DeepEqual(canon(t, v), canon(t, v2)) {
		t.Fatalf("round trip changed the frame:\n%#v\n%#v", v, v2)
	}
	var again bytes.Buffer
	if err := WriteFrame(&again, v2); err != nil || !bytes.Equal(again.Bytes(), first) {
		t.Fatalf("encoding is not stable:\n%q\n%q", first, again.Bytes())
	}
}

// canon compares JSON values (a RawMessage is compared by meaning after
// compaction, since the decoder keeps the peer's spacing).
func canon(t *testing.T, v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReadFrameHostile(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short header", []byte{0, 0}},
		{"oversize", []byte{0x02, 0x10, 0, 0, '{'}},
		{"truncated", append([]byte{0, 0, 0, 100}, "{\"v\":1"...)},
		{"not json", append([]byte{0, 0, 0, 3}, "abc"...)},
		{"unknown field", append([]byte{0, 0, 0, 22}, `{"v":1,"op":"x","z":1}`...)},
		{"trailing", append([]byte{0, 0, 0, 12}, `{"v":1}{"v":`...)},
		{"two values", append([]byte{0, 0, 0, 14}, `{"v":1} {"v":2}`[:14]...)},
	} {
		var c Call
		if err := ReadFrame(bytes.NewReader(tc.in), 1<<20, &c); err == nil {
			t.Errorf("%s: accepted %+v", tc.name, c)
		}
	}
	var c Call
	err := ReadFrame(bytes.NewReader([]byte{0x02, 0x10, 0, 0}), DefaultMaxFrame, &c)
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("33 MiB announcement: %v", err)
	}
	if err := ReadFrame(bytes.NewReader(nil), 0, &c); !errors.Is(err, io.EOF) {
		t.Fatalf("EOF: %v", err)
	}
}

// FuzzReadFrame: the daemon's side of the socket. Arbitrary bytes from a
// client (Call) or from a daemon (ServerHello, Reply) never panic, an
// announced length over the limit is ErrFrameTooLarge before anything is
// allocated, and whatever decodes re-encodes to a frame that decodes to the
// same value.
func FuzzReadFrame(f *testing.F) {
	frame := func(s string) []byte {
		return append([]byte{byte(len(s) >> 24), byte(len(s) >> 16), byte(len(s) >> 8), byte(len(s))}, s...)
	}
	f.Add(frame(`{"v":1,"op":"invoke","args":{"capability":"openai/chat-completions","method":"POST"}}`))
	f.Add(frame(`{"v":1,"op":"secrets.list","proof":"AAEC"}`))
	f.Add(frame(`{"ok":false,"class":"AccessDenied","error":"no","hint":"h"}`))
	f.Add(frame(`{"v":1,"version":"dev","role":"agent","challenge":"AAAA","provider":"file"}`))
	f.Add(frame(`{"v":1,"op":"x","z":1}`))
	f.Add([]byte{0x02, 0x10, 0, 0})
	f.Add(append([]byte{0, 0, 0, 100}, "{{{{{{{{{{"...))
	f.Fuzz(func(t *testing.T, data []byte) {
		const max = 1 << 16
		frameRoundTrip[Call](t, data, max)
		frameRoundTrip[Reply](t, data, max)
		frameRoundTrip[ServerHello](t, data, max)
	})
}
