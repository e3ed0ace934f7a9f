package crypt

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// State file format: D/<name>.json
//
//	{
//	  "format": "aivault-state", "version": 1, "name": "broker",
//	  "macs": [{"kekId": "kek_…", "mac": b64(HMAC-SHA256(HKDF(KEK, "aivault state mac v1|"+name), body))}],
//	  "body": { …the caller's JSON… }
//	}
//
// The MAC covers the exact (compact) bytes of body; the file may be
// re-indented without breaking it. During a master-key rotation a file
// carries one MAC per key, like records carry one wrap per key.
const (
	stateFormat  = "aivault-state"
	stateVersion = 1
	maxStateSize = 16 << 20
	maxStateMACs = 4
)

var stateNameRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`) })

type stateFile struct {
	Format  string          `json:"format"`
	Version int             `json:"version"`
	Name    string          `json:"name"`
	MACs    []stateMAC      `json:"macs"`
	Body    json.RawMessage `json:"body"`
}

type stateMAC struct {
	KEKID string `json:"kekId"`
	MAC   []byte `json:"mac"`
}

// stateBase normalises a state name: "broker" and "broker.json" both mean
// D/broker.json, MAC label "broker".
func stateBase(name string) (string, error) {
	base := strings.TrimSuffix(name, ".json")
	if !stateNameRe().MatchString(base) || base == "vault" {
		return "", fmt.Errorf("%w: bad state name %q (want ^[a-z][a-z0-9_-]{0,63}$, not \"vault\")", ErrInvalid, name)
	}
	return base, nil
}

func (v *Vault) statePath(base string) string { return filepath.Join(v.paths.Dir, base+".json") }

func stateTampered(base, problem string) error {
	return fmt.Errorf("%w: %s.json was modified without the vault key (%s); restore it from a backup or remove it to reset policy", ErrStateTampered, base, problem)
}

// parseState decodes a state file. It never panics on any input
// (FuzzLoadState); the body is returned compacted, ready for the MAC.
func parseState(data []byte, base string) (*stateFile, error) {
	if len(data) > maxStateSize {
		return nil, stateTampered(base, "file too large")
	}
	var sf stateFile
	if err := decodeStrict(data, &sf); err != nil {
		return nil, stateTampered(base, "unparsable: "+err.Error())
	}
	switch {
	case sf.Format != stateFormat:
		return nil, stateTampered(base, "not an aivault state file")
	case sf.Version != stateVersion:
		return nil, stateTampered(base, fmt.Sprintf("unsupported version %d", sf.Version))
	case sf.Name != base:
		return nil, stateTampered(base, "file belongs to another state name")
	case len(sf.MACs) < 1 || len(sf.MACs) > maxStateMACs:
		return nil, stateTampered(base, "missing MAC")
	case len(sf.Body) == 0:
		return nil, stateTampered(base, "missing body")
	}
	for _, m := range sf.MACs {
		if !kekIDRe().MatchString(m.KEKID) || len(m.MAC) != sha256.Size {
			return nil, stateTampered(base, "malformed MAC")
		}
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, sf.Body); err != nil {
		return nil, stateTampered(base, "body is not JSON")
	}
	sf.Body = compact.Bytes()
	return &sf, nil
}

// encodeState renders a state file.
func encodeState(sf *stateFile) ([]byte, error) { return marshalFile(sf) }

// stateMACFor computes the MAC of body under k for state base.
func stateMACFor(k *Key, base string, body []byte) ([]byte, error) {
	mk, err := k.derive(labelStateMAC + base)
	if err != nil {
		return nil, err
	}
	defer clear(mk)
	m := hmac.New(sha256.New, mk)
	m.Write(body)
	return m.Sum(nil), nil
}

// verifyStateMAC checks sf's MAC under k.
func verifyStateMAC(k *Key, base string, sf *stateFile) error {
	i := slices.IndexFunc(sf.MACs, func(m stateMAC) bool { return m.KEKID == k.ID() })
	if i < 0 {
		return stateTampered(base, "no MAC under the current vault key")
	}
	want, err := stateMACFor(k, base, sf.Body)
	if err != nil {
		return err
	}
	if !hmac.Equal(want, sf.MACs[i].MAC) {
		return stateTampered(base, "MAC mismatch")
	}
	return nil
}

// SaveState stores val as JSON in D/<name>.json (name "broker" or
// "broker.json") with a MAC under a key derived from k, so that an edit by
// anyone without the vault key is detected by LoadState. Takes the vault
// lock.
func (v *Vault) SaveState(k *Key, name string, val any) error {
	base, err := stateBase(name)
	if err != nil {
		return err
	}
	body, err := json.Marshal(val)
	if err != nil {
		return fmt.Errorf("encoding state %s: %w", base, err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, body); err != nil {
		return fmt.Errorf("encoding state %s: %w", base, err)
	}
	body = compact.Bytes()
	return v.mutate(func() error {
		if err := v.requireCurrent(k); err != nil {
			return err
		}
		mac, err := stateMACFor(k, base, body)
		if err != nil {
			return err
		}
		data, err := encodeState(&stateFile{Format: stateFormat, Version: stateVersion, Name: base, MACs: []stateMAC{{KEKID: k.ID(), MAC: mac}}, Body: body})
		if err != nil {
			return fmt.Errorf("encoding state %s: %w", base, err)
		}
		if err := writeAtomic(v.statePath(base), data, 0o600, v.opts.CrashPoint, "state-save"); err != nil {
			return err
		}
		v.crash("state-save:after-rename")
		return nil
	})
}

// LoadState reads D/<name>.json into val after checking its MAC under k.
// A missing file returns an error matching fs.ErrNotExist (the caller starts
// from an empty state); a missing or wrong MAC returns ErrStateTampered; a
// key that is no longer the vault's returns ErrWrongKey.
func (v *Vault) LoadState(k *Key, name string, val any) error {
	base, err := stateBase(name)
	if err != nil {
		return err
	}
	if k == nil {
		return ErrKeyDestroyed
	}
	data, err := readFileLimited(v.statePath(base), maxStateSize)
	if errors.Is(err, errTooLarge) || errors.Is(err, ErrInvalid) {
		return stateTampered(base, err.Error())
	}
	if err != nil {
		return fmt.Errorf("reading state %s: %w", base, err)
	}
	body, ok := v.verifiedBody(base, k.ID(), data)
	if !ok {
		sf, err := parseState(data, base)
		if err != nil {
			return err
		}
		if err := verifyStateMAC(k, base, sf); err != nil {
			if m, merr := v.readMeta(); merr == nil && m.KEKID != k.ID() {
				return fmt.Errorf("%w: the key is not the vault's current key (was the master key rotated? unlock again)", ErrWrongKey)
			}
			return err
		}
		body = sf.Body
		v.rememberVerified(base, k.ID(), data, body)
	}
	if err := json.Unmarshal(body, val); err != nil {
		return fmt.Errorf("decoding state %s: %w", base, err)
	}
	return nil
}

// stateNames lists the state files in D (by base name), sorted.
func (v *Vault) stateNames() ([]string, error) {
	ents, err := os.ReadDir(v.paths.Dir)
	if err != nil {
		return nil, fmt.Errorf("listing state files: %w", err)
	}
	var out []string
	for _, e := range ents {
		base, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || isTemp(e.Name()) || !e.Type().IsRegular() || base == "vault" || !stateNameRe().MatchString(base) {
			continue
		}
		data, err := readFileLimited(filepath.Join(v.paths.Dir, e.Name()), maxStateSize)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("reading state %s: %w", base, err)
		}
		var probe struct {
			Format string `json:"format"`
		}
		if json.Unmarshal(data, &probe) == nil && probe.Format == stateFormat {
			out = append(out, base)
		}
	}
	return out, nil
}

// readState reads and parses one state file.
func (v *Vault) readState(base string) (*stateFile, error) {
	data, err := readFileLimited(v.statePath(base), maxStateSize)
	if err != nil {
		return nil, fmt.Errorf("reading state %s: %w", base, err)
	}
	return parseState(data, base)
}

// verifyStates checks every state file's MAC under k (for Verify).
func (v *Vault) verifyStates(k *Key) ([]RecordProblem, error) {
	names, err := v.stateNames()
	if err != nil {
		return nil, err
	}
	var probs []RecordProblem
	for _, base := range names {
		sf, err := v.readState(base)
		if err == nil {
			err = verifyStateMAC(k, base, sf)
		}
		if err != nil {
			probs = append(probs, RecordProblem{ID: base, File: v.statePath(base), Problem: err.Error()})
		}
	}
	return probs, nil
}

// verifiedState is the last state file content whose MAC verified under the
// key with ID kekID. LoadState reads the file every time; only when the
// bytes are exactly these (and the key is the same) does it skip parsing
// and the MAC check, which derives a key from the KEK (a memguard enclave
// open) and was a tenth of the daemon's work per request.
type verifiedState struct {
	kekID string
	data  []byte
	body  []byte
}

func (v *Vault) verifiedBody(base, kekID string, data []byte) ([]byte, bool) {
	v.stateMu.Lock()
	defer v.stateMu.Unlock()
	c, ok := v.verified[base]
	if !ok || c.kekID != kekID || !bytes.Equal(c.data, data) {
		return nil, false
	}
	return c.body, true
}

func (v *Vault) rememberVerified(base, kekID string, data, body []byte) {
	v.stateMu.Lock()
	defer v.stateMu.Unlock()
	if v.verified == nil {
		v.verified = map[string]verifiedState{}
	}
	v.verified[base] = verifiedState{kekID: kekID, data: bytes.Clone(data), body: bytes.Clone(body)}
}
