package applets

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

type userEntry struct {
	uid, gid int
	name     string
	home     string
}

func lookupUserEntry(s string) (userEntry, error) {
	var u *user.User
	var err error
	if _, aerr := strconv.Atoi(s); aerr == nil {
		u, err = user.LookupId(s)
	} else {
		u, err = user.Lookup(s)
	}
	if err != nil {
		return userEntry{}, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return userEntry{uid: uid, gid: gid, name: u.Username, home: u.HomeDir}, nil
}

func newSetupCmd(applet bool) *cobra.Command {
	use := "setup"
	cmd := &cobra.Command{
		Use:   use,
		Short: "Set up the two-user deployment: agent access to a group-shared socket, a hardened systemd unit",
		Long: `The setup applet prepares the recommended deployment: a dedicated vault user
owns the vault and runs 'aivaultd --shared'; agent users reach only the
group-shared socket /var/run/aivault/aivaultd.sock.

  sudo aivault setup agent-access --agent-user agent --daemon-user aivault
  sudo aivault setup systemd --daemon-user aivault`,
	}
	if applet {
		cmd.Version = versionString()
	}
	cmd.AddCommand(newAgentAccessCmd(), newSystemdCmd())
	return cmd
}

type setupRunner struct {
	dry bool
	out io.Writer
}

func (r *setupRunner) run(name string, args ...string) error {
	fmt.Fprintf(r.out, "+ %s %s\n", name, strings.Join(args, " "))
	if r.dry {
		return nil
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return fmt.Errorf("%s is not installed (needed to %s); install the 'passwd' package or do this step by hand", name, strings.Join(args, " "))
	}
	cmd := exec.Command(path, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = r.out, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

func inGroupFile(userName, group string) bool {
	g, err := user.LookupGroup(group)
	if err != nil {
		return false
	}
	u, err := user.Lookup(userName)
	if err != nil {
		return false
	}
	if u.Gid == g.Gid {
		return true
	}
	ids, _ := u.GroupIds()
	for _, id := range ids {
		if id == g.Gid {
			return true
		}
	}
	return false
}

const tmpfilesPath = "/etc/tmpfiles.d/aivault.conf"

func newAgentAccessCmd() *cobra.Command {
	var agentUser, daemonUser string
	var dry, remove bool
	cmd := &cobra.Command{
		Use:   "agent-access --agent-user U [--daemon-user U] [--dry-run] [--remove]",
		Short: "Let an agent user reach the shared daemon socket (root only; idempotent)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			r := &setupRunner{dry: dry, out: out}
			if agentUser == "" {
				return usagef("--agent-user is required")
			}
			if !dry && os.Geteuid() != 0 {
				return fmt.Errorf("setup agent-access must run as root (try: sudo aivault setup agent-access …)")
			}
			if daemonUser == "" {
				daemonUser = os.Getenv("SUDO_USER")
			}
			if daemonUser == "" {
				return usagef("--daemon-user is required (it defaults to $SUDO_USER, which is not set)")
			}
			au, err := lookupUserEntry(agentUser)
			if err != nil {
				return fmt.Errorf("agent user %q does not exist in /etc/passwd (create it first, e.g. useradd -m %s)", agentUser, agentUser)
			}
			du, err := lookupUserEntry(daemonUser)
			if err != nil {
				return fmt.Errorf("daemon user %q does not exist in /etc/passwd (create it first, e.g. useradd -m %s)", daemonUser, daemonUser)
			}
			if au.uid == du.uid {
				return usagef("the agent user and the daemon user must be different accounts")
			}
			if remove {
				if inGroupFile(au.name, "aivault") {
					if err := r.run("gpasswd", "-d", au.name, "aivault"); err != nil {
						return err
					}
				}
				fmt.Fprintf(out, "removed %s from group aivault; it can no longer reach the shared socket (new logins)\n", au.name)
				return nil
			}
			g, gerr := user.LookupGroup("aivault")
			if gerr != nil {
				if err := r.run("groupadd", "--system", "aivault"); err != nil {
					return err
				}
			} else if gid, _ := strconv.Atoi(g.Gid); gid == du.gid {
				fmt.Fprintf(cmd.ErrOrStderr(), "aivault: warning: group aivault is %s's own primary group: files %s makes group-readable would be readable by agents; keep the vault 0700 ('aivault doctor --agent-user %s' checks)\n", du.name, du.name, au.name)
			}
			for _, name := range []string{du.name, au.name} {
				if !inGroupFile(name, "aivault") {
					if err := r.run("usermod", "-a", "-G", "aivault", name); err != nil {
						return err
					}
				}
			}
			fmt.Fprintf(out, "+ install -d -o %s -g aivault -m 2750 %s\n", du.name, sharedSocketDir)
			if !dry {
				if err := os.MkdirAll(sharedSocketDir, 0o750); err != nil {
					return err
				}
				gg, err := user.LookupGroup("aivault")
				if err != nil {
					return err
				}
				gid, _ := strconv.Atoi(gg.Gid)
				if err := os.Chown(sharedSocketDir, du.uid, gid); err != nil {
					return err
				}
				if err := os.Chmod(sharedSocketDir, 0o750|os.ModeSetgid); err != nil {
					return err
				}
			}
			line := fmt.Sprintf("d %s 2750 %s aivault -\n", sharedSocketDir, du.name)
			fmt.Fprintf(out, "+ write %s: %s", tmpfilesPath, line)
			if !dry {
				if err := os.MkdirAll(filepath.Dir(tmpfilesPath), 0o755); err != nil {
					return err
				}
				if err := os.WriteFile(tmpfilesPath, []byte("# aivault shared socket directory (aivault setup agent-access)\n"+line), 0o644); err != nil {
					return err
				}
			}
			fmt.Fprintf(out, `
next steps:
  1. as %[1]s, store keys:        sudo -u %[1]s aivault secrets create --name OPENAI_API_KEY
  2. as %[1]s, start the daemon:  sudo -u %[1]s aivaultd --shared   (or: sudo aivault setup systemd --daemon-user %[1]s)
  3. as %[2]s, invoke:            aivault invoke openai/chat-completions …
  4. check:                        sudo -u %[1]s aivault doctor --agent-user %[2]s
`, du.name, au.name)
			return nil
		},
	}
	cmd.Flags().StringVar(&agentUser, "agent-user", "", "the agent account")
	cmd.Flags().StringVar(&daemonUser, "daemon-user", "", "the vault/daemon account (default $SUDO_USER)")
	cmd.Flags().BoolVar(&dry, "dry-run", false, "print each action without doing it")
	cmd.Flags().BoolVar(&remove, "remove", false, "undo agent access for this agent user")
	return cmd
}

func newSystemdCmd() *cobra.Command {
	var daemonUser, unitPath, binPath string
	var dry bool
	cmd := &cobra.Command{
		Use:   "systemd --daemon-user U [--dry-run] [--unit-path P]",
		Short: "Write a hardened systemd unit for 'aivaultd --shared'",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if daemonUser == "" {
				return usagef("--daemon-user is required")
			}
			du, err := lookupUserEntry(daemonUser)
			if err != nil {
				return fmt.Errorf("daemon user %q does not exist in /etc/passwd", daemonUser)
			}
			if binPath == "" {
				binPath = "/usr/local/bin/aivaultd"
			}
			unit := systemdUnit(du, binPath)
			if dry {
				_, err := io.WriteString(out, unit)
				return err
			}
			if os.Geteuid() != 0 {
				return fmt.Errorf("setup systemd must run as root to write %s (use --dry-run to print the unit)", unitPath)
			}
			if err := os.WriteFile(unitPath, []byte(unit), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(out, "wrote %s\n", unitPath)
			if fi, err := os.Stat("/run/systemd/system"); err == nil && fi.IsDir() {
				r := &setupRunner{out: out}
				if err := r.run("systemctl", "daemon-reload"); err != nil {
					return err
				}
				return r.run("systemctl", "enable", "--now", filepath.Base(unitPath))
			}
			fmt.Fprintln(out, "systemd is not running here; enable it later with: systemctl enable --now aivaultd.service")
			return nil
		},
	}
	cmd.Flags().StringVar(&daemonUser, "daemon-user", "", "the vault/daemon account")
	cmd.Flags().StringVar(&unitPath, "unit-path", "/etc/systemd/system/aivaultd.service", "where to write the unit")
	cmd.Flags().StringVar(&binPath, "binary", "", "path of aivaultd (default /usr/local/bin/aivaultd)")
	cmd.Flags().BoolVar(&dry, "dry-run", false, "print the unit instead of writing it")
	return cmd
}

func systemdUnit(du userEntry, bin string) string {
	vault := filepath.Join(du.home, ".aivault")
	return fmt.Sprintf(`# Written by 'aivault setup systemd'. aivaultd --shared for the vault of %[1]s.
[Unit]
Description=aivault daemon (vault of %[1]s, shared agent socket)
After=local-fs.target

[Service]
Type=simple
User=%[1]s
Group=aivault
ExecStart=%[2]s --shared
Restart=on-failure
RuntimeDirectory=aivault
RuntimeDirectoryMode=2750
RuntimeDirectoryPreserve=yes
UMask=0077
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=%[3]s
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
PrivateNetwork=no
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
ProcSubset=pid
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service landlock_create_ruleset landlock_add_rule landlock_restrict_self seccomp prctl setrlimit prlimit64 mlock
SystemCallErrorNumber=EPERM
CapabilityBoundingSet=
AmbientCapabilities=
KeyringMode=private
RemoveIPC=yes
DevicePolicy=closed
IPAddressDeny=
LimitCORE=0
LimitMEMLOCK=64M
# An env-provider KEK: LoadCredential=aivault-kek:/etc/aivault/kek (never Environment=)

[Install]
WantedBy=multi-user.target
`, du.name, bin, vault)
}

// installBinary copies the running binary to PREFIX/bin and adds symlinks.
func installBinary(cc *cliCtx, prefix string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	data, err := os.ReadFile(self)
	if err != nil {
		return err
	}
	dir := filepath.Join(prefix, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dst := filepath.Join(dir, "aivault")
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		_ = os.Chown(tmp, 0, 0)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	for _, name := range []string{"aivaultd", "setup"} {
		l := filepath.Join(dir, name)
		_ = os.Remove(l)
		if err := os.Symlink("aivault", l); err != nil {
			return err
		}
	}
	fmt.Fprintf(cc.stdout, "installed %s with aivaultd and setup symlinks\n", dst)
	return nil
}

// deploymentChecks is the seed's checklist, checked against the agent's
// actual uid and groups.
func deploymentChecks(agent string) []doctorCheck {
	var out []doctorCheck
	au, err := lookupUserEntry(agent)
	if err != nil {
		return []doctorCheck{{Name: "agent user", Result: "FAIL", Detail: fmt.Sprintf("%s is not in /etc/passwd", agent)}}
	}
	agentGroups := map[int]bool{au.gid: true}
	if u, err := user.Lookup(au.name); err == nil {
		ids, _ := u.GroupIds()
		for _, id := range ids {
			if n, err := strconv.Atoi(id); err == nil {
				agentGroups[n] = true
			}
		}
	}
	readable := func(path string) (bool, string) {
		fi, err := os.Stat(path)
		if err != nil {
			return false, ""
		}
		st := fi.Sys().(*syscall.Stat_t)
		m := fi.Mode().Perm()
		switch {
		case int(st.Uid) == au.uid:
			return true, "owned by the agent"
		case agentGroups[int(st.Gid)] && m&0o040 != 0:
			return true, fmt.Sprintf("group-readable (mode %04o) by a group the agent is in", m)
		case m&0o004 != 0:
			return true, fmt.Sprintf("world-readable (mode %04o)", m)
		}
		return false, ""
	}
	lay, _ := resolveLayout(os.Getenv)
	for _, p := range []struct{ path, what string }{{lay.Dir, "vault directory"}, {lay.KeyFile, "key file"}, {filepath.Dir(lay.KeyFile), "key directory"}} {
		if bad, why := readable(p.path); bad {
			out = append(out, doctorCheck{Name: "agent access", Result: "FAIL", Detail: fmt.Sprintf("%s %s is %s", p.what, p.path, why), Fix: "chmod go-rwx " + p.path})
		} else {
			out = append(out, doctorCheck{Name: "agent access", Result: "PASS", Detail: fmt.Sprintf("%s is not readable by %s", p.what, au.name)})
		}
	}
	if fi, err := os.Stat(sharedSocketDir); err == nil {
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != 0o750 || fi.Mode()&os.ModeSetgid == 0 || int(st.Uid) != os.Getuid() {
			out = append(out, doctorCheck{Name: "socket dir", Result: "FAIL", Detail: fmt.Sprintf("%s: mode %v owner uid %d", sharedSocketDir, fi.Mode(), st.Uid), Fix: "sudo aivault setup agent-access --agent-user " + au.name})
		} else {
			out = append(out, doctorCheck{Name: "socket dir", Result: "PASS", Detail: sharedSocketDir + " is 2750 and owned by the daemon user"})
		}
	} else {
		out = append(out, doctorCheck{Name: "socket dir", Result: "WARN", Detail: sharedSocketDir + " does not exist", Fix: "sudo aivault setup agent-access --agent-user " + au.name})
	}
	if os.Getuid() == au.uid {
		out = append(out, doctorCheck{Name: "daemon user", Result: "FAIL", Detail: "this check runs as the agent user", Fix: "run the daemon and doctor as the vault user"})
	}
	if self, err := os.Executable(); err == nil {
		if fi, err := os.Stat(self); err == nil {
			st := fi.Sys().(*syscall.Stat_t)
			if st.Uid != 0 || fi.Mode().Perm()&0o022 != 0 {
				out = append(out, doctorCheck{Name: "binary", Result: "WARN", Detail: fmt.Sprintf("%s is owned by uid %d mode %04o", self, st.Uid, fi.Mode().Perm()), Fix: "sudo aivault install"})
			} else {
				out = append(out, doctorCheck{Name: "binary", Result: "PASS", Detail: self + " is root-owned and not writable by others"})
			}
		}
	}
	return out
}
