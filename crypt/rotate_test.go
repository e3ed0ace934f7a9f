package crypt

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"testing"
)

func TestRotateMaster(t *testing.T) {
	for _, rp := range rotProviders() {
		t.Run(rp.name, func(t *testing.T) {
			p, ids, old, oldSrc, newSrc, to, newRaw := rotFixture(t, rp)
			defer old.Destroy()
			v, err := Open(p, Options{})
			if err != nil {
				t.Fatal(err)
			}
			nk, err := v.RotateMaster(old, to, newRaw)
			if err != nil {
				t.Fatal(err)
			}
			defer nk.Destroy()
			if nk.ID() == old.ID() || v.KeyID() != nk.ID() {
				t.Fatalf("key ids: old %s new %s vault %s", old.ID(), nk.ID(), v.KeyID())
			}
			if newRaw != nil && !isZero(newRaw) {
				t.Fatal("RotateMaster did not wipe newRaw")
			}
			for i, id := range ids {
				mustOpen(t, v, nk, id, fmt.Sprintf("rv%d", i))
				if _, err := v.OpenSecret(old, id); !errors.Is(err, ErrWrongKey) {
					t.Fatalf("old key still opens %s: %v", id, err)
				}
			}
			mustVerify(t, v, nk)
			// A process still holding the old key is told to unlock again.
			if _, err := v.CreateSecret(old, SecretMeta{Name: "late"}, []byte("x")); !errors.Is(err, ErrWrongKey) {
				t.Fatalf("create with the old key: %v", err)
			}
			var st map[string]string
			if err := v.LoadState(old, "broker", &st); !errors.Is(err, ErrWrongKey) {
				t.Fatalf("LoadState with the old key: %v", err)
			}
			if err := v.LoadState(nk, "broker", &st); err != nil || st["who"] != "broker" {
				t.Fatalf("LoadState with the new key: %v", err)
			}
			// A fresh process unlocks with the new key only.
			v2, _ := Open(p, Options{})
			if rp.name != "file" { // the file provider reads the (replaced) key file
				if _, err := v2.Unlock(oldSrc); !errors.Is(err, ErrWrongKey) {
					t.Fatalf("Unlock with the old key source: %v", err)
				}
			}
			k2, err := v2.Unlock(newSrc)
			if err != nil {
				t.Fatal(err)
			}
			if k2.ID() != nk.ID() {
				t.Fatal("unlocked a different key")
			}
			k2.Destroy()
			if _, err := os.Stat(p.KeyFile + ".next"); !errors.Is(err, os.ErrNotExist) {
				t.Fatal("kek.key.next left behind")
			}
		})
	}
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func TestRotateMasterRefusals(t *testing.T) {
	v, k := newFileVault(t, Options{})
	mustCreate(t, v, k, SecretMeta{Name: "a"}, "va")
	tests := []struct {
		name string
		to   InitOptions
		raw  func() []byte
		want error
	}{
		{"other provider", InitOptions{Provider: ProviderPassphrase, Passphrase: []byte("x")}, nil, ErrInvalid},
		{"short raw", InitOptions{}, func() []byte { return make([]byte, 16) }, ErrInvalid},
		{"same key", InitOptions{}, func() []byte {
			f, _ := os.ReadFile(v.Paths().KeyFile)
			raw, _ := parseKeyText(f)
			return raw
		}, ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var raw []byte
			if tc.raw != nil {
				raw = tc.raw()
			}
			if _, err := v.RotateMaster(k, tc.to, raw); !errors.Is(err, tc.want) {
				t.Fatalf("RotateMaster: %v, want %v", err, tc.want)
			}
			mustVerify(t, v, k)
		})
	}
	other, _ := KeyFromBytes(make([]byte, 32))
	defer other.Destroy()
	if _, err := v.RotateMaster(other, InitOptions{}, nil); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("rotate with a foreign key: %v", err)
	}
}

func TestRotateMasterEnvRename(t *testing.T) {
	p := testPaths(t)
	oldRaw, newRaw := make([]byte, 32), make([]byte, 32)
	rand.Read(oldRaw)
	rand.Read(newRaw)
	env := map[string]string{"OLD_KEK": base64.StdEncoding.EncodeToString(oldRaw), "NEW_KEK": base64.StdEncoding.EncodeToString(newRaw)}
	lookup := func(k string) (string, bool) { s, ok := env[k]; return s, ok }
	v, k, err := InitAndUnlock(p, InitOptions{Provider: ProviderEnv, EnvVar: "OLD_KEK", Lookup: lookup})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Destroy()
	m := mustCreate(t, v, k, SecretMeta{Name: "a"}, "va")
	nk, err := v.RotateMaster(k, InitOptions{EnvVar: "NEW_KEK", Lookup: lookup}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nk.Destroy()
	if v.EnvVar() != "NEW_KEK" {
		t.Fatalf("env var %q", v.EnvVar())
	}
	v2, _ := Open(p, Options{})
	k2, err := v2.Unlock(KeySource{Lookup: lookup})
	if err != nil {
		t.Fatal(err)
	}
	defer k2.Destroy()
	mustOpen(t, v2, k2, m.ID, "va")
}

func TestRotateMasterAbortsOnTamperedState(t *testing.T) {
	v, k := newFileVault(t, Options{})
	m := mustCreate(t, v, k, SecretMeta{Name: "a"}, "va")
	if err := v.SaveState(k, "broker", 1); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(v.statePath("broker"), []byte(`{"format":"aivault-state","version":1,"name":"broker","macs":[{"kekId":"`+k.ID()+`","mac":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}],"body":2}`), 0o600)
	if _, err := v.RotateMaster(k, InitOptions{}, nil); !errors.Is(err, ErrStateTampered) {
		t.Fatalf("RotateMaster over a tampered state: %v", err)
	}
	// Rolled back: still the old key, one wrap, no pending.
	mustOpen(t, v, k, m.ID, "va")
	r, _ := v.loadRecord(m.ID)
	meta, _ := v.readMeta()
	if len(r.Wraps) != 1 || meta.Pending != nil || meta.KEKID != k.ID() {
		t.Fatalf("not rolled back: wraps=%d pending=%v", len(r.Wraps), meta.Pending)
	}
	if _, err := os.Stat(v.nextKeyPath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("kek.key.next left behind")
	}
}
