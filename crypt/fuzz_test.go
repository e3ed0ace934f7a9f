package crypt

import (
	"bytes"
	"encoding/base64"
	"testing"
)

func FuzzLoadRecord(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"format":"aivault-secret","version":1}`))
	wk := bytes.Repeat([]byte{1}, 32)
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := parseRecord(data)
		if err != nil {
			return
		}
		// Decrypting garbage must fail cleanly, never panic.
		if dek, err := r.unwrapDEK(wk, r.Wraps[0].KEKID); err == nil {
			r.openValue(dek)
		}
		enc, err := r.encode()
		if err != nil {
			t.Fatalf("a parsed record does not encode: %v", err)
		}
		r2, err := parseRecord(enc)
		if err != nil {
			t.Fatalf("an encoded record does not parse: %v", err)
		}
		enc2, err := r2.encode()
		if err != nil || !bytes.Equal(enc, enc2) {
			t.Fatalf("record round trip differs")
		}
	})
}

func FuzzLoadState(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"format":"aivault-state","version":1,"name":"broker","macs":[],"body":{}}`))
	k, err := KeyFromBytes(bytes.Repeat([]byte{2}, 32))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sf, err := parseState(data, "broker")
		if err != nil {
			return
		}
		verifyStateMAC(k, "broker", sf)
		enc, err := encodeState(sf)
		if err != nil {
			t.Fatalf("a parsed state does not encode: %v", err)
		}
		sf2, err := parseState(enc, "broker")
		if err != nil {
			t.Fatalf("an encoded state does not parse: %v", err)
		}
		if !bytes.Equal(sf.Body, sf2.Body) || len(sf.MACs) != len(sf2.MACs) {
			t.Fatalf("state round trip differs")
		}
		for i := range sf.MACs {
			if sf.MACs[i].KEKID != sf2.MACs[i].KEKID || !bytes.Equal(sf.MACs[i].MAC, sf2.MACs[i].MAC) {
				t.Fatalf("state MACs differ after a round trip")
			}
		}
	})
}

func FuzzParseMeta(f *testing.F) {
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := parseMeta(data)
		if err != nil {
			return
		}
		enc, err := marshalFile(m)
		if err != nil {
			t.Fatalf("parsed vault.json does not encode: %v", err)
		}
		m2, err := parseMeta(enc)
		if err != nil {
			t.Fatalf("encoded vault.json does not parse: %v", err)
		}
		enc2, _ := marshalFile(m2)
		if !bytes.Equal(enc, enc2) {
			t.Fatal("vault.json round trip differs")
		}
	})
}

func FuzzParseKeyText(f *testing.F) {
	f.Add([]byte("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"))
	f.Add([]byte("not a key"))
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, ok := parseKeyText(data)
		if !ok {
			return
		}
		if len(raw) != KeySize {
			t.Fatalf("parsed key has %d bytes", len(raw))
		}
		again, ok := parseKeyText([]byte(base64.StdEncoding.EncodeToString(raw)))
		if !ok || !bytes.Equal(raw, again) {
			t.Fatal("key text round trip differs")
		}
	})
}
