package crypt

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The test binary doubles as a worker process for the multi-process tests:
// with CRYPT_TEST_CHILD set it runs that role instead of the tests.
const childEnv = "CRYPT_TEST_CHILD"

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		if err := runChild(role); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// childPaths are the vault paths handed to a child process.
func childPaths() Paths {
	return Paths{Dir: os.Getenv("CRYPT_TEST_DIR"), KeyFile: os.Getenv("CRYPT_TEST_KEYFILE")}
}

func runChild(role string) error {
	p := childPaths()
	switch role {
	case "create":
		// Race to initialise the vault, then create N secrets.
		n, _ := strconv.Atoi(os.Getenv("CRYPT_TEST_N"))
		prefix := os.Getenv("CRYPT_TEST_PREFIX")
		v, _, err := OpenOrInitFile(p, Options{})
		if err != nil {
			return err
		}
		k, err := v.Unlock(KeySource{})
		if err != nil {
			return err
		}
		defer k.Destroy()
		for i := range n {
			name := fmt.Sprintf("%s_%d", prefix, i)
			if _, err := v.CreateSecret(k, SecretMeta{Name: name}, []byte("value-"+name)); err != nil {
				return err
			}
		}
		return nil
	case "churn":
		// Mutate the vault forever, reporting each finished operation on
		// stdout, until the parent kills us with SIGKILL.
		v, err := Open(p, Options{})
		if err != nil {
			return err
		}
		k, err := v.Unlock(KeySource{})
		if err != nil {
			return err
		}
		out := bufio.NewWriter(os.Stdout)
		for i := 0; ; i++ {
			name := fmt.Sprintf("churn%d_%d", os.Getpid(), i)
			m, err := v.CreateSecret(k, SecretMeta{Name: name}, []byte("value-"+name))
			if err != nil {
				return err
			}
			if _, err := v.RotateSecret(k, m.ID, []byte("value2-"+name)); err != nil {
				return err
			}
			nn := name + "_renamed"
			if _, err := v.UpdateSecret(m.ID, &nn, []string{name + "_alias"}, false); err != nil {
				return err
			}
			if i%3 == 0 {
				if err := v.DeleteSecret(m.ID); err != nil {
					return err
				}
			}
			if err := v.SaveState(k, "broker", map[string]int{"ops": i}); err != nil {
				return err
			}
			fmt.Fprintln(out, "ok", i)
			out.Flush()
		}
	case "rotate-churn":
		// Rotate the master key forever (file provider).
		v, err := Open(p, Options{})
		if err != nil {
			return err
		}
		k, err := v.Unlock(KeySource{})
		if err != nil {
			return err
		}
		for i := 0; ; i++ {
			nk, err := v.RotateMaster(k, InitOptions{}, nil)
			if err != nil {
				return err
			}
			k.Destroy()
			k = nk
			fmt.Println("ok", i)
		}
	}
	return errors.New("unknown child role " + role)
}

// testPaths returns fresh vault paths under a short temp dir.
func testPaths(t *testing.T) Paths {
	t.Helper()
	d := t.TempDir()
	return Paths{Dir: filepath.Join(d, "vault"), KeyFile: filepath.Join(d, "keys", "kek.key")}
}

// smallArgon keeps passphrase tests fast.
var smallArgon = ArgonParams{Time: 1, MemoryKiB: 64, Threads: 1}

// newFileVault initialises a file-provider vault and unlocks it.
func newFileVault(t *testing.T, o Options) (*Vault, *Key) {
	t.Helper()
	p := testPaths(t)
	if _, err := Init(p, InitOptions{Provider: ProviderFile}); err != nil {
		t.Fatalf("Init: %v", err)
	}
	v, err := Open(p, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	k, err := v.Unlock(KeySource{})
	if err != nil {
		t.Fatalf("Unlock: %v", err)
	}
	t.Cleanup(k.Destroy)
	return v, k
}

// mustCreate creates a secret or fails the test.
func mustCreate(t *testing.T, v *Vault, k *Key, m SecretMeta, value string) SecretMeta {
	t.Helper()
	got, err := v.CreateSecret(k, m, []byte(value))
	if err != nil {
		t.Fatalf("CreateSecret(%s): %v", m.Name, err)
	}
	return got
}

// mustOpen opens a secret and compares it with want (the value is never
// printed).
func mustOpen(t *testing.T, v *Vault, k *Key, id, want string) {
	t.Helper()
	got, err := v.OpenSecret(k, id)
	if err != nil {
		t.Fatalf("OpenSecret(%s): %v", id, err)
	}
	defer clear(got)
	if string(got) != want {
		t.Fatalf("OpenSecret(%s): value differs from the stored one", id)
	}
}

// mustVerify runs Verify and fails on any problem.
func mustVerify(t *testing.T, v *Vault, k *Key) {
	t.Helper()
	probs, err := v.Verify(k)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if len(probs) > 0 {
		t.Fatalf("Verify found problems: %+v", probs)
	}
}

// noLeak fails if s contains any of the secret values.
func noLeak(t *testing.T, s string, values ...string) {
	t.Helper()
	for _, val := range values {
		if val != "" && strings.Contains(s, val) {
			t.Fatal("a secret value leaked into an error message or file")
		}
	}
}
