package crypt

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"testing"
)

// hkdfKey must stay byte-for-byte HKDF-SHA256 with a nil salt: every stored
// check value, key id and wrapped record depends on it.
func TestHKDFKeyMatchesStdlib(t *testing.T) {
	for _, secret := range [][]byte{make([]byte, KeySize), bytes.Repeat([]byte{0xab}, KeySize), []byte("short"), bytes.Repeat([]byte{7}, 100)} {
		for _, label := range []string{labelKEKID, labelCheck, labelWrap, labelProof, labelDerivePfx + "x"} {
			want, err := hkdf.Key(sha256.New, secret, nil, label, KeySize)
			if err != nil {
				t.Fatal(err)
			}
			got, err := hkdfKey(secret, label)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("hkdfKey(%d bytes, %q) differs from crypto/hkdf", len(secret), label)
			}
		}
	}
}
