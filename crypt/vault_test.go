package crypt

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestInitOpenFileProvider(t *testing.T) {
	p := testPaths(t)
	if ok, err := Exists(p); err != nil || ok {
		t.Fatalf("Exists before init = %v, %v", ok, err)
	}
	if _, err := Open(p, Options{}); !errors.Is(err, ErrNoVault) {
		t.Fatalf("Open before init: %v, want ErrNoVault", err)
	}
	v, err := Init(p, InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Provider() != ProviderFile || v.Paths() != p {
		t.Fatalf("provider %q paths %+v", v.Provider(), v.Paths())
	}
	if ok, err := Exists(p); err != nil || !ok {
		t.Fatalf("Exists after init = %v, %v", ok, err)
	}
	if _, err := Init(p, InitOptions{}); !errors.Is(err, ErrVaultExists) {
		t.Fatalf("second Init: %v, want ErrVaultExists", err)
	}
	// Modes, whatever the umask.
	for path, want := range map[string]os.FileMode{
		p.Dir: 0o700, filepath.Join(p.Dir, "secrets"): 0o700, filepath.Join(p.Dir, "vault.json"): 0o600,
		filepath.Dir(p.KeyFile): 0o700, p.KeyFile: 0o600,
	} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != want {
			t.Errorf("%s mode %o, want %o", path, st.Mode().Perm(), want)
		}
	}
	// Key file: base64 of 32 bytes and a newline.
	text, err := os.ReadFile(p.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(string(text), "\n"))
	if err != nil || len(raw) != 32 || !bytes.HasSuffix(text, []byte("\n")) {
		t.Fatalf("key file is not base64(32 bytes)+newline")
	}
	// vault.json never holds the key.
	meta, err := os.ReadFile(filepath.Join(p.Dir, "vault.json"))
	if err != nil {
		t.Fatal(err)
	}
	noLeak(t, string(meta), strings.TrimSpace(string(text)), base64.RawStdEncoding.EncodeToString(raw))

	v2, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	k, err := v2.Unlock(KeySource{})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Destroy()
	if k.ID() != v2.KeyID() {
		t.Fatalf("key id %s, vault says %s", k.ID(), v2.KeyID())
	}
	k2, err := KeyFromBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	if k2.ID() != k.ID() {
		t.Fatal("KeyFromBytes of the key file gives another id")
	}
	if !bytes.Equal(raw, make([]byte, 32)) {
		t.Fatal("KeyFromBytes did not wipe its input")
	}
}

func TestUnlockFileProviderErrors(t *testing.T) {
	p := testPaths(t)
	if _, err := Init(p, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	v, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(p.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	other := make([]byte, 32)
	rand.Read(other)
	tests := []struct {
		name  string
		setup func()
		want  error
	}{
		{"missing", func() { os.Remove(p.KeyFile) }, ErrVaultLocked},
		{"group readable", func() { os.WriteFile(p.KeyFile, good, 0o640); os.Chmod(p.KeyFile, 0o640) }, ErrVaultLocked},
		{"garbage", func() { os.WriteFile(p.KeyFile, []byte("not a key\n"), 0o600) }, ErrWrongKey},
		{"short key", func() { os.WriteFile(p.KeyFile, []byte(base64.StdEncoding.EncodeToString(other[:16])), 0o600) }, ErrWrongKey},
		{"other key", func() { os.WriteFile(p.KeyFile, []byte(base64.StdEncoding.EncodeToString(other)+"\n"), 0o600) }, ErrWrongKey},
		{"symlink", func() {
			alt := p.KeyFile + ".alt"
			os.WriteFile(alt, good, 0o600)
			os.Symlink(alt, p.KeyFile)
		}, ErrVaultLocked},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(p.KeyFile)
			tc.setup()
			k, err := v.Unlock(KeySource{})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Unlock: %v, want %v", err, tc.want)
			}
			if k != nil {
				t.Fatal("got a key with an error")
			}
			noLeak(t, err.Error(), strings.TrimSpace(string(good)))
		})
	}
	os.Remove(p.KeyFile)
	os.WriteFile(p.KeyFile, good, 0o600)
	if _, err := v.Unlock(KeySource{}); err != nil {
		t.Fatalf("restored key: %v", err)
	}
}

func TestPassphraseProvider(t *testing.T) {
	p := testPaths(t)
	pass := []byte("correct horse battery staple")
	v, k, err := InitAndUnlock(p, InitOptions{Provider: ProviderPassphrase, Passphrase: pass, Argon: &smallArgon})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Destroy()
	if _, err := os.Stat(p.KeyFile); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a passphrase vault wrote a key file")
	}
	mustCreate(t, v, k, SecretMeta{Name: "a"}, "va")

	v2, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		pass []byte
		want error
	}{
		{"right", pass, nil},
		{"wrong", []byte("Correct horse battery staple"), ErrWrongKey},
		{"empty", nil, ErrVaultLocked},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k2, err := v2.Unlock(KeySource{Passphrase: tc.pass})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Unlock: %v, want %v", err, tc.want)
			}
			if err == nil {
				defer k2.Destroy()
				if k2.ID() != k.ID() {
					t.Fatal("different key id")
				}
			} else {
				noLeak(t, err.Error(), string(pass))
			}
		})
	}
	// The KDF parameters are stored; the check value is not the key id.
	var m vaultMeta
	data, _ := os.ReadFile(filepath.Join(p.Dir, "vault.json"))
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if m.KDF == nil || m.KDF.Alg != "argon2id" || m.KDF.Time != smallArgon.Time || m.KDF.MemoryKiB != smallArgon.MemoryKiB || len(m.KDF.Salt) != 16 {
		t.Fatalf("kdf params %+v", m.KDF)
	}
	noLeak(t, string(data), string(pass))
}

func TestDefaultArgonParams(t *testing.T) {
	a := DefaultArgonParams()
	if a.Time < 2 || a.MemoryKiB < 64<<10 || a.Threads < 1 || a.Threads > 4 {
		t.Fatalf("defaults %+v are weaker than t=2, 64 MiB, p=1..4", a)
	}
	if err := a.validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []ArgonParams{{0, 64, 1}, {1, 64, 0}, {1, 64, 5}, {1, 4, 1}, {65, 64, 1}} {
		if err := bad.validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", bad, err)
		}
	}
}

func TestEnvProvider(t *testing.T) {
	p := testPaths(t)
	raw := make([]byte, 32)
	rand.Read(raw)
	enc := base64.StdEncoding.EncodeToString(raw)
	env := map[string]string{"AIVAULT_KEK": enc}
	lookup := func(k string) (string, bool) { s, ok := env[k]; return s, ok }
	v, err := Init(p, InitOptions{Provider: ProviderEnv, EnvVar: "AIVAULT_KEK", Lookup: lookup})
	if err != nil {
		t.Fatal(err)
	}
	if v.EnvVar() != "AIVAULT_KEK" || v.Provider() != ProviderEnv {
		t.Fatalf("env var %q provider %q", v.EnvVar(), v.Provider())
	}
	other := make([]byte, 32)
	rand.Read(other)
	tests := []struct {
		name string
		val  *string
		want error
		msg  string
	}{
		{"padded", &enc, nil, ""},
		{"unpadded url", ptr(base64.RawURLEncoding.EncodeToString(raw)), nil, ""},
		{"with newline", ptr(enc + "\n"), nil, ""},
		{"missing", nil, ErrVaultLocked, "AIVAULT_KEK"},
		{"empty", ptr(""), ErrVaultLocked, "AIVAULT_KEK"},
		{"garbage", ptr("!!!"), ErrWrongKey, "AIVAULT_KEK"},
		{"other key", ptr(base64.StdEncoding.EncodeToString(other)), ErrWrongKey, "AIVAULT_KEK"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			delete(env, "AIVAULT_KEK")
			if tc.val != nil {
				env["AIVAULT_KEK"] = *tc.val
			}
			k, err := v.Unlock(KeySource{Lookup: lookup})
			if !errors.Is(err, tc.want) {
				t.Fatalf("Unlock: %v, want %v", err, tc.want)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("error %q does not name %s", err, tc.msg)
				}
				noLeak(t, err.Error(), enc)
				return
			}
			k.Destroy()
		})
	}
	// The key was never written anywhere under the vault.
	filepath.WalkDir(filepath.Dir(p.Dir), func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := os.ReadFile(path)
			noLeak(t, string(data), enc, base64.RawStdEncoding.EncodeToString(raw))
		}
		return nil
	})
}

func ptr(s string) *string { return &s }

func TestInitValidation(t *testing.T) {
	p := testPaths(t)
	tests := []struct {
		name string
		p    Paths
		o    InitOptions
	}{
		{"no dir", Paths{KeyFile: p.KeyFile}, InitOptions{}},
		{"no key file", Paths{Dir: p.Dir}, InitOptions{}},
		{"unknown provider", p, InitOptions{Provider: "hsm"}},
		{"empty passphrase", p, InitOptions{Provider: ProviderPassphrase}},
		{"weak argon", p, InitOptions{Provider: ProviderPassphrase, Passphrase: []byte("x"), Argon: &ArgonParams{Time: 0, MemoryKiB: 64, Threads: 1}}},
		{"bad env name", p, InitOptions{Provider: ProviderEnv, EnvVar: "1BAD"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Init(tc.p, tc.o); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Init: %v, want ErrInvalid", err)
			}
		})
	}
	if ok, _ := Exists(p); ok {
		t.Fatal("a refused Init left a vault")
	}
}

func TestOpenOrInitFileConcurrent(t *testing.T) {
	p := testPaths(t)
	const n = 16
	var wg sync.WaitGroup
	ids := make([]string, n)
	created := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			v, c, err := OpenOrInitFile(p, Options{})
			if err != nil {
				errs[i] = err
				return
			}
			created[i] = c
			k, err := v.Unlock(KeySource{})
			if err != nil {
				errs[i] = err
				return
			}
			ids[i] = k.ID()
			k.Destroy()
		})
	}
	wg.Wait()
	nCreated := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] {
			t.Fatal("two different keys were created")
		}
		if created[i] {
			nCreated++
		}
	}
	if nCreated != 1 {
		t.Fatalf("%d callers say they created the vault, want 1", nCreated)
	}
}

func TestInitReusesExistingKeyFile(t *testing.T) {
	// A crash after the key file was written but before vault.json: the
	// next init must use that key, never replace it.
	p := testPaths(t)
	crashed := runCrashing(func() {
		Init(p, InitOptions{CrashPoint: crashAt("init:after-key", 1, nil)})
	})
	if !crashed {
		t.Fatal("did not reach init:after-key")
	}
	if ok, _ := Exists(p); ok {
		t.Fatal("vault.json exists after a crash before it was written")
	}
	before, err := os.ReadFile(p.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	v, created, err := OpenOrInitFile(p, Options{})
	if err != nil || !created {
		t.Fatalf("OpenOrInitFile: created=%v err=%v", created, err)
	}
	after, _ := os.ReadFile(p.KeyFile)
	if !bytes.Equal(before, after) {
		t.Fatal("the key file was replaced")
	}
	k, err := v.Unlock(KeySource{})
	if err != nil {
		t.Fatal(err)
	}
	k.Destroy()
}

func TestMemlockDecision(t *testing.T) {
	tests := []struct {
		cur       uint64
		unlimited bool
		cap       bool
		ok        bool
	}{
		{cur: 8 << 20, ok: true},
		{cur: MinMemlock, ok: true},
		{cur: MinMemlock - 1},
		{cur: 0},
		{cur: 0, unlimited: true, ok: true},
		{cur: 0, cap: true, ok: true},
	}
	for _, tc := range tests {
		err := checkMemlock(tc.cur, tc.unlimited, tc.cap)
		if (err == nil) != tc.ok {
			t.Errorf("checkMemlock(%d, %v, %v) = %v", tc.cur, tc.unlimited, tc.cap, err)
		}
		if err != nil {
			if !errors.Is(err, ErrMemlock) || !strings.Contains(err.Error(), "ulimit -l") || !strings.Contains(err.Error(), "LimitMEMLOCK=") {
				t.Errorf("unhelpful error: %v", err)
			}
		}
	}
	if err := CheckMemlock(); err != nil {
		t.Fatalf("this machine's memlock limit is too low for the vault's tests: %v", err)
	}
}
