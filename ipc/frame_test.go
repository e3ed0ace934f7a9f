package ipc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

func TestFrameRoundTripAndStrictness(t *testing.T) {
	var buf bytes.Buffer
	in := Call{V: ProtocolVersion, Op: "status", Args: []byte(`{"a":1}`)}
	if err := WriteFrame(&buf, in); err != nil {
		t.Fatal(err)
	}
	var out Call
	if err := ReadFrame(&buf, 1024, &out); err != nil {
		t.Fatal(err)
	}
	if out.V != in.V || out.Op != in.Op || string(out.Args) != string(in.Args) {
		t.Fatalf("round trip: got %+v", out)
	}

	frame := func(payload string) *bytes.Reader {
		b := make([]byte, 4+len(payload))
		binary.BigEndian.PutUint32(b, uint32(len(payload)))
		copy(b[4:], payload)
		return bytes.NewReader(b)
	}
	for _, c := range []struct {
		name    string
		r       io.Reader
		max     int
		wantErr error
	}{
		{"unknown field", frame(`{"v":1,"op":"x","url":"https://evil.test"}`), 1024, nil},
		{"trailing data", frame(`{"v":1,"op":"x"} {}`), 1024, nil},
		{"not json", frame(`garbage`), 1024, nil},
		{"oversized announcement", frame(`{"v":1}`), 3, ErrFrameTooLarge},
		{"truncated payload", io.LimitReader(frame(`{"v":1,"op":"status"}`), 10), 1024, io.ErrUnexpectedEOF},
		{"truncated header", bytes.NewReader([]byte{0, 0}), 1024, io.ErrUnexpectedEOF},
	} {
		var v Call
		err := ReadFrame(c.r, c.max, &v)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if c.wantErr != nil && !errors.Is(err, c.wantErr) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.wantErr)
		}
	}
}

func TestFrameMaxIsEnforcedBeforeAllocation(t *testing.T) {
	// A peer announcing 4 GiB must be refused from the header alone.
	hdr := []byte{0xff, 0xff, 0xff, 0xff}
	_, err := ReadRawFrame(bytes.NewReader(hdr), DefaultMaxFrame)
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
}
