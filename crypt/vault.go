package crypt

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sync"
	"time"
)

// On-disk names inside the vault directory D.
const (
	metaName    = "vault.json"
	secretsName = "secrets"
	lockName    = ".lock"
	// nextKeySuffix names the file provider's new key during rotate-master.
	nextKeySuffix = ".next"
	// keyLockSuffix names the lock serialising creation of a key file.
	keyLockSuffix = ".lock"
)

// Format identifiers and versions of the on-disk files.
const (
	metaFormat    = "aivault-vault"
	metaVersion   = 1
	maxMetaSize   = 64 << 10
	maxKeyFileLen = 256
)

// Paths locates a vault: Dir is the vault directory D, KeyFile the file
// provider's key file (outside D by default). The CLI computes defaults.
type Paths struct {
	Dir     string
	KeyFile string
}

// ProviderKind says where the KEK comes from.
type ProviderKind string

// Key providers.
const (
	// ProviderFile keeps a random KEK in Paths.KeyFile (the default).
	ProviderFile ProviderKind = "file"
	// ProviderPassphrase derives the KEK from a passphrase with Argon2id.
	ProviderPassphrase ProviderKind = "passphrase"
	// ProviderEnv reads a base64 KEK from a named environment variable.
	ProviderEnv ProviderKind = "env"
)

// ArgonParams are Argon2id cost parameters.
type ArgonParams struct {
	Time      uint32
	MemoryKiB uint32
	Threads   uint8
}

// DefaultArgonParams returns the parameters used when InitOptions.Argon is
// nil: t=2, 64 MiB, one thread per CPU up to 4.
func DefaultArgonParams() ArgonParams {
	th := runtime.NumCPU()
	th = max(1, min(th, 4))
	return ArgonParams{Time: 2, MemoryKiB: 64 << 10, Threads: uint8(th)}
}

// validate checks the parameters are within what this package will run
// (also protects against a vault.json edited to make unlocking very slow).
func (a ArgonParams) validate() error {
	switch {
	case a.Threads < 1 || a.Threads > 4:
		return fmt.Errorf("%w: argon2id threads must be 1..4, got %d", ErrInvalid, a.Threads)
	case a.Time < 1 || a.Time > 64:
		return fmt.Errorf("%w: argon2id time must be 1..64, got %d", ErrInvalid, a.Time)
	case a.MemoryKiB < 8*uint32(a.Threads) || a.MemoryKiB > 4<<20:
		return fmt.Errorf("%w: argon2id memory must be %d KiB..4 GiB, got %d KiB", ErrInvalid, 8*uint32(a.Threads), a.MemoryKiB)
	}
	return nil
}

// InitOptions choose the key provider of a new vault (Init) or the new key of
// a master-key rotation (RotateMaster).
type InitOptions struct {
	// Provider is the key provider; "" means ProviderFile.
	Provider ProviderKind
	// Passphrase for ProviderPassphrase. The caller owns and wipes it.
	Passphrase []byte
	// EnvVar names the environment variable of ProviderEnv.
	EnvVar string
	// Lookup reads EnvVar; nil means os.LookupEnv.
	Lookup func(string) (string, bool)
	// Argon sets the Argon2id cost; nil means DefaultArgonParams().
	Argon *ArgonParams
	// CrashPoint, if set, is called at every write step (tests only).
	CrashPoint func(string)
}

// Options configure an opened vault.
type Options struct {
	// CrashPoint, if set, is called at every write step with the step's name
	// (e.g. "secrets-create:after-rename", "rotate-master:after-rewrap:3").
	// Test builds use it to simulate a kill -9 at that point.
	CrashPoint func(string)
	// Now is the clock for record timestamps; nil means time.Now.
	Now func() time.Time
}

// KeySource is what the caller has to unlock a vault. The file provider reads
// Paths.KeyFile itself and needs nothing here.
type KeySource struct {
	// Passphrase for ProviderPassphrase. The caller owns and wipes it.
	Passphrase []byte
	// Lookup reads environment variables for ProviderEnv; nil means
	// os.LookupEnv.
	Lookup func(string) (string, bool)
}

// vaultMeta is vault.json. It never contains the KEK: only how to obtain it
// (provider, KDF parameters, env variable name) and public values to
// recognise it (kekId, check).
type vaultMeta struct {
	Format    string       `json:"format"`
	Version   int          `json:"version"`
	Provider  ProviderKind `json:"provider"`
	EnvVar    string       `json:"envVar,omitempty"`
	KDF       *kdfParams   `json:"kdf,omitempty"`
	KEKID     string       `json:"kekId"`
	Check     string       `json:"check"`
	CreatedAt time.Time    `json:"createdAt"`
	// Pending describes the new key while rotate-master re-wraps records.
	Pending *pendingKey `json:"pending,omitempty"`
	// Previous names the old key after rotate-master switched keys and
	// before it dropped the old wraps.
	Previous *previousKey `json:"previous,omitempty"`
}

// kdfParams are the passphrase provider's Argon2id salt and costs.
type kdfParams struct {
	Alg       string `json:"alg"` // "argon2id"
	Salt      []byte `json:"salt"`
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memoryKiB"`
	Threads   uint8  `json:"threads"`
}

// pendingKey identifies the key a master-key rotation is moving to.
type pendingKey struct {
	KEKID     string     `json:"kekId"`
	Check     string     `json:"check"`
	EnvVar    string     `json:"envVar,omitempty"`
	KDF       *kdfParams `json:"kdf,omitempty"`
	StartedAt time.Time  `json:"startedAt"`
}

// previousKey identifies the key a finished-but-not-cleaned rotation left.
type previousKey struct {
	KEKID string `json:"kekId"`
}

var (
	kekIDRe  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^kek_[0-9a-f]{32}$`) })
	envVarRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`) })
)

func (p *kdfParams) argon() ArgonParams {
	return ArgonParams{Time: p.Time, MemoryKiB: p.MemoryKiB, Threads: p.Threads}
}

func (p *kdfParams) validate() error {
	if p.Alg != "argon2id" {
		return fmt.Errorf("%w: unknown kdf %q", ErrInvalid, p.Alg)
	}
	if len(p.Salt) < 16 || len(p.Salt) > 64 {
		return fmt.Errorf("%w: kdf salt must be 16..64 bytes", ErrInvalid)
	}
	return p.argon().validate()
}

func validCheck(s string) bool {
	b, err := base64.StdEncoding.DecodeString(s)
	return err == nil && len(b) == 32
}

// validate checks a parsed vault.json.
func (m *vaultMeta) validate() error {
	if m.Format != metaFormat {
		return fmt.Errorf("%w: not an aivault vault.json (format %q)", ErrInvalid, m.Format)
	}
	if m.Version != metaVersion {
		return fmt.Errorf("%w: vault.json version %d is not supported (this aivault reads version %d)", ErrInvalid, m.Version, metaVersion)
	}
	if !kekIDRe().MatchString(m.KEKID) || !validCheck(m.Check) {
		return fmt.Errorf("%w: vault.json has a malformed key id or check value", ErrInvalid)
	}
	switch m.Provider {
	case ProviderFile:
	case ProviderPassphrase:
		if m.KDF == nil {
			return fmt.Errorf("%w: vault.json: passphrase provider without kdf parameters", ErrInvalid)
		}
		if err := m.KDF.validate(); err != nil {
			return fmt.Errorf("vault.json: %w", err)
		}
	case ProviderEnv:
		if !envVarRe().MatchString(m.EnvVar) {
			return fmt.Errorf("%w: vault.json: bad environment variable name", ErrInvalid)
		}
	default:
		return fmt.Errorf("%w: vault.json: unknown key provider %q", ErrInvalid, m.Provider)
	}
	if p := m.Pending; p != nil {
		if !kekIDRe().MatchString(p.KEKID) || !validCheck(p.Check) {
			return fmt.Errorf("%w: vault.json: malformed pending key", ErrInvalid)
		}
		if p.KDF != nil {
			if err := p.KDF.validate(); err != nil {
				return fmt.Errorf("vault.json pending key: %w", err)
			}
		}
		if p.EnvVar != "" && !envVarRe().MatchString(p.EnvVar) {
			return fmt.Errorf("%w: vault.json: bad pending environment variable name", ErrInvalid)
		}
	}
	if m.Previous != nil && !kekIDRe().MatchString(m.Previous.KEKID) {
		return fmt.Errorf("%w: vault.json: malformed previous key id", ErrInvalid)
	}
	if m.Pending != nil && m.Previous != nil {
		return fmt.Errorf("%w: vault.json: both a pending and a previous key", ErrInvalid)
	}
	return nil
}

// decodeStrict decodes exactly one JSON value with no unknown fields.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after JSON value")
	}
	return nil
}

// marshalFile encodes v as indented JSON with a final newline.
func marshalFile(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Vault is an opened vault directory. Opening needs no key; operations that
// decrypt or write key-bound data take a *Key from Unlock.
//
// A *Vault is safe for concurrent use. Mutating methods (CreateSecret,
// UpdateSecret, RotateSecret, DeleteSecret, RotateMaster, SaveState) hold
// the vault lock (flock on D/.lock) themselves, so writers in different
// processes serialise. See Lock for multi-step operations.
type Vault struct {
	paths Paths
	opts  Options

	opMu sync.Mutex // serialises this value's mutating methods

	lockMu    sync.Mutex // guards lockDepth, lockFile
	lockDepth int
	lockFile  *os.File

	metaMu   sync.Mutex // guards meta, recovery
	meta     vaultMeta  // last vault.json read
	recovery string     // see LastRecovery

	stateMu  sync.Mutex               // guards verified
	verified map[string]verifiedState // see LoadState

	recMu   sync.Mutex              // guards records
	records map[string]parsedRecord // see loadRecord
}

func (v *Vault) metaPath() string    { return filepath.Join(v.paths.Dir, metaName) }
func (v *Vault) secretsDir() string  { return filepath.Join(v.paths.Dir, secretsName) }
func (v *Vault) nextKeyPath() string { return v.paths.KeyFile + nextKeySuffix }

func (v *Vault) now() time.Time {
	if v.opts.Now != nil {
		return v.opts.Now().UTC()
	}
	return time.Now().UTC()
}

// crash calls the CrashPoint hook, if any.
func (v *Vault) crash(name string) {
	if v.opts.CrashPoint != nil {
		v.opts.CrashPoint(name)
	}
}

// Paths returns the vault's paths.
func (v *Vault) Paths() Paths { return v.paths }

// Provider returns the vault's key provider.
func (v *Vault) Provider() ProviderKind {
	v.metaMu.Lock()
	defer v.metaMu.Unlock()
	return v.meta.Provider
}

// EnvVar returns the environment variable of an env-provider vault ("" for
// other providers).
func (v *Vault) EnvVar() string {
	v.metaMu.Lock()
	defer v.metaMu.Unlock()
	return v.meta.EnvVar
}

// KeyID returns the public id of the vault's current key (as of the last
// read of vault.json).
func (v *Vault) KeyID() string {
	v.metaMu.Lock()
	defer v.metaMu.Unlock()
	return v.meta.KEKID
}

// readMeta reads and validates vault.json and refreshes the cached copy.
func (v *Vault) readMeta() (*vaultMeta, error) {
	m, err := readMetaFile(v.metaPath())
	if err != nil {
		return nil, err
	}
	v.metaMu.Lock()
	v.meta = *m
	v.metaMu.Unlock()
	return m, nil
}

func readMetaFile(path string) (*vaultMeta, error) {
	data, err := readFileLimited(path, maxMetaSize)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist (run `aivault init`)", ErrNoVault, path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading vault metadata: %w", err)
	}
	m, err := parseMeta(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// parseMeta decodes and validates vault.json. It never panics on any input
// (FuzzParseMeta).
func parseMeta(data []byte) (*vaultMeta, error) {
	if len(data) > maxMetaSize {
		return nil, fmt.Errorf("%w: vault.json is too large", ErrInvalid)
	}
	var m vaultMeta
	if err := decodeStrict(data, &m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// writeMeta atomically replaces vault.json (under the lock).
func (v *Vault) writeMeta(m *vaultMeta, step string) error {
	data, err := marshalFile(m)
	if err != nil {
		return fmt.Errorf("encoding vault metadata: %w", err)
	}
	if err := writeAtomic(v.metaPath(), data, 0o600, v.opts.CrashPoint, step); err != nil {
		return err
	}
	v.metaMu.Lock()
	v.meta = *m
	v.metaMu.Unlock()
	return nil
}

// Exists reports whether p.Dir holds an initialised vault (a vault.json).
func Exists(p Paths) (bool, error) {
	_, err := os.Lstat(filepath.Join(p.Dir, metaName))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("checking for a vault in %s: %w", p.Dir, err)
	}
}

// Open opens an initialised vault without unlocking it. It returns ErrNoVault
// if p.Dir has no vault. An interrupted master-key rotation is finished or
// rolled back later, by Unlock, once the key is available.
func Open(p Paths, o Options) (*Vault, error) {
	if p.Dir == "" {
		return nil, fmt.Errorf("%w: empty vault directory", ErrInvalid)
	}
	v := &Vault{paths: p, opts: o}
	if _, err := v.readMeta(); err != nil {
		return nil, err
	}
	return v, nil
}

// Init creates a new vault with the chosen provider: D (0700), D/secrets,
// the key (file provider: a random KEK in p.KeyFile, unless that file already
// holds one) and finally vault.json, whose presence marks the vault as
// initialised. It refuses an existing vault with ErrVaultExists.
func Init(p Paths, o InitOptions) (*Vault, error) {
	v, k, err := InitAndUnlock(p, o)
	if err != nil {
		return nil, err
	}
	k.Destroy()
	return v, nil
}

// InitAndUnlock is Init that also returns the new vault's key, sparing a
// second Argon2id run for passphrase vaults. The caller destroys the key.
func InitAndUnlock(p Paths, o InitOptions) (*Vault, *Key, error) {
	v, k, created, err := initVault(p, o, false)
	if err == nil && !created {
		k.Destroy()
		return nil, nil, fmt.Errorf("%w: %s", ErrVaultExists, p.Dir)
	}
	return v, k, err
}

// OpenOrInitFile opens the vault at p, creating it with the file provider if
// it does not exist yet. Concurrent first runs agree on one vault and one key
// (the creation happens under the vault lock and the key-file lock, and the
// key file is published with link(2), which never replaces).
func OpenOrInitFile(p Paths, o Options) (v *Vault, created bool, err error) {
	ok, err := Exists(p)
	if err != nil {
		return nil, false, err
	}
	if ok {
		v, err = Open(p, o)
		return v, false, err
	}
	v, k, created, err := initVault(p, InitOptions{Provider: ProviderFile, CrashPoint: o.CrashPoint}, true)
	if err != nil {
		return nil, false, err
	}
	k.Destroy()
	v.opts = o
	return v, created, nil
}

// initVault creates the vault. With openExisting, finding a vault under the
// lock is not an error: it is opened (created=false, k=nil).
func initVault(p Paths, o InitOptions, openExisting bool) (v *Vault, k *Key, created bool, err error) {
	if p.Dir == "" {
		return nil, nil, false, fmt.Errorf("%w: empty vault directory", ErrInvalid)
	}
	prov := o.Provider
	if prov == "" {
		prov = ProviderFile
	}
	if err := validateKeyChoice(prov, p, o); err != nil {
		return nil, nil, false, err
	}
	if err := CheckMemlock(); err != nil {
		return nil, nil, false, err
	}
	if err := mkdirPrivate(p.Dir); err != nil {
		return nil, nil, false, err
	}
	v = &Vault{paths: p, opts: Options{CrashPoint: o.CrashPoint}}
	unlock, err := v.Lock()
	if err != nil {
		return nil, nil, false, err
	}
	defer unlock()

	exists, err := Exists(p)
	if err != nil {
		return nil, nil, false, err
	}
	if exists {
		if !openExisting {
			return nil, nil, false, fmt.Errorf("%w: %s", ErrVaultExists, p.Dir)
		}
		if _, err := v.readMeta(); err != nil {
			return nil, nil, false, err
		}
		return v, nil, false, nil
	}

	m := &vaultMeta{Format: metaFormat, Version: metaVersion, Provider: prov, CreatedAt: v.now()}
	switch prov {
	case ProviderFile:
		k, err = obtainFileKey(p.KeyFile, true)
	case ProviderPassphrase:
		m.KDF, err = newKDF(o.Argon)
		if err == nil {
			k, err = passphraseKey(o.Passphrase, m.KDF)
		}
	case ProviderEnv:
		m.EnvVar = o.EnvVar
		k, err = envKey(o.EnvVar, o.Lookup)
	}
	if err != nil {
		return nil, nil, false, err
	}
	v.crash("init:after-key")
	m.KEKID, m.Check = k.ID(), k.checkB64()
	if err := mkdirPrivate(v.secretsDir()); err != nil {
		k.Destroy()
		return nil, nil, false, err
	}
	if err := v.writeMeta(m, "init"); err != nil {
		k.Destroy()
		return nil, nil, false, err
	}
	v.crash("init:after-meta")
	return v, k, true, nil
}

// validateKeyChoice checks the options needed to obtain a key.
func validateKeyChoice(prov ProviderKind, p Paths, o InitOptions) error {
	switch prov {
	case ProviderFile:
		if p.KeyFile == "" {
			return fmt.Errorf("%w: the file key provider needs a key file path", ErrInvalid)
		}
	case ProviderPassphrase:
		if len(o.Passphrase) == 0 {
			return fmt.Errorf("%w: the passphrase provider needs a non-empty passphrase", ErrInvalid)
		}
		if o.Argon != nil {
			if err := o.Argon.validate(); err != nil {
				return err
			}
		}
	case ProviderEnv:
		if !envVarRe().MatchString(o.EnvVar) {
			return fmt.Errorf("%w: the env key provider needs a valid environment variable name, got %q", ErrInvalid, o.EnvVar)
		}
	default:
		return fmt.Errorf("%w: unknown key provider %q (want file, passphrase or env)", ErrInvalid, prov)
	}
	return nil
}

// Lock takes the vault's writer lock (flock on D/.lock), waiting for other
// processes, and returns the function that releases it. The lock belongs to
// this *Vault value and is re-entrant: while it is held, this value's own
// mutating methods do not wait for it again, so a caller can group several
// of them (e.g. CreateSecret then SaveState) into one step that no other
// process interleaves with. Other goroutines using the same value are not
// excluded by Lock (each single method call is still serialised); share a
// locked Vault between goroutines only if that is what you want.
// The release function is idempotent.
func (v *Vault) Lock() (unlock func(), err error) {
	v.lockMu.Lock()
	defer v.lockMu.Unlock()
	if v.lockDepth == 0 {
		f, err := flockFile(filepath.Join(v.paths.Dir, lockName))
		if err != nil {
			return nil, err
		}
		v.lockFile = f
	}
	v.lockDepth++
	var once sync.Once
	return func() {
		once.Do(func() {
			v.lockMu.Lock()
			defer v.lockMu.Unlock()
			v.lockDepth--
			if v.lockDepth == 0 {
				v.lockFile.Close()
				v.lockFile = nil
			}
		})
	}, nil
}

// mutate runs fn with this value's operations serialised and the vault lock
// held.
func (v *Vault) mutate(fn func() error) error {
	v.opMu.Lock()
	defer v.opMu.Unlock()
	unlock, err := v.Lock()
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}
