package crypt

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func TestConcurrentCreatesGoroutines(t *testing.T) {
	v, k := newFileVault(t, Options{})
	const workers, each = 12, 4
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			// Half share the Vault value, half open their own (like
			// separate processes).
			vv := v
			if w%2 == 1 {
				var err error
				if vv, err = Open(v.Paths(), Options{}); err != nil {
					errs <- err
					return
				}
			}
			for i := range each {
				name := fmt.Sprintf("g%d_%d", w, i)
				if _, err := vv.CreateSecret(k, SecretMeta{Name: name}, []byte("value-"+name)); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	list, err := v.ListSecrets()
	if err != nil || len(list) != workers*each {
		t.Fatalf("ListSecrets: %d secrets, %v; want %d", len(list), err, workers*each)
	}
	for _, m := range list {
		mustOpen(t, v, k, m.ID, "value-"+m.Name)
	}
	// Racing creates of one name: exactly one wins.
	var wins, taken int
	var mu sync.Mutex
	for range 8 {
		wg.Go(func() {
			vv, _ := Open(v.Paths(), Options{})
			_, err := vv.CreateSecret(k, SecretMeta{Name: "contended"}, []byte("x"))
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins++
			} else if strings.Contains(err.Error(), "already used") {
				taken++
			}
		})
	}
	wg.Wait()
	if wins != 1 || taken != 7 {
		t.Fatalf("contended name: %d wins, %d refusals", wins, taken)
	}
}

// childCmd re-executes the test binary in a child role.
func childCmd(role string, p Paths, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+role, "CRYPT_TEST_DIR="+p.Dir, "CRYPT_TEST_KEYFILE="+p.KeyFile)
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

func TestConcurrentCreatesProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns 40 processes")
	}
	p := testPaths(t) // no vault yet: the children race to create it
	const procs, each = 40, 3
	cmds := make([]*exec.Cmd, procs)
	outs := make([]*strings.Builder, procs)
	for i := range procs {
		cmds[i] = childCmd("create", p, fmt.Sprintf("CRYPT_TEST_N=%d", each), fmt.Sprintf("CRYPT_TEST_PREFIX=p%d", i))
		outs[i] = &strings.Builder{}
		cmds[i].Stderr = outs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			t.Fatalf("child %d: %v: %s", i, err, outs[i])
		}
	}
	v, err := Open(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	k, err := v.Unlock(KeySource{})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Destroy()
	list, err := v.ListSecrets()
	if err != nil || len(list) != procs*each {
		t.Fatalf("ListSecrets: %d, %v; want %d", len(list), err, procs*each)
	}
	for _, m := range list {
		mustOpen(t, v, k, m.ID, "value-"+m.Name)
	}
	mustVerify(t, v, k)
}

// killAfter starts a child, waits until it has reported n finished
// operations, then SIGKILLs it.
func killAfter(t *testing.T, cmd *exec.Cmd, n int) {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for i := 0; i < n; i++ {
		if !sc.Scan() {
			cmd.Wait()
			t.Fatalf("child stopped early: %s", stderr.String())
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
}

func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	for _, tc := range []struct {
		role string
		ops  []int
	}{
		{"churn", []int{3, 7, 12}},
		{"rotate-churn", []int{1, 2, 4}},
	} {
		t.Run(tc.role, func(t *testing.T) {
			v, k := newFileVault(t, Options{})
			for i := range 5 {
				name := fmt.Sprintf("base%d", i)
				mustCreate(t, v, k, SecretMeta{Name: name}, "value-"+name)
			}
			if err := v.SaveState(k, "broker", map[string]int{"ops": -1}); err != nil {
				t.Fatal(err)
			}
			for _, n := range tc.ops {
				killAfter(t, childCmd(tc.role, v.Paths()), n)
				// A new process: unlock (recovering if needed), every
				// record opens with a value it was given, Verify is clean.
				v2, err := Open(v.Paths(), Options{})
				if err != nil {
					t.Fatal(err)
				}
				k2, err := v2.Unlock(KeySource{})
				if err != nil {
					t.Fatalf("Unlock after kill -9: %v", err)
				}
				list, err := v2.ListSecrets()
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range list {
					got, err := v2.OpenSecret(k2, m.ID)
					if err != nil {
						t.Fatalf("OpenSecret(%s) after kill -9: %v", m.ID, err)
					}
					base := strings.TrimSuffix(m.Name, "_renamed")
					if s := string(got); s != "value-"+base && s != "value2-"+base {
						t.Fatalf("secret %s has an unexpected value", m.ID)
					}
					clear(got)
				}
				mustVerify(t, v2, k2)
				var st map[string]int
				if err := v2.LoadState(k2, "broker", &st); err != nil {
					t.Fatalf("LoadState after kill -9: %v", err)
				}
				k2.Destroy()
			}
		})
	}
}
