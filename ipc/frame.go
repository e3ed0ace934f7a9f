// Package ipc is the wire between the aivault client, the aivaultd monitor and
// its workers: length-prefixed JSON frames with strict decoding, the message
// types, peer credentials and file-descriptor passing.
package ipc

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// ProtocolVersion is carried in every hello; a mismatch is refused with a
// message that names both versions.
const ProtocolVersion = 1

// DefaultMaxFrame bounds one frame from an untrusted peer (bodies of uploads
// travel inside frames, so this is also the largest request body).
const DefaultMaxFrame = 32 << 20

// ErrFrameTooLarge is returned when a peer announces a frame over the limit.
var ErrFrameTooLarge = errors.New("ipc: frame exceeds the maximum size")

// WriteFrame writes v as one frame: a 4-byte big-endian length and the JSON.
func WriteFrame(w io.Writer, v any) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("ipc: encode frame: %w", err)
	}
	buf := make([]byte, 4+len(payload))
	binary.BigEndian.PutUint32(buf, uint32(len(payload)))
	copy(buf[4:], payload)
	_, err = w.Write(buf)
	clear(buf)
	clear(payload)
	return err
}

// ReadRawFrame reads one frame's payload, refusing frames larger than max.
func ReadRawFrame(r io.Reader, max int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if max <= 0 {
		max = DefaultMaxFrame
	}
	if uint64(n) > uint64(max) {
		return nil, fmt.Errorf("%w (%d > %d bytes)", ErrFrameTooLarge, n, max)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return payload, nil
}

// ReadFrame reads one frame into v with strict decoding: unknown fields and
// trailing data are refused.
func ReadFrame(r io.Reader, max int, v any) error {
	payload, err := ReadRawFrame(r, max)
	if err != nil {
		return err
	}
	defer clear(payload)
	return DecodeStrict(payload, v)
}

// DecodeStrict decodes one JSON value, refusing unknown fields and trailing data.
func DecodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("ipc: malformed frame: %w", err)
	}
	if dec.More() {
		return errors.New("ipc: malformed frame: trailing data")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("ipc: malformed frame: trailing data")
	}
	return nil
}
