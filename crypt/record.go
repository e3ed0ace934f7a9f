package crypt

import (
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"golang.org/x/crypto/chacha20poly1305"
)

// Record format: D/secrets/<id>.json, one file per secret.
//
//	{
//	  "format": "aivault-secret", "version": 1,
//	  "id": "sec_…", "name": "…", "aliases": […],
//	  "scope": "global", "workspaceId": "…", "groupId": "…", "pinned": "…",
//	  "createdAt": "…", "updatedAt": "…", "valueVersion": 1,
//	  "kekId": "kek_…",                       // key of wraps[0] (informational)
//	  "wraps": [{"kekId": "kek_…", "dek": b64(nonce‖XChaCha20-Poly1305(wrapKey, DEK))}],
//	  "value": b64(nonce‖XChaCha20-Poly1305(DEK, plaintext))
//	}
//
// wrapKey = HKDF-SHA256(KEK, "aivault dek wrap v1"). Both AEADs take as AAD
// a length-prefixed encoding of (format, version, purpose, id, scope,
// workspaceId, groupId, pinned) and, for a wrap, its kekId — so moving a
// ciphertext to another record, or editing the scope, context or pinned
// provider on disk, makes decryption fail. Name, aliases and timestamps are
// plain metadata (renaming needs no key).
const (
	recordFormat  = "aivault-secret"
	recordVersion = 1
	// MaxSecretSize is the largest secret value accepted, in bytes.
	MaxSecretSize = 1 << 20
	maxRecordSize = 2*MaxSecretSize + 64<<10
	maxWraps      = 4
	maxAliases    = 32
	maxFieldLen   = 128
	nonceSize     = chacha20poly1305.NonceSizeX
	tagSize       = chacha20poly1305.Overhead
	wrappedDEKLen = nonceSize + KeySize + tagSize
)

// AAD purposes.
const (
	aadValue = "value"
	aadWrap  = "dek-wrap"
)

var (
	nameRe   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,127}$`) })
	idRe     = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^sec_[a-z2-7]{20}$`) })
	idBase32 = base32.StdEncoding.WithPadding(base32.NoPadding)
)

// ValidName reports whether s is an acceptable secret name or alias:
// ^[A-Za-z_][A-Za-z0-9_.-]{0,127}$.
func ValidName(s string) bool { return nameRe().MatchString(s) }

// ValidID reports whether s has the form of a secret id ("sec_" + 20 base32
// characters).
func ValidID(s string) bool { return idRe().MatchString(s) }

// newSecretID returns "sec_" + 20 random lowercase base32 characters (100 bits).
func newSecretID() (string, error) {
	var b [13]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generating secret id: %w", err)
	}
	return "sec_" + strings.ToLower(idBase32.EncodeToString(b[:]))[:20], nil
}

// SecretMeta is a secret's non-secret metadata.
type SecretMeta struct {
	ID           string    `json:"secretId"`
	Name         string    `json:"name"`
	Aliases      []string  `json:"aliases,omitempty"`
	Scope        string    `json:"scope"` // "global", "workspace", "group"; "" means "global" on create
	WorkspaceID  string    `json:"workspaceId,omitempty"`
	GroupID      string    `json:"groupId,omitempty"`
	Pinned       string    `json:"pinnedProvider,omitempty"`
	CreatedAt    time.Time `json:"createdAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
	ValueVersion int       `json:"valueVersion"`
}

// record is the on-disk form of a secret.
type record struct {
	Format       string    `json:"format"`
	Version      int       `json:"version"`
	ID           string    `json:"id"`
	Name         string    `json:"name"`
	Aliases      []string  `json:"aliases,omitempty"`
	Scope        string    `json:"scope"`
	WorkspaceID  string    `json:"workspaceId,omitempty"`
	GroupID      string    `json:"groupId,omitempty"`
	Pinned       string    `json:"pinned,omitempty"`
	CreatedAt    time.Time `json:"createdAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
	ValueVersion int       `json:"valueVersion"`
	KEKID        string    `json:"kekId"`
	Wraps        []wrap    `json:"wraps"`
	Value        []byte    `json:"value"`
}

// wrap is a DEK wrapped under one KEK.
type wrap struct {
	KEKID string `json:"kekId"`
	DEK   []byte `json:"dek"`
}

func (r *record) meta() SecretMeta {
	return SecretMeta{
		ID: r.ID, Name: r.Name, Aliases: append([]string(nil), r.Aliases...),
		Scope: r.Scope, WorkspaceID: r.WorkspaceID, GroupID: r.GroupID, Pinned: r.Pinned,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, ValueVersion: r.ValueVersion,
	}
}

// clone returns a deep copy of r.
func (r *record) clone() *record {
	c := *r
	c.Aliases = slices.Clone(r.Aliases)
	c.Value = bytes.Clone(r.Value)
	c.Wraps = make([]wrap, len(r.Wraps))
	for i, w := range r.Wraps {
		c.Wraps[i] = wrap{KEKID: w.KEKID, DEK: bytes.Clone(w.DEK)}
	}
	return &c
}

// wrapFor returns the wrap under kekID, or nil.
func (r *record) wrapFor(kekID string) *wrap {
	for i := range r.Wraps {
		if r.Wraps[i].KEKID == kekID {
			return &r.Wraps[i]
		}
	}
	return nil
}

// validField checks a scope/context/pinned value: printable, no spaces,
// bounded.
func validField(s string, required bool) bool {
	if s == "" {
		return !required
	}
	if len(s) > maxFieldLen {
		return false
	}
	for _, c := range s {
		if !unicode.IsPrint(c) || unicode.IsSpace(c) {
			return false
		}
	}
	return true
}

// validateMeta checks the metadata fields shared by records and requests.
func validateMeta(m *SecretMeta) error {
	if !ValidName(m.Name) {
		return fmt.Errorf("%w: secret name %q must match ^[A-Za-z_][A-Za-z0-9_.-]{0,127}$", ErrInvalid, m.Name)
	}
	if len(m.Aliases) > maxAliases {
		return fmt.Errorf("%w: at most %d aliases", ErrInvalid, maxAliases)
	}
	seen := map[string]bool{m.Name: true}
	for _, a := range m.Aliases {
		if !ValidName(a) {
			return fmt.Errorf("%w: alias %q must match ^[A-Za-z_][A-Za-z0-9_.-]{0,127}$", ErrInvalid, a)
		}
		if seen[a] {
			return fmt.Errorf("%w: alias %q repeats the name or another alias", ErrInvalid, a)
		}
		seen[a] = true
	}
	if !validField(m.Scope, true) {
		return fmt.Errorf("%w: bad scope %q", ErrInvalid, m.Scope)
	}
	if !validField(m.WorkspaceID, false) || !validField(m.GroupID, false) || !validField(m.Pinned, false) {
		return fmt.Errorf("%w: workspace, group and pinned provider must be printable, without spaces, at most %d bytes", ErrInvalid, maxFieldLen)
	}
	return nil
}

// validate checks a parsed record's structure (not its authenticity).
func (r *record) validate() error {
	if r.Format != recordFormat {
		return fmt.Errorf("not an aivault secret record (format %q)", r.Format)
	}
	if r.Version != recordVersion {
		return fmt.Errorf("record version %d is not supported (this aivault reads version %d)", r.Version, recordVersion)
	}
	if !ValidID(r.ID) {
		return fmt.Errorf("malformed record id")
	}
	m := r.meta()
	if err := validateMeta(&m); err != nil {
		return err
	}
	if r.ValueVersion < 1 {
		return fmt.Errorf("value version %d < 1", r.ValueVersion)
	}
	if len(r.Wraps) < 1 || len(r.Wraps) > maxWraps {
		return fmt.Errorf("record has %d key wraps (want 1..%d)", len(r.Wraps), maxWraps)
	}
	seen := map[string]bool{}
	for _, w := range r.Wraps {
		if !kekIDRe().MatchString(w.KEKID) || len(w.DEK) != wrappedDEKLen || seen[w.KEKID] {
			return fmt.Errorf("malformed key wrap")
		}
		seen[w.KEKID] = true
	}
	if r.KEKID != r.Wraps[0].KEKID {
		return fmt.Errorf("kekId does not name the first wrap")
	}
	if len(r.Value) < nonceSize+tagSize+1 || len(r.Value) > nonceSize+tagSize+MaxSecretSize {
		return fmt.Errorf("malformed value ciphertext")
	}
	return nil
}

// parseRecord decodes and structurally validates a record file's content.
// It never panics on any input (FuzzLoadRecord).
func parseRecord(data []byte) (*record, error) {
	if len(data) > maxRecordSize {
		return nil, fmt.Errorf("record larger than %d bytes", maxRecordSize)
	}
	var r record
	if err := decodeStrict(data, &r); err != nil {
		return nil, fmt.Errorf("unparsable record: %w", err)
	}
	if err := r.validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// encode renders a record file.
func (r *record) encode() ([]byte, error) {
	if len(r.Wraps) > 0 {
		r.KEKID = r.Wraps[0].KEKID
	}
	return marshalFile(r)
}

// aad builds the additional data binding a ciphertext to its record.
func (r *record) aad(purpose, kekID string) []byte {
	fields := []string{recordFormat, strconv.Itoa(recordVersion), purpose, r.ID, r.Scope, r.WorkspaceID, r.GroupID, r.Pinned, kekID}
	n := 0
	for _, f := range fields {
		n += 4 + len(f)
	}
	out := make([]byte, 0, n)
	for _, f := range fields {
		out = binary.BigEndian.AppendUint32(out, uint32(len(f)))
		out = append(out, f...)
	}
	return out
}

// seal encrypts plaintext under key (32 bytes) with a random nonce:
// nonce ‖ ciphertext ‖ tag.
func seal(key, plaintext, aad []byte) ([]byte, error) {
	a, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, nonceSize, nonceSize+len(plaintext)+tagSize)
	if _, err := rand.Read(out); err != nil {
		return nil, err
	}
	return a.Seal(out, out[:nonceSize], plaintext, aad), nil
}

// unseal reverses seal. The returned plaintext is the caller's to wipe.
func unseal(key, box, aad []byte) ([]byte, error) {
	a, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	if len(box) < nonceSize+tagSize {
		return nil, fmt.Errorf("ciphertext too short")
	}
	return a.Open(nil, box[:nonceSize], box[nonceSize:], aad)
}

// wrapDEK wraps dek for this record under the key whose wrapping key is wk.
func (r *record) wrapDEK(wk []byte, kekID string, dek []byte) (wrap, error) {
	box, err := seal(wk, dek, r.aad(aadWrap, kekID))
	if err != nil {
		return wrap{}, fmt.Errorf("wrapping data key: %w", err)
	}
	return wrap{KEKID: kekID, DEK: box}, nil
}

// unwrapDEK recovers the record's DEK using wrapping key wk of key kekID.
// The caller wipes the DEK.
func (r *record) unwrapDEK(wk []byte, kekID string) ([]byte, error) {
	w := r.wrapFor(kekID)
	if w == nil {
		return nil, fmt.Errorf("%w: secret %s is not wrapped under key %s; the master key may have been rotated: unlock the vault again", ErrWrongKey, r.ID, kekID)
	}
	dek, err := unseal(wk, w.DEK, r.aad(aadWrap, kekID))
	if err != nil || len(dek) != KeySize {
		clear(dek)
		return nil, &TamperedError{ID: r.ID, Problem: "data key does not authenticate"}
	}
	return dek, nil
}

// openValue decrypts the value under dek. The caller wipes the plaintext.
func (r *record) openValue(dek []byte) ([]byte, error) {
	pt, err := unseal(dek, r.Value, r.aad(aadValue, ""))
	if err != nil {
		return nil, &TamperedError{ID: r.ID, Problem: "value does not authenticate"}
	}
	return pt, nil
}

// sealValue encrypts value under a fresh DEK wrapped by wrapping key wk of
// key kekID, replacing the record's value and wraps.
func (r *record) sealValue(wk []byte, kekID string, value []byte) error {
	dek := make([]byte, KeySize)
	defer clear(dek)
	if _, err := rand.Read(dek); err != nil {
		return fmt.Errorf("generating data key: %w", err)
	}
	box, err := seal(dek, value, r.aad(aadValue, ""))
	if err != nil {
		return fmt.Errorf("encrypting value: %w", err)
	}
	w, err := r.wrapDEK(wk, kekID, dek)
	if err != nil {
		return err
	}
	r.Value = box
	r.Wraps = []wrap{w}
	r.KEKID = kekID
	return nil
}
