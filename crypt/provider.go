package crypt

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/argon2"
	"golang.org/x/sys/unix"
)

// obtainFileKey returns the KEK stored in keyFile. With create, a missing key
// file is created with a fresh random key. Creation is race-safe: it happens
// under an flock on keyFile+".lock", re-checks for the file under that lock,
// and publishes the file with link(2), which never replaces an existing key.
func obtainFileKey(keyFile string, create bool) (*Key, error) {
	k, err := readKeyFile(keyFile)
	if err == nil || !create || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if err := mkdirPrivate(filepath.Dir(keyFile)); err != nil {
		return nil, err
	}
	lf, err := flockFile(keyFile + keyLockSuffix)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	// Re-check under the lock: another process may have just created it.
	k, err = readKeyFile(keyFile)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	raw := make([]byte, KeySize)
	defer clear(raw)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("generating vault key: %w", err)
	}
	if err := writeKeyFile(keyFile, raw, false); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	return readKeyFile(keyFile)
}

// writeKeyFile stores raw (not wiped) as base64 + newline, mode 0600. With
// replace it atomically replaces path; otherwise it fails with fs.ErrExist if
// path exists.
func writeKeyFile(path string, raw []byte, replace bool) error {
	text := make([]byte, base64.StdEncoding.EncodedLen(len(raw))+1)
	defer clear(text)
	base64.StdEncoding.Encode(text, raw)
	text[len(text)-1] = '\n'
	var err error
	if replace {
		err = WriteFileAtomic(path, text, 0o600)
	} else {
		err = linkNew(path, text, 0o600)
	}
	if err != nil {
		return fmt.Errorf("writing key file %s: %w", path, err)
	}
	return nil
}

// readKeyFile reads a file-provider key. The file must be a regular file
// (not a symlink) that group and others cannot access.
func readKeyFile(path string) (*Key, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: key file %s does not exist; restore it from your backup (the vault cannot be opened without it): %w", ErrVaultLocked, path, err)
		}
		return nil, fmt.Errorf("%w: reading key file: %w", ErrVaultLocked, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: reading key file: %w", ErrVaultLocked, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: key file %s is not a regular file", ErrVaultLocked, path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: key file %s has mode %04o; it must be readable by its owner only: chmod 600 %s", ErrVaultLocked, path, st.Mode().Perm(), path)
	}
	var buf [maxKeyFileLen + 1]byte
	defer clear(buf[:])
	n, err := io.ReadFull(f, buf[:])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, fmt.Errorf("%w: reading key file: %w", ErrVaultLocked, err)
	}
	if n > maxKeyFileLen {
		return nil, fmt.Errorf("%w: key file %s is not a base64 %d-byte key", ErrWrongKey, path, KeySize)
	}
	raw, ok := parseKeyText(buf[:n])
	if !ok {
		return nil, fmt.Errorf("%w: key file %s is not a base64 %d-byte key", ErrWrongKey, path, KeySize)
	}
	return keyFromRaw(raw)
}

// parseKeyText decodes a base64 (standard or URL alphabet, padded or not)
// 32-byte key surrounded by optional whitespace. It never copies the text
// anywhere it does not wipe.
func parseKeyText(text []byte) ([]byte, bool) {
	text = bytes.TrimSpace(text)
	var dst [maxKeyFileLen]byte
	defer clear(dst[:])
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if enc.DecodedLen(len(text)) > len(dst) {
			return nil, false
		}
		n, err := enc.Decode(dst[:], text)
		if err == nil && n == KeySize {
			raw := make([]byte, KeySize)
			copy(raw, dst[:KeySize])
			return raw, true
		}
	}
	return nil, false
}

// newKDF returns fresh Argon2id parameters with a random salt.
func newKDF(a *ArgonParams) (*kdfParams, error) {
	p := DefaultArgonParams()
	if a != nil {
		p = *a
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, fmt.Errorf("generating salt: %w", err)
	}
	return &kdfParams{Alg: "argon2id", Salt: salt, Time: p.Time, MemoryKiB: p.MemoryKiB, Threads: p.Threads}, nil
}

// passphraseKey derives the KEK from a passphrase.
func passphraseKey(pass []byte, p *kdfParams) (*Key, error) {
	if len(pass) == 0 {
		return nil, fmt.Errorf("%w: this vault uses a passphrase; none was given", ErrVaultLocked)
	}
	if err := CheckMemlock(); err != nil {
		return nil, err
	}
	raw := argon2.IDKey(pass, p.Salt, p.Time, p.MemoryKiB, p.Threads, KeySize)
	return keyFromRaw(raw)
}

// envKey reads a base64 KEK from the environment variable name.
func envKey(name string, lookup func(string) (string, bool)) (*Key, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	s, ok := lookup(name)
	if !ok || s == "" {
		return nil, fmt.Errorf("%w: this vault's key comes from the environment variable %s, which is not set", ErrVaultLocked, name)
	}
	text := []byte(s)
	defer clear(text)
	raw, ok := parseKeyText(text)
	if !ok {
		return nil, fmt.Errorf("%w: the environment variable %s does not hold a base64 %d-byte key", ErrWrongKey, name, KeySize)
	}
	return keyFromRaw(raw)
}

// Unlock obtains the vault key from src (passphrase provider: src.Passphrase;
// env provider: src.Lookup; file provider: Paths.KeyFile) and checks it
// against vault.json. Errors: ErrVaultLocked when the key material is not
// available (the message says what is missing), ErrWrongKey when it is not
// this vault's key, ErrMemlock when keys cannot be held in locked memory.
//
// If a master-key rotation was interrupted, Unlock completes the recovery
// under the vault lock before returning: with the old key it rolls the
// rotation back; with the new key it finishes it (when every record already
// carries a wrap under the new key). The returned key is then the vault's
// current key. A note about what was done is available from LastRecovery.
func (v *Vault) Unlock(src KeySource) (*Key, error) {
	if err := CheckMemlock(); err != nil {
		return nil, err
	}
	m, err := v.readMeta()
	if err != nil {
		return nil, err
	}
	cands, err := v.candidates(m, src)
	if err != nil {
		return nil, err
	}
	var use *Key
	isPrevious := false
	for _, c := range cands {
		switch {
		case c.ID() == m.KEKID && c.matches(m.Check):
			use = c
		case use == nil && m.Pending != nil && c.ID() == m.Pending.KEKID && c.matches(m.Pending.Check):
			use = c
		case m.Previous != nil && c.ID() == m.Previous.KEKID:
			isPrevious = true
		}
	}
	for _, c := range cands {
		if c != use {
			c.Destroy()
		}
	}
	if use == nil {
		if isPrevious {
			return nil, fmt.Errorf("%w: this is the key the vault had before its master key was rotated; use the new key", ErrWrongKey)
		}
		return nil, wrongKeyError(m)
	}
	if m.Pending == nil && m.Previous == nil {
		return use, nil
	}
	if err := v.mutate(func() error { return v.recoverLocked(use) }); err != nil {
		use.Destroy()
		return nil, err
	}
	return use, nil
}

// wrongKeyError phrases ErrWrongKey for the provider.
func wrongKeyError(m *vaultMeta) error {
	switch m.Provider {
	case ProviderPassphrase:
		return fmt.Errorf("%w: wrong passphrase", ErrWrongKey)
	case ProviderEnv:
		return fmt.Errorf("%w: the key in %s is not this vault's key", ErrWrongKey, m.EnvVar)
	default:
		return fmt.Errorf("%w: the key file does not hold this vault's key", ErrWrongKey)
	}
}

// candidates obtains the key(s) src and the key files can give: the current
// provider's key and, during an interrupted rotation, the new key too.
func (v *Vault) candidates(m *vaultMeta, src KeySource) ([]*Key, error) {
	rotating := m.Pending != nil || m.Previous != nil
	switch m.Provider {
	case ProviderFile:
		if v.paths.KeyFile == "" {
			return nil, fmt.Errorf("%w: no key file path given", ErrInvalid)
		}
		k, err := readKeyFile(v.paths.KeyFile)
		if err != nil {
			return nil, err
		}
		out := []*Key{k}
		if rotating {
			next, err := readKeyFile(v.nextKeyPath())
			switch {
			case err == nil:
				out = append(out, next)
			case !errors.Is(err, fs.ErrNotExist):
				k.Destroy()
				return nil, err
			}
		}
		return out, nil
	case ProviderPassphrase:
		k, err := passphraseKey(src.Passphrase, m.KDF)
		if err != nil {
			return nil, err
		}
		out := []*Key{k}
		if m.Pending != nil && m.Pending.KDF != nil && k.ID() != m.KEKID {
			next, err := passphraseKey(src.Passphrase, m.Pending.KDF)
			if err != nil {
				k.Destroy()
				return nil, err
			}
			out = append(out, next)
		}
		return out, nil
	case ProviderEnv:
		k, err := envKey(m.EnvVar, src.Lookup)
		if err != nil {
			if m.Pending == nil || m.Pending.EnvVar == "" || m.Pending.EnvVar == m.EnvVar {
				return nil, err
			}
			// The rotation may be moving to a new variable.
			next, nerr := envKey(m.Pending.EnvVar, src.Lookup)
			if nerr != nil {
				return nil, err
			}
			return []*Key{next}, nil
		}
		out := []*Key{k}
		if m.Pending != nil && m.Pending.EnvVar != "" && m.Pending.EnvVar != m.EnvVar && k.ID() != m.KEKID {
			if next, err := envKey(m.Pending.EnvVar, src.Lookup); err == nil {
				out = append(out, next)
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: unknown key provider %q", ErrInvalid, m.Provider)
}

// CheckKey reports whether k is this vault's current key (ErrWrongKey
// otherwise). The daemon uses it to accept a key handed over by unlock.
func (v *Vault) CheckKey(k *Key) error {
	m, err := v.readMeta()
	if err != nil {
		return err
	}
	if k.ID() == m.KEKID && k.matches(m.Check) {
		return nil
	}
	return wrongKeyError(m)
}
