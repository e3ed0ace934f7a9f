package test

import (
	"os"
	"path/filepath"
	"regexp"

	"github.com/rogpeppe/go-internal/testscript"
	"golang.org/x/sys/unix"
)

var exclusiveName = regexp.MustCompile(`^[a-z0-9-]+$`)

// cmdExclusive serialises scripts that share machine-wide state (the real
// /var/run/aivault, the group aivault): `exclusive NAME` takes an flock held
// until the script ends. Call it first, so that it is released after the
// script's daemons and upstreams have been stopped.
func cmdExclusive(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 || !exclusiveName.MatchString(args[0]) {
		ts.Fatalf("usage: exclusive NAME")
	}
	path := filepath.Join(os.TempDir(), "aivault-e2e-"+args[0]+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	ts.Check(err)
	ts.Check(unix.Flock(int(f.Fd()), unix.LOCK_EX))
	ts.Defer(func() {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	})
}
