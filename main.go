// Command aivault is one static, busybox-style binary: invoked as aivault it
// is the CLI, as aivaultd the daemon, as setup (or aivault-setup) the setup
// applet, and as aivault-worker the sandboxed per-request worker that the
// daemon re-executes.
package main

import (
	"os"
	"path/filepath"

	"github.com/aivault/aivault/applets"
)

func main() {
	os.Exit(applets.Main(filepath.Base(os.Args[0]), os.Args[1:]))
}
