package crypt

import (
	"bytes"
	"errors"
	"testing"
)

func TestKeyDerivations(t *testing.T) {
	raw := bytes.Repeat([]byte{7}, 32)
	k1, err := KeyFromBytes(bytes.Clone(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer k1.Destroy()
	k2, _ := KeyFromBytes(bytes.Clone(raw))
	defer k2.Destroy()
	k3, _ := KeyFromBytes(bytes.Repeat([]byte{8}, 32))
	defer k3.Destroy()

	if !kekIDRe().MatchString(k1.ID()) || k1.ID() != k2.ID() || k1.ID() == k3.ID() {
		t.Fatalf("ids %s %s %s", k1.ID(), k2.ID(), k3.ID())
	}
	a, _ := k1.DeriveKey("audit chain")
	b, _ := k2.DeriveKey("audit chain")
	c, _ := k1.DeriveKey("other")
	d, _ := k3.DeriveKey("audit chain")
	if len(a) != 32 || !bytes.Equal(a, b) || bytes.Equal(a, c) || bytes.Equal(a, d) || bytes.Contains(a, raw[:8]) {
		t.Fatal("DeriveKey is not a deterministic, purpose- and key-separated subkey")
	}
	// A caller's purpose can never produce an internal subkey.
	internal, _ := k1.derive(labelWrap)
	viaDerive, _ := k1.DeriveKey(labelWrap)
	if bytes.Equal(internal, viaDerive) {
		t.Fatal("DeriveKey collides with the DEK wrapping key")
	}
	if _, err := k1.DeriveKey(""); !errors.Is(err, ErrInvalid) {
		t.Fatalf("empty purpose: %v", err)
	}

	ch := []byte("challenge-123")
	proof := k1.Prove(ch)
	tests := []struct {
		name  string
		k     *Key
		ch    []byte
		proof []byte
		ok    bool
	}{
		{"same key", k2, ch, proof, true},
		{"other key", k3, ch, proof, false},
		{"other challenge", k2, []byte("challenge-124"), proof, false},
		{"truncated", k2, ch, proof[:16], false},
		{"empty", k2, ch, nil, false},
	}
	for _, tc := range tests {
		if got := tc.k.VerifyProof(tc.ch, tc.proof); got != tc.ok {
			t.Errorf("%s: VerifyProof = %v", tc.name, got)
		}
	}

	k2.Destroy()
	if k2.Prove(ch) != nil || k2.VerifyProof(ch, proof) {
		t.Fatal("a destroyed key still proves")
	}
	if _, err := k2.DeriveKey("x"); !errors.Is(err, ErrKeyDestroyed) {
		t.Fatalf("DeriveKey on a destroyed key: %v", err)
	}
	if _, err := KeyFromBytes(make([]byte, 31)); !errors.Is(err, ErrInvalid) {
		t.Fatalf("short key: %v", err)
	}
}
