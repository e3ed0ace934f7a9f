// Package test holds aivault's end-to-end tests: testscript scripts under
// testdata/ that drive the real static bin/aivault-dev (built by `make dev`),
// a fake HTTPS upstream, and helpers that scan for leaked secrets. See
// README.md for the custom script commands.
package test

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// harness is the per-process test environment TestMain builds: a short temp
// root (unix socket paths stop at 107 bytes), the binaries, and the users
// and groups created by scripts (removed at the end).
type harness struct {
	repoRoot string
	tmpRoot  string // short, 0755, e.g. /tmp/av123456
	binDir   string // product binary copy + symlinks + fakeupstream
	priv     string // 0700 scratch space for the harness itself (not scanned)
	binErr   error  // why the product binary is unavailable, if it is
	standin  string // dir with the stand-in binary (copy of the test binary)

	mu     sync.Mutex
	users  []string
	groups []string
}

// theHarness is set once by TestMain before any test runs and not replaced.
var theHarness *harness

// standinEnv marks a process as the harness's stand-in for the product.
const standinEnv = "AIVAULT_HARNESS_STANDIN"

func TestMain(m *testing.M) {
	if os.Getenv(standinEnv) == "1" {
		switch filepath.Base(os.Args[0]) {
		case "aivault", "aivaultd", "setup":
			os.Exit(standinMain(filepath.Base(os.Args[0]), os.Args[1:]))
		}
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	h, err := newHarness()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e harness:", err)
		return 1
	}
	theHarness = h
	code := m.Run()
	h.cleanup()
	return code
}

func newHarness() (*harness, error) {
	root, err := findRepoRoot()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("/tmp", "av")
	if err != nil {
		return nil, fmt.Errorf("short temp root: %w", err)
	}
	h := &harness{repoRoot: root, tmpRoot: tmp, binDir: filepath.Join(tmp, "bin"), priv: filepath.Join(tmp, "priv"), standin: filepath.Join(tmp, "sbin")}
	fail := func(err error) (*harness, error) {
		os.RemoveAll(tmp)
		return nil, err
	}
	// Other users (steps run with `as`) must be able to traverse to their
	// work dirs and run the binaries.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fail(err)
	}
	for _, d := range []struct {
		path string
		perm os.FileMode
	}{{h.binDir, 0o755}, {h.standin, 0o755}, {h.priv, 0o700}} {
		if err := os.Mkdir(d.path, d.perm); err != nil {
			return fail(err)
		}
		if err := os.Chmod(d.path, d.perm); err != nil {
			return fail(err)
		}
	}

	bin := os.Getenv("AIVAULT_TEST_BINARY")
	if bin == "" {
		bin = filepath.Join(root, "bin", "aivault-dev")
	}
	if err := installMultiCall(bin, h.binDir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%s does not exist: run make dev first (or point AIVAULT_TEST_BINARY at a build)", bin)
		}
		h.binErr = err
	}
	self, err := os.Executable()
	if err != nil {
		return fail(fmt.Errorf("locate test binary: %w", err))
	}
	if err := installMultiCall(self, h.standin); err != nil {
		return fail(fmt.Errorf("install stand-in: %w", err))
	}
	if err := h.buildFakeUpstream(); err != nil {
		return fail(err)
	}
	if err := os.Symlink(filepath.Join(h.binDir, "fakeupstream"), filepath.Join(h.standin, "fakeupstream")); err != nil {
		return fail(err)
	}
	return h, nil
}

// installMultiCall copies bin into dir as aivault (0755) with aivaultd and
// setup symlinks: the binary dispatches on argv[0].
func installMultiCall(bin, dir string) error {
	src, err := os.Open(bin)
	if err != nil {
		return fmt.Errorf("open %s: %w", bin, err)
	}
	defer src.Close()
	dst := filepath.Join(dir, "aivault")
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return fmt.Errorf("install %s: %w", dst, err)
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", bin, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copy %s: %w", bin, err)
	}
	if err := os.Chmod(dst, 0o755); err != nil {
		return fmt.Errorf("chmod %s: %w", dst, err)
	}
	for _, alias := range []string{"aivaultd", "setup"} {
		if err := os.Symlink("aivault", filepath.Join(dir, alias)); err != nil {
			return fmt.Errorf("symlink %s: %w", alias, err)
		}
	}
	return nil
}

func (h *harness) buildFakeUpstream() error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(h.binDir, "fakeupstream")
	cmd := exec.Command(goBin, "build", "-o", out, "./test/fakeupstream/cmd/fakeupstream")
	cmd.Dir = h.repoRoot
	if msg, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build fakeupstream: %w\n%s", err, msg)
	}
	return os.Chmod(out, 0o755)
}

func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("getwd: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the test directory")
		}
		dir = parent
	}
}

// cleanup removes the users and groups scripts created, then the temp root
// (unless AIVAULT_TEST_KEEP=1).
func (h *harness) cleanup() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, u := range h.users {
		if out, err := exec.Command("userdel", "-r", u).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e harness: userdel %s: %v %s\n", u, err, out)
		}
	}
	for _, g := range h.groups {
		if _, err := user.LookupGroup(g); err != nil {
			continue // removed with its user's private group
		}
		if out, err := exec.Command("groupdel", g).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e harness: groupdel %s: %v %s\n", g, err, out)
		}
	}
	if os.Getenv("AIVAULT_TEST_KEEP") == "1" {
		fmt.Fprintln(os.Stderr, "e2e harness: keeping", h.tmpRoot)
		return
	}
	os.RemoveAll(h.tmpRoot)
}

// TestScripts runs testdata/*.txtar against the product binary.
func TestScripts(t *testing.T) {
	h := theHarness
	if h.binErr != nil {
		t.Fatal(h.binErr)
	}
	runScripts(t, h, "testdata", h.binDir, nil)
}

// TestHarness runs testdata/harness/*.txtar, which exercise the harness's
// own commands against a stand-in for the product (a copy of this test
// binary), so the harness is tested even before the product exists.
func TestHarness(t *testing.T) {
	h := theHarness
	runScripts(t, h, filepath.Join("testdata", "harness"), h.standin, []string{standinEnv + "=1"})
}

func runScripts(t *testing.T, h *harness, dir, binDir string, extraEnv []string) {
	root := filepath.Join(h.tmpRoot, filepath.Base(dir))
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	p := testscript.Params{
		Dir:         dir,
		WorkdirRoot: root,
		Setup: func(env *testscript.Env) error {
			return setupScript(env, h, binDir, extraEnv)
		},
		Condition: condition,
		Cmds:      commands(),
	}
	if d, ok := t.Deadline(); ok {
		p.Deadline = d
	}
	testscript.Run(t, p)
}

// stateKey indexes the per-script state in testscript's Values.
type stateKey struct{}

// scriptState is what the custom commands of one script share.
type scriptState struct {
	h       *harness
	binDir  string
	work    string
	archive map[string]bool // files unpacked from the txtar (test inputs)

	upstreams map[string]*upstreamProc
	daemons   map[string]*daemonProc
}

func state(ts *testscript.TestScript) *scriptState {
	st, ok := ts.Value(stateKey{}).(*scriptState)
	if !ok {
		ts.Fatalf("harness state missing (script not started through runScripts)")
	}
	return st
}

func setupScript(env *testscript.Env, h *harness, binDir string, extraEnv []string) error {
	work := env.WorkDir
	st := &scriptState{
		h:         h,
		binDir:    binDir,
		work:      work,
		archive:   map[string]bool{},
		upstreams: map[string]*upstreamProc{},
		daemons:   map[string]*daemonProc{},
	}
	// Everything present now was unpacked from the script's archive.
	err := filepath.WalkDir(work, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			st.archive[p] = true
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list archive files: %w", err)
	}
	// Path-wise 0755 so a step run as another user can traverse to $WORK;
	// the vault dir itself is created by the product with its own mode.
	for d := work; strings.HasPrefix(d, h.tmpRoot) && d != h.tmpRoot; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	tmp := env.Getenv("TMPDIR")
	if err := os.Chmod(tmp, 0o1777); err != nil {
		return err
	}
	home := filepath.Join(work, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		return err
	}
	name := "root"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	env.Setenv("PATH", binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	env.Setenv("HOME", home)
	env.Setenv("USER", name)
	env.Setenv("LOGNAME", name)
	env.Setenv("AIVAULT_DIR", filepath.Join(work, "v"))
	env.Setenv("AIVAULT_BIN", filepath.Join(binDir, "aivault"))
	for _, kv := range extraEnv {
		k, v, _ := strings.Cut(kv, "=")
		env.Setenv(k, v)
	}
	env.Values[stateKey{}] = st
	return nil
}

func condition(cond string) (bool, error) {
	switch cond {
	case "root":
		return os.Geteuid() == 0, nil
	}
	return false, fmt.Errorf("unknown condition %q", cond)
}

// poll calls f every interval until it reports done or an error, or the
// timeout passes.
func poll(timeout time.Duration, f func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	interval := 5 * time.Millisecond
	for {
		done, err := f()
		if err != nil || done {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v", timeout)
		}
		time.Sleep(interval)
		interval = min(interval*2, 100*time.Millisecond)
	}
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
