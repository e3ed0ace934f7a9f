package crypt

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// crashSignal is the panic value of a simulated crash.
type crashSignal string

// crashAt returns a CrashPoint hook that "crashes" (panics with crashSignal)
// at the n-th time (1-based) the point named target is reached, and appends
// every point reached to seen (if not nil).
func crashAt(target string, n int, seen *[]string) func(string) {
	count := 0
	return func(name string) {
		if seen != nil {
			*seen = append(*seen, name)
		}
		if name == target {
			count++
			if count == n {
				panic(crashSignal(name))
			}
		}
	}
}

// runCrashing runs fn and reports whether it stopped at a simulated crash.
// Like a kill -9, the crash abandons the operation midway; the kernel's
// release of the flock is mirrored by the deferred unlock.
func runCrashing(fn func()) (crashed bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(crashSignal); !ok {
				panic(r)
			}
			crashed = true
		}
	}()
	fn()
	return false
}

// crashPoint is one occurrence of a named crash point.
type crashPoint struct {
	name string
	n    int
}

func (c crashPoint) String() string { return fmt.Sprintf("%s#%d", c.name, c.n) }

// occurrences turns a recorded sequence of point names into (name, n) pairs.
func occurrences(seen []string) []crashPoint {
	count := map[string]int{}
	var out []crashPoint
	for _, s := range seen {
		count[s]++
		out = append(out, crashPoint{s, count[s]})
	}
	return out
}

// fixture is a populated vault for crash tests.
type fixture struct {
	p      Paths
	values map[string][]string // id → acceptable values after a crash
	ids    []string
}

// newFixture creates a file vault with three secrets and a state file.
func newFixture(t *testing.T) (*fixture, *Key) {
	t.Helper()
	p := testPaths(t)
	v, k, err := InitAndUnlock(p, InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{p: p, values: map[string][]string{}}
	for i := range 3 {
		name := fmt.Sprintf("s%d", i)
		m := mustCreate(t, v, k, SecretMeta{Name: name}, "value-"+name)
		f.values[m.ID] = []string{"value-" + name}
		f.ids = append(f.ids, m.ID)
	}
	if err := v.SaveState(k, "broker", map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	return f, k
}

// check reopens the vault as a restarted process would and proves it is
// consistent: unlockable, every record opens with an accepted value,
// Verify is clean, the state loads, and it is writable again.
func (f *fixture) check(t *testing.T, extra map[string][]string, gone map[string]bool) {
	t.Helper()
	v, err := Open(f.p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	k, err := v.Unlock(KeySource{})
	if err != nil {
		t.Fatalf("Unlock after crash: %v", err)
	}
	defer k.Destroy()
	list, err := v.ListSecrets()
	if err != nil {
		t.Fatalf("ListSecrets after crash: %v", err)
	}
	present := map[string]bool{}
	for _, m := range list {
		present[m.ID] = true
		accept := append(slices.Clone(f.values[m.ID]), extra[m.ID]...)
		if extra["*"] != nil && len(accept) == 0 {
			accept = extra["*"]
		}
		got, err := v.OpenSecret(k, m.ID)
		if err != nil {
			t.Fatalf("OpenSecret(%s) after crash: %v", m.ID, err)
		}
		if !slices.Contains(accept, string(got)) {
			t.Fatalf("secret %s has a value that is neither the old nor the new one", m.ID)
		}
		clear(got)
	}
	for _, id := range f.ids {
		if !present[id] && !gone[id] {
			t.Fatalf("secret %s was lost", id)
		}
	}
	mustVerify(t, v, k)
	var st map[string]int
	if err := v.LoadState(k, "broker", &st); err != nil {
		t.Fatalf("LoadState after crash: %v", err)
	}
	if _, err := v.CreateSecret(k, SecretMeta{Name: "after_crash"}, []byte("x")); err != nil {
		t.Fatalf("vault not writable after crash: %v", err)
	}
	ents, _ := os.ReadDir(filepath.Join(f.p.Dir, "secrets"))
	for _, e := range ents {
		if isTemp(e.Name()) {
			t.Fatalf("temporary file %s left after the next write", e.Name())
		}
	}
}

func TestCrashSecretOps(t *testing.T) {
	type op struct {
		name  string
		run   func(v *Vault, k *Key, f *fixture)
		extra func(f *fixture) map[string][]string
		gone  func(f *fixture) map[string]bool
	}
	newName := "renamed"
	ops := []op{
		{name: "create", run: func(v *Vault, k *Key, f *fixture) {
			v.CreateSecret(k, SecretMeta{Name: "new"}, []byte("value-new"))
		}, extra: func(*fixture) map[string][]string { return map[string][]string{"*": {"value-new"}} }},
		{name: "rotate", run: func(v *Vault, k *Key, f *fixture) {
			v.RotateSecret(k, f.ids[1], []byte("rotated"))
		}, extra: func(f *fixture) map[string][]string { return map[string][]string{f.ids[1]: {"rotated"}} }},
		{name: "update", run: func(v *Vault, k *Key, f *fixture) {
			v.UpdateSecret(f.ids[0], &newName, []string{"alias"}, false)
		}},
		{name: "delete", run: func(v *Vault, k *Key, f *fixture) {
			v.DeleteSecret(f.ids[2])
		}, gone: func(f *fixture) map[string]bool { return map[string]bool{f.ids[2]: true} }},
		{name: "state", run: func(v *Vault, k *Key, f *fixture) {
			v.SaveState(k, "broker", map[string]int{"n": 2})
		}},
	}
	for _, o := range ops {
		// Record the points this operation passes.
		f, k := newFixture(t)
		var seen []string
		v, err := Open(f.p, Options{CrashPoint: crashAt("", 0, &seen)})
		if err != nil {
			t.Fatal(err)
		}
		o.run(v, k, f)
		if len(seen) < 2 {
			t.Fatalf("%s: only %d crash points: %v", o.name, len(seen), seen)
		}
		for _, cp := range occurrences(seen) {
			t.Run(o.name+"/"+cp.String(), func(t *testing.T) {
				f, k := newFixture(t)
				v, err := Open(f.p, Options{CrashPoint: crashAt(cp.name, cp.n, nil)})
				if err != nil {
					t.Fatal(err)
				}
				if !runCrashing(func() { o.run(v, k, f) }) {
					t.Fatalf("did not crash at %s", cp)
				}
				var extra map[string][]string
				var gone map[string]bool
				if o.extra != nil {
					extra = o.extra(f)
				}
				if o.gone != nil {
					gone = o.gone(f)
				}
				f.check(t, extra, gone)
			})
		}
	}
}

// rotProvider sets up one key provider for the rotation crash tests.
type rotProvider struct {
	name string
	// init returns the init options, the source for the old key, the
	// source for the new key and the arguments for RotateMaster.
	init func() (io InitOptions, oldSrc, newSrc KeySource, to InitOptions, newRaw []byte)
}

func rotProviders() []rotProvider {
	return []rotProvider{
		{"file", func() (InitOptions, KeySource, KeySource, InitOptions, []byte) {
			raw := make([]byte, 32)
			rand.Read(raw)
			return InitOptions{}, KeySource{}, KeySource{}, InitOptions{}, raw
		}},
		{"passphrase", func() (InitOptions, KeySource, KeySource, InitOptions, []byte) {
			return InitOptions{Provider: ProviderPassphrase, Passphrase: []byte("old pass"), Argon: &smallArgon},
				KeySource{Passphrase: []byte("old pass")}, KeySource{Passphrase: []byte("new pass")},
				InitOptions{Passphrase: []byte("new pass")}, nil
		}},
		{"env", func() (InitOptions, KeySource, KeySource, InitOptions, []byte) {
			oldRaw, newRaw := make([]byte, 32), make([]byte, 32)
			rand.Read(oldRaw)
			rand.Read(newRaw)
			oldEnv := map[string]string{"KEK": base64.StdEncoding.EncodeToString(oldRaw)}
			newEnv := map[string]string{"KEK": base64.StdEncoding.EncodeToString(newRaw)}
			lk := func(m map[string]string) func(string) (string, bool) {
				return func(k string) (string, bool) { s, ok := m[k]; return s, ok }
			}
			return InitOptions{Provider: ProviderEnv, EnvVar: "KEK", Lookup: lk(oldEnv)},
				KeySource{Lookup: lk(oldEnv)}, KeySource{Lookup: lk(newEnv)},
				InitOptions{Lookup: lk(newEnv)}, nil
		}},
	}
}

// rotFixture creates a vault for rp with secrets and a state file.
func rotFixture(t *testing.T, rp rotProvider) (p Paths, ids []string, oldKey *Key, oldSrc, newSrc KeySource, to InitOptions, newRaw []byte) {
	t.Helper()
	p = testPaths(t)
	var io InitOptions
	io, oldSrc, newSrc, to, newRaw = rp.init()
	v, k, err := InitAndUnlock(p, io)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		ids = append(ids, mustCreate(t, v, k, SecretMeta{Name: fmt.Sprintf("r%d", i), Scope: "workspace", WorkspaceID: "ws1"}, fmt.Sprintf("rv%d", i)).ID)
	}
	for _, name := range []string{"broker", "rates"} {
		if err := v.SaveState(k, name, map[string]string{"who": name}); err != nil {
			t.Fatal(err)
		}
	}
	return p, ids, k, oldSrc, newSrc, to, newRaw
}

func TestCrashRotateMaster(t *testing.T) {
	for _, rp := range rotProviders() {
		// Record every point a full rotation passes.
		p, _, k, _, _, to, newRaw := rotFixture(t, rp)
		var seen []string
		v, err := Open(p, Options{CrashPoint: crashAt("", 0, &seen)})
		if err != nil {
			t.Fatal(err)
		}
		nk, err := v.RotateMaster(k, to, newRaw)
		if err != nil {
			t.Fatalf("%s: RotateMaster: %v", rp.name, err)
		}
		nk.Destroy()
		for _, want := range []string{"rotate-master:after-pending", "rotate-master:after-rewrap:3", "rotate-master:after-remac:rates", "rotate-master:after-key-switch", "rotate-master:after-prune:3", "rotate-master:after-finish"} {
			if !slices.Contains(seen, want) {
				t.Fatalf("%s: rotation never passed %s (saw %v)", rp.name, want, seen)
			}
		}
		for _, cp := range occurrences(seen) {
			for _, order := range []string{"old-first", "new-first"} {
				t.Run(rp.name+"/"+cp.String()+"/"+order, func(t *testing.T) {
					testRotateCrash(t, rp, cp, order)
				})
			}
		}
	}
}

func testRotateCrash(t *testing.T, rp rotProvider, cp crashPoint, order string) {
	p, ids, oldKey, oldSrc, newSrc, to, newRaw := rotFixture(t, rp)
	defer oldKey.Destroy()
	var newKey *Key
	if newRaw != nil {
		var err error
		if newKey, err = KeyFromBytes(append([]byte(nil), newRaw...)); err != nil {
			t.Fatal(err)
		}
		defer newKey.Destroy()
	}
	v, err := Open(p, Options{CrashPoint: crashAt(cp.name, cp.n, nil)})
	if err != nil {
		t.Fatal(err)
	}
	if !runCrashing(func() { v.RotateMaster(oldKey, to, newRaw) }) {
		t.Fatalf("did not crash at %s", cp)
	}

	// "Restart": a new process opens the vault and unlocks it with whatever
	// key the operator tries first.
	v2, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	srcs := []KeySource{oldSrc, newSrc}
	if order == "new-first" {
		srcs = []KeySource{newSrc, oldSrc}
	}
	var k *Key
	k, err = v2.Unlock(srcs[0])
	if errors.Is(err, ErrWrongKey) {
		k, err = v2.Unlock(srcs[1])
	}
	if err != nil {
		t.Fatalf("vault unusable with both keys after crash at %s: %v", cp, err)
	}
	defer k.Destroy()

	rolledForward := k.ID() != oldKey.ID()
	for i, id := range ids {
		mustOpen(t, v2, k, id, fmt.Sprintf("rv%d", i))
		// Exactly one of old/new opens it.
		_, errOld := v2.OpenSecret(oldKey, id)
		if rolledForward == (errOld == nil) {
			t.Fatalf("secret %s: old key opens=%v after rolling %s", id, errOld == nil, map[bool]string{true: "forward", false: "back"}[rolledForward])
		}
		if newKey != nil {
			_, errNew := v2.OpenSecret(newKey, id)
			if rolledForward != (errNew == nil) {
				t.Fatalf("secret %s: new key opens=%v after rolling forward=%v", id, errNew == nil, rolledForward)
			}
		}
		r, err := v2.loadRecord(id)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Wraps) != 1 || r.Wraps[0].KEKID != k.ID() {
			t.Fatalf("secret %s keeps %d wraps after recovery", id, len(r.Wraps))
		}
	}
	mustVerify(t, v2, k)
	for _, name := range []string{"broker", "rates"} {
		var st map[string]string
		if err := v2.LoadState(k, name, &st); err != nil || st["who"] != name {
			t.Fatalf("LoadState(%s) after recovery: %v", name, err)
		}
	}
	m, err := v2.readMeta()
	if err != nil {
		t.Fatal(err)
	}
	if m.Pending != nil || m.Previous != nil || m.KEKID != k.ID() {
		t.Fatalf("vault.json not clean after recovery: %+v", m)
	}
	if _, err := os.Stat(p.KeyFile + ".next"); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("kek.key.next left behind")
	}
	if rp.name == "file" {
		// The key file holds the key the vault now uses.
		fk, err := readKeyFile(p.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		if fk.ID() != k.ID() {
			t.Fatal("key file and vault.json disagree after recovery")
		}
		fk.Destroy()
	}
	// And it can rotate again.
	var to2 InitOptions
	var raw2 []byte
	switch rp.name {
	case "passphrase":
		to2 = InitOptions{Passphrase: []byte("third pass")}
	case "env":
		raw2 = make([]byte, 32)
		rand.Read(raw2)
	}
	nk, err := v2.RotateMaster(k, to2, raw2)
	if err != nil {
		t.Fatalf("rotating again after recovery: %v", err)
	}
	nk.Destroy()
}

func TestCrashDuringRecovery(t *testing.T) {
	rp := rotProviders()[0]
	p, ids, oldKey, _, _, to, newRaw := rotFixture(t, rp)
	defer oldKey.Destroy()
	v, _ := Open(p, Options{CrashPoint: crashAt("rotate-master:after-rewrap:2", 1, nil)})
	if !runCrashing(func() { v.RotateMaster(oldKey, to, newRaw) }) {
		t.Fatal("no crash")
	}
	// The recovery (a roll-back) crashes too, half-way.
	v2, _ := Open(p, Options{CrashPoint: crashAt("rotate-master-rollback:after-prune:1", 1, nil)})
	if !runCrashing(func() { v2.Unlock(KeySource{}) }) {
		t.Fatal("no crash during recovery")
	}
	v3, _ := Open(p, Options{})
	k, err := v3.Unlock(KeySource{})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Destroy()
	if k.ID() != oldKey.ID() {
		t.Fatal("expected a roll-back to the old key")
	}
	if v3.LastRecovery() == "" {
		t.Fatal("no recovery note")
	}
	for i, id := range ids {
		mustOpen(t, v3, k, id, fmt.Sprintf("rv%d", i))
	}
	mustVerify(t, v3, k)
}
