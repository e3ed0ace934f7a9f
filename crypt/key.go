package crypt

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"sync/atomic"

	"github.com/awnumar/memguard"
)

// KeySize is the size of a KEK and of every DEK, in bytes.
const KeySize = 32

// HKDF labels. Each purpose has its own label so no derived key is ever used
// for two things. Callers' purposes (DeriveKey) live under their own prefix
// and can never collide with an internal label.
const (
	labelKEKID     = "aivault kek id v1"
	labelCheck     = "aivault key check v1"
	labelWrap      = "aivault dek wrap v1"
	labelStateMAC  = "aivault state mac v1|" // + state name
	labelProof     = "aivault operator proof v1"
	labelDerivePfx = "aivault derived key v1|" // + caller's purpose
)

// Key is an unlocked vault key (the KEK). The raw key lives only inside a
// memguard Enclave (encrypted, in memory the process is not allowed to dump
// or swap); it is opened into locked memory only for the few microseconds it
// takes to derive a subkey, and those subkeys are wiped after use.
//
// A Key is safe for concurrent use. Destroy it when done.
type Key struct {
	enc   atomic.Pointer[memguard.Enclave]
	id    string // public fingerprint, see ID
	check []byte // public check value stored in vault.json
}

// KeyFromBytes turns a raw 32-byte KEK into a Key. raw is wiped in every
// case. It returns ErrMemlock when keys cannot be held in locked memory.
func KeyFromBytes(raw []byte) (*Key, error) {
	defer clear(raw)
	if len(raw) != KeySize {
		return nil, fmt.Errorf("%w: a vault key is %d bytes, got %d", ErrInvalid, KeySize, len(raw))
	}
	return keyFromRaw(raw)
}

// keyFromRaw seals raw (32 bytes, wiped) into a new Key.
func keyFromRaw(raw []byte) (*Key, error) {
	defer clear(raw)
	if err := CheckMemlock(); err != nil {
		return nil, err
	}
	id, check, err := fingerprint(raw)
	if err != nil {
		return nil, err
	}
	k := &Key{id: id, check: check}
	// memguard.NewEnclave copies raw into the enclave and wipes raw.
	k.enc.Store(memguard.NewEnclave(raw))
	return k, nil
}

// fingerprint computes the public kekId and check value of a raw KEK.
func fingerprint(raw []byte) (id string, check []byte, err error) {
	idKey, err := hkdfKey(raw, labelKEKID)
	if err != nil {
		return "", nil, fmt.Errorf("deriving key id: %w", err)
	}
	defer clear(idKey)
	m := hmac.New(sha256.New, idKey)
	m.Write([]byte("kek-id"))
	id = "kek_" + hex.EncodeToString(m.Sum(nil)[:16])

	checkKey, err := hkdfKey(raw, labelCheck)
	if err != nil {
		return "", nil, fmt.Errorf("deriving check key: %w", err)
	}
	defer clear(checkKey)
	m = hmac.New(sha256.New, checkKey)
	m.Write([]byte("aivault key check"))
	return id, m.Sum(nil), nil
}

// hkdfKey is hkdf.Key(sha256.New, secret, nil, label, KeySize) that leaves
// no copy of secret behind: crypto/hkdf's Extract feeds the secret (shorter
// than a SHA-256 block) to an HMAC whose inner digest keeps it in its block
// buffer, on the heap, unwiped — a scan of the daemon's memory found the raw
// KEK there. Here the HMAC is ours: after Sum, Reset and a block of zeros
// overwrite that buffer. (A nil salt is HashLen zero bytes, RFC 5869.)
func hkdfKey(secret []byte, label string) ([]byte, error) {
	var salt [sha256.Size]byte
	m := hmac.New(sha256.New, salt[:])
	m.Write(secret)
	prk := m.Sum(nil)
	defer clear(prk)
	var zeros [sha256.BlockSize - 1]byte
	m.Reset()
	m.Write(zeros[:])
	return hkdf.Expand(sha256.New, prk, label, KeySize)
}

// ID returns the key's public fingerprint ("kek_" + 32 hex digits), an HMAC
// under a KEK-derived key: it says which key wraps a record and reveals
// nothing about the key.
func (k *Key) ID() string { return k.id }

// checkB64 is the check value as stored in vault.json.
func (k *Key) checkB64() string { return base64.StdEncoding.EncodeToString(k.check) }

// matches reports, in constant time, whether the key's check value equals the
// stored one (base64).
func (k *Key) matches(storedCheck string) bool {
	want, err := base64.StdEncoding.DecodeString(storedCheck)
	if err != nil || len(want) != len(k.check) {
		return false
	}
	return subtle.ConstantTimeCompare(want, k.check) == 1
}

// Destroy forgets the key. Later use of k fails with ErrKeyDestroyed
// (Prove returns nil, VerifyProof false). Destroy is idempotent.
func (k *Key) Destroy() {
	if k != nil {
		k.enc.Store(nil)
	}
}

// derive returns HKDF-SHA256(KEK, info=label), 32 bytes; the caller wipes it.
func (k *Key) derive(label string) ([]byte, error) {
	if k == nil {
		return nil, ErrKeyDestroyed
	}
	e := k.enc.Load()
	if e == nil {
		return nil, ErrKeyDestroyed
	}
	buf, err := e.Open()
	if err != nil {
		return nil, fmt.Errorf("opening key enclave: %w", err)
	}
	defer buf.Destroy()
	sub, err := hkdfKey(buf.Bytes(), label)
	if err != nil {
		return nil, fmt.Errorf("deriving subkey: %w", err)
	}
	return sub, nil
}

// DeriveKey returns a 32-byte subkey of the KEK for the caller's purpose
// (e.g. "audit chain"): HKDF-SHA256 with info "aivault derived key v1|"+purpose.
// The caller must wipe it (clear) after use. The subkey changes when the
// master key is rotated.
func (k *Key) DeriveKey(purpose string) ([]byte, error) {
	if purpose == "" {
		return nil, fmt.Errorf("%w: empty key purpose", ErrInvalid)
	}
	return k.derive(labelDerivePfx + purpose)
}

// Prove answers an operator challenge: HMAC-SHA256 under
// HKDF(KEK, "aivault operator proof v1") over challenge. It lets a client show
// it holds the key without sending it. It returns nil if the key is destroyed.
func (k *Key) Prove(challenge []byte) []byte {
	pk, err := k.derive(labelProof)
	if err != nil {
		return nil
	}
	defer clear(pk)
	m := hmac.New(sha256.New, pk)
	m.Write(challenge)
	return m.Sum(nil)
}

// VerifyProof checks, in constant time, a proof made by Prove with the same
// key over challenge.
func (k *Key) VerifyProof(challenge, proof []byte) bool {
	want := k.Prove(challenge)
	if want == nil {
		return false
	}
	return hmac.Equal(want, proof)
}

// Export returns a copy of the raw key for handing it to the vault's own
// daemon over its private socket (aivault unlock). The caller must wipe it.
func (k *Key) Export() ([]byte, error) {
	enc := k.enc.Load()
	if enc == nil {
		return nil, ErrKeyDestroyed
	}
	buf, err := enc.Open()
	if err != nil {
		return nil, fmt.Errorf("open key enclave: %w", err)
	}
	defer buf.Destroy()
	out := make([]byte, KeySize)
	copy(out, buf.Bytes())
	return out, nil
}
