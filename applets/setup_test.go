package applets

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnvKeyLookupCredential(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("AIVAULT_TEST_KEK", "")
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	if _, ok := envKeyLookup("AIVAULT_TEST_KEK"); ok {
		t.Fatal("found a key with neither the variable nor the credential")
	}
	if err := os.WriteFile(filepath.Join(dir, credentialKEK), []byte("a2V5\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if v, ok := envKeyLookup("AIVAULT_TEST_KEK"); !ok || v != "a2V5" {
		t.Fatalf("credential not read (ok=%v)", ok)
	}
	t.Setenv("AIVAULT_TEST_KEK", "dmFy")
	if v, _ := envKeyLookup("AIVAULT_TEST_KEK"); v != "dmFy" {
		t.Fatal("the variable must win over the credential")
	}
	t.Setenv("AIVAULT_TEST_KEK", "")
	t.Setenv("CREDENTIALS_DIRECTORY", "relative/dir")
	if _, ok := envKeyLookup("AIVAULT_TEST_KEK"); ok {
		t.Fatal("a relative CREDENTIALS_DIRECTORY must be ignored")
	}
}

func TestAccessFor(t *testing.T) {
	dir := t.TempDir()
	// t.TempDir's parent is 0700: open it so only dir's own mode decides.
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "kek.key")
	if err := os.WriteFile(f, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	other := 65534
	gid := os.Getgid()
	if err := os.Chmod(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if !accessFor(f, other, map[int]bool{gid: true}, 4) {
		t.Fatal("a member of the file's group should read a 0640 file in a 0750 dir")
	}
	if accessFor(f, other, map[int]bool{}, 4) {
		t.Fatal("a stranger must not read it")
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if accessFor(f, other, map[int]bool{gid: true}, 4) {
		t.Fatal("a 0700 directory closes the file to the group")
	}
}

func TestSystemdUnitShape(t *testing.T) {
	u := systemdUnit(userEntry{name: "av", home: "/home/av"}, "/usr/local/bin/aivaultd", "/etc/aivault/kek")
	for _, want := range []string{"\nUser=av\n", "\nBindPaths=/home/av/.aivault\n", "\nLoadCredential=aivault-kek:/etc/aivault/kek\n", "\nCapabilityBoundingSet=\n"} {
		if !strings.Contains(u, want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	for _, bad := range []string{"\nPrivateUsers=", "\nDynamicUser=", "\nEnvironment="} {
		if strings.Contains(u, bad) {
			t.Errorf("unit has %q", strings.TrimSpace(bad))
		}
	}
}
