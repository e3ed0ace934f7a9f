package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestReleaseBinary checks the foundation's promises about the two builds:
// both are static, only the dev build carries the devhooks tag, the release
// build refuses every AIVAULT_DEV_* variable, and the multi-call names work
// through symlinks.
func TestReleaseBinary(t *testing.T) {
	root := repoRoot(t)
	rel := filepath.Join(root, "bin", "aivault")
	dev := filepath.Join(root, "bin", "aivault-dev")
	for _, b := range []string{rel, dev} {
		if _, err := os.Stat(b); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is missing: 'make build dev' must run before the tests", b)
			}
			t.Skipf("%s is missing (run 'make build dev'); make test builds it", b)
		}
	}
	run := func(env []string, name string, args ...string) (string, error) {
		cmd := exec.Command(name, args...)
		cmd.Env = append([]string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()}, env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, b := range []string{rel, dev} {
		if out, err := run(nil, "file", b); err == nil && !strings.Contains(out, "statically linked") {
			t.Errorf("file %s: %s (want statically linked)", b, out)
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not on PATH: %v", err)
	}
	out, err := run(nil, goBin, "version", "-m", rel)
	if err != nil {
		t.Fatalf("go version -m %s: %v\n%s", rel, err, out)
	}
	if strings.Contains(out, "devhooks") {
		t.Errorf("the release binary carries the devhooks tag:\n%s", out)
	}
	out, err = run(nil, goBin, "version", "-m", dev)
	if err != nil || !strings.Contains(out, "devhooks") {
		t.Errorf("the dev binary lacks the devhooks tag (%v):\n%s", err, out)
	}

	// The release build refuses the test knobs, with a clear message, in every applet.
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"aivaultd", "setup"} {
		if err := os.Symlink(rel, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	vault := filepath.Join(t.TempDir(), "v")
	for _, c := range [][]string{{rel, "status"}, {filepath.Join(dir, "aivaultd")}, {filepath.Join(dir, "setup"), "--help"}, {rel, "invoke", "openai/chat-completions"}} {
		out, err := run([]string{"AIVAULT_DIR=" + vault, "AIVAULT_DEV_RESOLVE=a=127.0.0.1:1"}, c[0], c[1:]...)
		if err == nil {
			t.Errorf("%v with AIVAULT_DEV_RESOLVE set succeeded:\n%s", c, out)
		}
		if !strings.Contains(out, "AIVAULT_DEV_RESOLVE is set, but this is a release build") {
			t.Errorf("%v: unclear refusal:\n%s", c, out)
		}
	}
	if _, err := os.Stat(vault); err == nil {
		t.Errorf("a refused command created the vault at %s", vault)
	}

	// Multi-call dispatch by argv[0].
	out, err = run(nil, filepath.Join(dir, "aivaultd"), "--help")
	if err != nil || !strings.Contains(out, "--shared") || !strings.Contains(out, "--pool") {
		t.Errorf("aivaultd --help does not show the daemon's flags (%v):\n%s", err, out)
	}
	out, err = run(nil, filepath.Join(dir, "setup"), "--help")
	if err != nil || !strings.Contains(out, "agent-access") {
		t.Errorf("setup --help does not show the setup applet (%v):\n%s", err, out)
	}
	for _, sub := range []string{"daemon", "setup"} {
		out, err = run(nil, rel, sub, "--help")
		if err != nil || !strings.Contains(out, "Usage:") {
			t.Errorf("aivault %s --help (%v):\n%s", sub, err, out)
		}
	}
	out, err = run(nil, rel, "--version")
	if err != nil || !strings.Contains(out, "build: release") {
		t.Errorf("aivault --version does not name the release build (%v): %s", err, out)
	}
	// The worker entry refuses to run unless the daemon handed it its job socket.
	worker := filepath.Join(dir, "aivault-worker")
	if err := os.Symlink(rel, worker); err != nil {
		t.Fatal(err)
	}
	out, err = run(nil, worker)
	if err == nil {
		t.Errorf("aivault-worker ran without its job socket:\n%s", out)
	}
	// Package inits stay trivial: GODEBUG=inittrace=1 lists them, and none of
	// ours may allocate large tables (regexps, registries) at start-up.
	out, _ = run([]string{"GODEBUG=inittrace=1"}, rel, "--version")
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "init github.com/aivault/") && strings.Contains(line, " allocs") {
			f := strings.Fields(line)
			// init PKG @T ms, D ms clock, B bytes, A allocs
			for i := range f {
				if f[i] == "bytes," && i > 0 {
					if n, err := strconv.Atoi(f[i-1]); err == nil && n > 64<<10 {
						t.Errorf("package init allocates %d bytes (keep inits lazy: every worker pays for them): %s", n, line)
					}
				}
			}
		}
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	d, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		p := filepath.Dir(d)
		if p == d {
			t.Fatal("no go.mod above the test directory")
		}
		d = p
	}
}
