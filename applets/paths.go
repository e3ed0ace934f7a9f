package applets

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/aivault/aivault/crypt"
)

// Well-known locations.
const (
	sharedSocketDir  = "/var/run/aivault"
	sharedSocketPath = "/var/run/aivault/aivaultd.sock"
	socketName       = "aivaultd.sock"
)

// layout is where one vault's files live, from the caller's environment.
type layout struct {
	crypt.Paths
	// SocketPath is the vault's own (non-shared) daemon socket.
	SocketPath string
	// FromEnv is true when AIVAULT_DIR chose the location.
	FromEnv bool
}

func resolveLayout(getenv func(string) string) (layout, error) {
	if d := getenv("AIVAULT_DIR"); d != "" {
		abs, err := filepath.Abs(d)
		if err != nil {
			return layout{}, fmt.Errorf("AIVAULT_DIR: %w", err)
		}
		return layout{
			Paths:      crypt.Paths{Dir: abs, KeyFile: filepath.Join(abs, "kek.key")},
			SocketPath: filepath.Join(abs, "run", socketName),
			FromEnv:    true,
		}, nil
	}
	home := getenv("HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return layout{}, fmt.Errorf("cannot find a home directory; set HOME or AIVAULT_DIR: %w", err)
		}
		home = h
	}
	base := filepath.Join(home, ".aivault")
	return layout{
		Paths:      crypt.Paths{Dir: filepath.Join(base, "data", "vault"), KeyFile: filepath.Join(base, "keys", "kek.key")},
		SocketPath: filepath.Join(base, "run", socketName),
	}, nil
}

func (l layout) lockPath() string       { return filepath.Join(l.Dir, "daemon.lock") }
func (l layout) advertPath() string     { return filepath.Join(l.Dir, "run", "socket") }
func (l layout) auditDir() string       { return filepath.Join(l.Dir, "audit") }
func (l layout) ratePath() string       { return filepath.Join(l.Dir, "ratelimit.json") }
func (l layout) oauthStatePath() string { return filepath.Join(l.Dir, "oauth.json") }
