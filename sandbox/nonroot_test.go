package sandbox

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/aivault/aivault/ipc"
)

// testUser is the unprivileged account the non-root lockdown test runs
// workers as (created when absent; the test runs as root).
const testUser = "aivault-sbxtest"

// unprivilegedConfig returns a config whose workers run as testUser from a
// world-readable copy of the test binary (root's build cache is private).
func unprivilegedConfig(t *testing.T, roots []byte) (PoolConfig, uint32) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot switch workers to another uid; the rest of this suite already runs unprivileged, which is what this test would check")
	}
	u, err := user.Lookup(testUser)
	if err != nil {
		out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", testUser).CombinedOutput()
		if err != nil {
			t.Fatalf("useradd %s: %v: %s", testUser, err, out)
		}
		if u, err = user.Lookup(testUser); err != nil {
			t.Fatal(err)
		}
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)

	dir, err := os.MkdirTemp("", "aivault-sbx")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for d := filepath.Dir(dir); d != "/"; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil || st.Mode().Perm()&0o001 == 0 {
			t.Fatalf("%s is not traversable by other users; set TMPDIR to a world-traversable directory", d)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "aivault-test-worker")
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, roots, nil)
	cfg.Exe = exe
	cfg.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
	return cfg, uint32(uid)
}

// TestLockdownAsNonRoot repeats the lockdown checks with workers running as
// an unprivileged user: root is exempt from limits that bite real
// deployments (RLIMIT_NPROC counts threads, for one).
func TestLockdownAsNonRoot(t *testing.T) {
	u := newUpstream(t, http.HandlerFunc(echoHandler))
	cfg, uid := unprivilegedConfig(t, u.roots)

	t.Run("status", func(t *testing.T) {
		w := spawnForTest(t, cfg)
		checkLockedDown(t, w)
		st, err := readStatus("/proc/" + strconv.Itoa(w.pid) + "/status")
		if err != nil {
			t.Fatal(err)
		}
		if f := strings.Fields(st["Uid"]); len(f) != 4 || f[0] != strconv.Itoa(int(uid)) || f[1] != f[0] {
			t.Fatalf("worker Uid = %q, want %d", st["Uid"], uid)
		}
		// A non-dumpable process's /proc files belong to root.
		fi, err := os.Stat("/proc/" + strconv.Itoa(w.pid) + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		if owner := fi.Sys().(*syscall.Stat_t).Uid; owner != 0 {
			t.Errorf("/proc/<worker>/environ owned by %d: the worker is dumpable", owner)
		}
	})
	t.Run("probes", func(t *testing.T) {
		for _, what := range ProbeNames() {
			res, err := Probe(context.Background(), cfg, what)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if !res.Blocked {
				t.Errorf("probe %s not blocked: %+v", what, res)
			}
		}
	})
	t.Run("request", func(t *testing.T) {
		cfg.Size = 1
		p, err := NewPool(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		c, err := runJobOn(t, p, u, ipc.Job{
			Target:  "/echo?key=" + testSecret,
			Headers: []ipc.Header{{Name: "Authorization", Value: "Bearer " + testSecret}},
			Scrub:   [][]byte{[]byte(testSecret)},
			Stream:  true,
		})
		if err != nil {
			t.Fatal(err)
		}
		if c.end == nil || c.end.ErrorClass != "" || !strings.Contains(c.body.String(), "auth=Bearer "+RedactMarker) {
			t.Fatalf("end=%+v body=%q", c.end, c.body.String())
		}
		assertNoSecret(t, c, testSecret)
	})
}
