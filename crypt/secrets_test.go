package crypt

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSecretLifecycle(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	v, k := newFileVault(t, Options{Now: clock})

	m := mustCreate(t, v, k, SecretMeta{Name: "OPENAI_API_KEY", Aliases: []string{"openai"}, Pinned: "openai"}, "sk-first")
	if !ValidID(m.ID) || m.Scope != DefaultScope || m.ValueVersion != 1 || !m.CreatedAt.Equal(now) || !m.UpdatedAt.Equal(now) {
		t.Fatalf("created meta %+v", m)
	}
	mustOpen(t, v, k, m.ID, "sk-first")
	st, err := os.Stat(filepath.Join(v.Paths().Dir, "secrets", m.ID+".json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("record file: %v mode %v", err, st.Mode())
	}
	data, _ := os.ReadFile(filepath.Join(v.Paths().Dir, "secrets", m.ID+".json"))
	noLeak(t, string(data), "sk-first")

	now = now.Add(time.Hour)
	m2, err := v.RotateSecret(k, m.ID, []byte("sk-second"))
	if err != nil {
		t.Fatal(err)
	}
	if m2.ValueVersion != 2 || !m2.UpdatedAt.Equal(now) || !m2.CreatedAt.Equal(m.CreatedAt) || m2.Name != m.Name || m2.Pinned != "openai" {
		t.Fatalf("rotated meta %+v", m2)
	}
	mustOpen(t, v, k, m.ID, "sk-second")

	newName := "OPENAI"
	m3, err := v.UpdateSecret(m.ID, &newName, []string{"oa", "openai"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if m3.Name != "OPENAI" || !slices.Equal(m3.Aliases, []string{"openai", "oa"}) {
		t.Fatalf("updated meta %+v", m3)
	}
	m4, err := v.UpdateSecret(m.ID, nil, []string{"x"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if m4.Name != "OPENAI" || !slices.Equal(m4.Aliases, []string{"x"}) {
		t.Fatalf("aliases after clear+add: %+v", m4)
	}
	mustOpen(t, v, k, m.ID, "sk-second") // metadata edits keep the value valid

	list, err := v.ListSecrets()
	if err != nil || len(list) != 1 || list[0].ID != m.ID {
		t.Fatalf("ListSecrets = %+v, %v", list, err)
	}
	if err := v.DeleteSecret(m.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := v.OpenSecret(k, m.ID); !errors.Is(err, ErrSecretNotFound) {
		t.Fatalf("OpenSecret after delete: %v", err)
	}
	if err := v.DeleteSecret(m.ID); !errors.Is(err, ErrSecretNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := v.RotateSecret(k, m.ID, []byte("x")); !errors.Is(err, ErrSecretNotFound) {
		t.Fatalf("rotate after delete: %v", err)
	}
	if _, err := v.UpdateSecret("sec_../../etc/passwd", &newName, nil, false); !errors.Is(err, ErrSecretNotFound) {
		t.Fatalf("update with a path-like id: %v", err)
	}
	mustVerify(t, v, k)
}

func TestCreateValidation(t *testing.T) {
	v, k := newFileVault(t, Options{})
	long := strings.Repeat("a", 129)
	tests := []struct {
		name  string
		m     SecretMeta
		value []byte
		want  error
	}{
		{"ok", SecretMeta{Name: "A_b.c-1"}, []byte("v"), nil},
		{"ok 128", SecretMeta{Name: long[:128]}, []byte("v"), nil},
		{"empty name", SecretMeta{}, []byte("v"), ErrInvalid},
		{"digit first", SecretMeta{Name: "1abc"}, []byte("v"), ErrInvalid},
		{"slash", SecretMeta{Name: "a/b"}, []byte("v"), ErrInvalid},
		{"space", SecretMeta{Name: "a b"}, []byte("v"), ErrInvalid},
		{"too long", SecretMeta{Name: long}, []byte("v"), ErrInvalid},
		{"bad alias", SecretMeta{Name: "ok2", Aliases: []string{"no good"}}, []byte("v"), ErrInvalid},
		{"alias repeats name", SecretMeta{Name: "ok3", Aliases: []string{"ok3"}}, []byte("v"), ErrInvalid},
		{"bad scope", SecretMeta{Name: "ok4", Scope: "glo bal"}, []byte("v"), ErrInvalid},
		{"control in ws", SecretMeta{Name: "ok5", Scope: "workspace", WorkspaceID: "w\n1"}, []byte("v"), ErrInvalid},
		{"empty value", SecretMeta{Name: "ok6"}, nil, ErrInvalid},
		{"huge value", SecretMeta{Name: "ok7"}, make([]byte, MaxSecretSize+1), ErrInvalid},
		{"max value", SecretMeta{Name: "ok8"}, make([]byte, MaxSecretSize), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.CreateSecret(k, tc.m, tc.value)
			if !errors.Is(err, tc.want) {
				t.Fatalf("CreateSecret: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestNamesAndFind(t *testing.T) {
	v, k := newFileVault(t, Options{})
	g := mustCreate(t, v, k, SecretMeta{Name: "TOKEN", Aliases: []string{"tok"}}, "g")
	w1 := mustCreate(t, v, k, SecretMeta{Name: "TOKEN", Scope: "workspace", WorkspaceID: "w1"}, "w1")
	w2 := mustCreate(t, v, k, SecretMeta{Name: "TOKEN", Scope: "workspace", WorkspaceID: "w2", Aliases: []string{"tok"}}, "w2")
	grp := mustCreate(t, v, k, SecretMeta{Name: "token", Scope: "group", WorkspaceID: "w1", GroupID: "g1"}, "grp")

	// Uniqueness per scope/workspace/group, case-sensitive, names and aliases.
	dup := []SecretMeta{
		{Name: "TOKEN"},
		{Name: "tok"},
		{Name: "OTHER", Aliases: []string{"TOKEN"}},
		{Name: "TOKEN", Scope: "workspace", WorkspaceID: "w1"},
	}
	for _, m := range dup {
		if _, err := v.CreateSecret(k, m, []byte("x")); !errors.Is(err, ErrNameTaken) {
			t.Errorf("CreateSecret(%+v): %v, want ErrNameTaken", m, err)
		}
	}
	if _, err := v.CreateSecret(k, SecretMeta{Name: "Token"}, []byte("x")); err != nil {
		t.Errorf("names are case-sensitive: %v", err)
	}
	name := "tok"
	if _, err := v.UpdateSecret(w1.ID, &name, nil, false); err != nil {
		t.Errorf("rename into a free name in another workspace: %v", err)
	}
	name = "TOKEN"
	if _, err := v.UpdateSecret(w1.ID, &name, nil, false); err != nil {
		t.Errorf("rename back: %v", err)
	}
	if _, err := v.UpdateSecret(g.ID, nil, []string{"Token"}, false); !errors.Is(err, ErrNameTaken) {
		t.Errorf("alias clashing with a name: %v", err)
	}

	tests := []struct {
		q, scope, ws, grp string
		want              string
		err               error
	}{
		{g.ID, "", "", "", g.ID, nil},
		{w2.ID, "workspace", "w2", "", w2.ID, nil},
		{w2.ID, "global", "", "", "", ErrSecretNotFound},
		{"TOKEN", "global", "", "", g.ID, nil},
		{"TOKEN", "workspace", "w1", "", w1.ID, nil},
		{"TOKEN", "workspace", "", "", "", ErrAmbiguous},
		{"TOKEN", "", "", "", "", ErrAmbiguous},
		{"token", "", "", "", grp.ID, nil},
		{"tok", "global", "", "", g.ID, nil},
		{"tok", "", "", "", "", ErrAmbiguous},
		{"tok", "workspace", "w2", "", w2.ID, nil},
		{"nope", "", "", "", "", ErrSecretNotFound},
		{"sec_aaaaaaaaaaaaaaaaaaaa", "", "", "", "", ErrSecretNotFound},
	}
	for _, tc := range tests {
		got, err := v.FindSecret(tc.q, tc.scope, tc.ws, tc.grp)
		if !errors.Is(err, tc.err) || got.ID != tc.want {
			t.Errorf("FindSecret(%q, %q, %q, %q) = %s, %v; want %s, %v", tc.q, tc.scope, tc.ws, tc.grp, got.ID, err, tc.want, tc.err)
		}
	}
}

func TestKeyChecks(t *testing.T) {
	v, k := newFileVault(t, Options{})
	m := mustCreate(t, v, k, SecretMeta{Name: "a"}, "va")
	other, err := KeyFromBytes(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Destroy()
	if _, err := v.CreateSecret(other, SecretMeta{Name: "b"}, []byte("x")); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("create with a foreign key: %v", err)
	}
	if _, err := v.OpenSecret(other, m.ID); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("open with a foreign key: %v", err)
	}
	if _, err := v.Verify(other); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("verify with a foreign key: %v", err)
	}
	if err := v.SaveState(other, "broker", 1); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("save state with a foreign key: %v", err)
	}
	dead, _ := KeyFromBytes(make([]byte, 32))
	dead.Destroy()
	dead.Destroy()
	if _, err := v.OpenSecret(dead, m.ID); !errors.Is(err, ErrKeyDestroyed) {
		t.Fatalf("open with a destroyed key: %v", err)
	}
}

func TestLockReentrantAndExclusive(t *testing.T) {
	v, k := newFileVault(t, Options{})
	unlock, err := v.Lock()
	if err != nil {
		t.Fatal(err)
	}
	// The holder's own mutating calls do not deadlock.
	m := mustCreate(t, v, k, SecretMeta{Name: "held"}, "x")
	if err := v.SaveState(k, "broker", map[string]string{"secret": m.ID}); err != nil {
		t.Fatal(err)
	}
	// Another Vault value (as another process would) waits for the lock.
	v2, err := Open(v.Paths(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := v2.CreateSecret(k, SecretMeta{Name: "waiter"}, []byte("y"))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("a second writer ran while the lock was held: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	unlock()
	unlock() // idempotent
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
