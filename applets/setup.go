package applets

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aivault/aivault/crypt"
	"github.com/aivault/aivault/ipc"
	"github.com/aivault/aivault/policy"
	"github.com/aivault/aivault/sandbox"
	"github.com/spf13/cobra"
)

// sharedGroup is the group of the shared socket: agents are its members.
const sharedGroup = "aivault"

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

// groups returns the user's primary and supplementary gids as /etc/group
// lists them (the static build reads /etc/passwd and /etc/group only).
func (u userEntry) groups() map[int]bool {
	gs := map[int]bool{u.gid: true}
	if uu, err := user.Lookup(u.name); err == nil {
		ids, _ := uu.GroupIds()
		for _, id := range ids {
			if n, err := strconv.Atoi(id); err == nil {
				gs[n] = true
			}
		}
	}
	return gs
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
  sudo aivault setup systemd --daemon-user aivault
  sudo -u aivault aivault doctor --agent-user agent`,
	}
	if applet {
		cmd.Version = versionString()
	}
	cmd.AddCommand(newAgentAccessCmd(), newSystemdCmd())
	return cmd
}

// setupRunner runs (or, with dry, only prints) each action.
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
		return &policy.Error{Class: "SetupToolMissing", Msg: fmt.Sprintf("%s is not installed (needed for: %s %s)", name, name, strings.Join(args, " ")),
			Hint: "install the 'passwd' package (Debian; 'shadow-utils' elsewhere), or do this step by hand and run setup again"}
	}
	cmd := exec.Command(path, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = r.out, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// done reports a step that needs nothing (idempotent re-runs say so).
func (r *setupRunner) done(format string, args ...any) {
	fmt.Fprintf(r.out, "= "+format+"\n", args...)
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
		Long: `Let an agent user reach the shared daemon socket. Root only (--dry-run
prints the actions for anyone). Creates the group aivault if missing, adds the
daemon user and the agent user to it, creates /var/run/aivault (owner the
daemon user, group aivault, mode 2750) and /etc/tmpfiles.d/aivault.conf so the
directory comes back after a reboot. Running it again changes nothing.
--remove takes one agent user out of the group again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			r := &setupRunner{dry: dry, out: out}
			if agentUser == "" {
				return usagef("--agent-user is required")
			}
			if !dry && os.Geteuid() != 0 {
				return &policy.Error{Class: policy.ClassAccessDenied, Msg: "setup agent-access must run as root", Hint: "sudo aivault setup agent-access --agent-user " + agentUser + " --daemon-user <vault user> (or --dry-run to see the actions)"}
			}
			au, err := lookupUserEntry(agentUser)
			if err != nil {
				return fmt.Errorf("agent user %q does not exist in /etc/passwd (create it first, e.g. useradd -m %s)", agentUser, agentUser)
			}
			if au.uid == 0 {
				return usagef("the agent user must not be root")
			}
			if remove {
				if inGroupFile(au.name, sharedGroup) {
					if err := r.run("gpasswd", "-d", au.name, sharedGroup); err != nil {
						return err
					}
				} else {
					r.done("%s is not in group %s", au.name, sharedGroup)
				}
				fmt.Fprintf(out, "%s can no longer reach %s (from its next login; end its running sessions to be sure)\n", au.name, sharedSocketPath)
				return nil
			}
			if daemonUser == "" {
				daemonUser = os.Getenv("SUDO_USER")
			}
			if daemonUser == "" {
				return usagef("--daemon-user is required (it defaults to $SUDO_USER, which is not set)")
			}
			du, err := lookupUserEntry(daemonUser)
			if err != nil {
				return fmt.Errorf("daemon user %q does not exist in /etc/passwd (create it first, e.g. useradd -m %s)", daemonUser, daemonUser)
			}
			if du.uid == 0 {
				return usagef("the daemon user must be a dedicated account, not root")
			}
			if au.uid == du.uid {
				return usagef("the agent user and the daemon user must be different accounts")
			}
			gid := -1
			if g, gerr := user.LookupGroup(sharedGroup); gerr != nil {
				if err := r.run("groupadd", "--system", sharedGroup); err != nil {
					return err
				}
				if g, gerr = user.LookupGroup(sharedGroup); gerr == nil {
					gid, _ = strconv.Atoi(g.Gid)
				}
			} else {
				gid, _ = strconv.Atoi(g.Gid)
				r.done("group %s exists (gid %d)", sharedGroup, gid)
				if gid == du.gid {
					// useradd -U (Debian's default) made it the vault user's own
					// group: anything the vault user makes group-readable is then
					// readable by every agent. aivault keeps its files 0600/0700;
					// doctor --agent-user checks every file with the agent's ids.
					fmt.Fprintf(cmd.ErrOrStderr(), "aivault: warning: group %s is %s's own primary group: every file %s makes group-readable is readable by the agents; aivault keeps the vault 0700 and 'aivault doctor --agent-user %s' checks it\n", sharedGroup, du.name, du.name, au.name)
				}
			}
			for _, name := range []string{du.name, au.name} {
				if inGroupFile(name, sharedGroup) {
					r.done("%s is in group %s", name, sharedGroup)
					continue
				}
				if err := r.run("usermod", "-a", "-G", sharedGroup, name); err != nil {
					return err
				}
			}
			if err := ensureSocketDir(r, du, gid); err != nil {
				return err
			}
			line := fmt.Sprintf("d %s 2750 %s %s -\n", sharedSocketDir, du.name, sharedGroup)
			content := "# aivault shared socket directory (written by 'aivault setup agent-access')\n" + line
			if b, err := os.ReadFile(tmpfilesPath); err == nil && string(b) == content {
				r.done("%s is up to date", tmpfilesPath)
			} else {
				fmt.Fprintf(out, "+ write %s: %s", tmpfilesPath, line)
				if !dry {
					if err := os.MkdirAll(filepath.Dir(tmpfilesPath), 0o755); err != nil {
						return err
					}
					if err := os.WriteFile(tmpfilesPath+".tmp", []byte(content), 0o644); err != nil {
						return err
					}
					if err := os.Rename(tmpfilesPath+".tmp", tmpfilesPath); err != nil {
						return err
					}
				}
			}
			fmt.Fprintf(out, `
next steps:
  1. store keys, as %[1]s:         sudo -u %[1]s aivault secrets create --name OPENAI_API_KEY
  2. start the daemon, as %[1]s:   sudo -u %[1]s aivaultd --shared   (or: sudo aivault setup systemd --daemon-user %[1]s)
  3. as %[2]s (new login), invoke:  aivault invoke openai/chat-completions --method POST --path /v1/chat/completions --body '{…}'
  4. check the deployment:          sudo -u %[1]s aivault doctor --agent-user %[2]s
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

// ensureSocketDir creates /var/run/aivault owned by the daemon user, group
// aivault, mode 2750, or fixes an existing one (never through a symlink).
func ensureSocketDir(r *setupRunner, du userEntry, gid int) error {
	fi, err := os.Lstat(sharedSocketDir)
	switch {
	case err == nil && !fi.IsDir():
		return fmt.Errorf("%s exists and is not a directory (a symlink?); remove it and run this again", sharedSocketDir)
	case err == nil:
		st := fi.Sys().(*syscall.Stat_t)
		if int(st.Uid) == du.uid && int(st.Gid) == gid && fi.Mode().Perm() == 0o750 && fi.Mode()&os.ModeSetgid != 0 {
			r.done("%s is 2750 %s:%s", sharedSocketDir, du.name, sharedGroup)
			return nil
		}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	fmt.Fprintf(r.out, "+ install -d -o %s -g %s -m 2750 %s\n", du.name, sharedGroup, sharedSocketDir)
	if r.dry {
		return nil
	}
	if err := os.Mkdir(sharedSocketDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	if err := os.Lchown(sharedSocketDir, du.uid, gid); err != nil {
		return err
	}
	return os.Chmod(sharedSocketDir, 0o750|os.ModeSetgid)
}

func newSystemdCmd() *cobra.Command {
	var daemonUser, unitPath, binPath, kekFile string
	var dry bool
	cmd := &cobra.Command{
		Use:   "systemd --daemon-user U [--dry-run] [--unit-path P] [--binary B] [--env-kek-file F]",
		Short: "Write (and enable, when systemd runs) a hardened systemd unit for 'aivaultd --shared'",
		Long: `Write a hardened systemd unit for 'aivaultd --shared' running as the vault
user (systemd-analyze security --offline=true scores it below 2.0), and enable
it when systemd is running. --dry-run prints it. For an env-provider vault,
--env-kek-file F hands the base64 KEK in F (root-owned, 0600) to the daemon as
the systemd credential aivault-kek (LoadCredential=, never Environment=): the
daemon reads $CREDENTIALS_DIRECTORY/aivault-kek when the vault's variable is
unset. The vault must exist before the unit starts (its directory is the only
writable path).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if daemonUser == "" {
				return usagef("--daemon-user is required")
			}
			du, err := lookupUserEntry(daemonUser)
			if err != nil {
				return fmt.Errorf("daemon user %q does not exist in /etc/passwd", daemonUser)
			}
			if du.uid == 0 {
				return usagef("the daemon user must be a dedicated account, not root")
			}
			if binPath == "" {
				binPath = "/usr/local/bin/aivaultd"
			}
			if !filepath.IsAbs(binPath) || (kekFile != "" && !filepath.IsAbs(kekFile)) {
				return usagef("--binary and --env-kek-file need absolute paths")
			}
			unit := systemdUnit(du, binPath, kekFile)
			if dry {
				_, err := io.WriteString(out, unit)
				return err
			}
			if err := os.WriteFile(unitPath, []byte(unit), 0o644); err != nil {
				if errors.Is(err, fs.ErrPermission) {
					return fmt.Errorf("cannot write %s: %w (run as root, or use --dry-run to print the unit)", unitPath, err)
				}
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
			fmt.Fprintf(out, "systemd is not running here; enable it later with: systemctl daemon-reload && systemctl enable --now %s\n", filepath.Base(unitPath))
			return nil
		},
	}
	cmd.Flags().StringVar(&daemonUser, "daemon-user", "", "the vault/daemon account")
	cmd.Flags().StringVar(&unitPath, "unit-path", "/etc/systemd/system/aivaultd.service", "where to write the unit")
	cmd.Flags().StringVar(&binPath, "binary", "", "absolute path of aivaultd (default /usr/local/bin/aivaultd)")
	cmd.Flags().StringVar(&kekFile, "env-kek-file", "", "env-provider vault: file holding the base64 KEK, passed as the credential aivault-kek")
	cmd.Flags().BoolVar(&dry, "dry-run", false, "print the unit instead of writing it")
	return cmd
}

// systemdUnit is the hardened unit. Deliberately absent: PrivateUsers= and
// DynamicUser= (they would remap the peers' uids that SO_PEERCRED reports and
// break the group-owned socket), PrivateNetwork= and IPAddressDeny= (the
// daemon connects to public APIs; it checks every resolved address itself).
func systemdUnit(du userEntry, bin, kekFile string) string {
	vault := filepath.Join(du.home, ".aivault")
	cred := "# Env-provider vault: LoadCredential=aivault-kek:/etc/aivault/kek (never Environment=;\n# the daemon reads $CREDENTIALS_DIRECTORY/aivault-kek when the vault's variable is unset)."
	if kekFile != "" {
		cred = "LoadCredential=aivault-kek:" + kekFile
	}
	return fmt.Sprintf(`# Written by 'aivault setup systemd': aivaultd --shared for the vault of %[1]s.
[Unit]
Description=aivault daemon (vault of %[1]s, shared agent socket)
After=local-fs.target network-online.target
Wants=network-online.target

[Service]
Type=simple
User=%[1]s
Group=%[4]s
ExecStart=%[2]s --shared
Restart=on-failure
RuntimeDirectory=aivault
RuntimeDirectoryMode=2750
RuntimeDirectoryPreserve=yes
UMask=0077
%[5]s
# Files: the OS read-only, homes hidden except the vault's own directory (create the vault
# first: sudo -u %[1]s aivault init, or a first secrets create).
ProtectSystem=strict
ProtectHome=tmpfs
BindPaths=%[3]s
PrivateTmp=yes
PrivateDevices=yes
PrivateMounts=yes
DevicePolicy=closed
ProtectProc=invisible
ProcSubset=pid
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
# Privileges: none. No PrivateUsers=/DynamicUser=: peers' uids and the socket's group must stay real.
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
RestrictSUIDSGID=yes
RestrictNamespaces=yes
RestrictRealtime=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
KeyringMode=private
RemoveIPC=yes
# The agent socket and HTTPS to public APIs.
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
# The workers lock themselves down further (Landlock, seccomp, rlimits, prctl).
SystemCallArchitectures=native
SystemCallFilter=@system-service landlock_create_ruleset landlock_add_rule landlock_restrict_self seccomp
SystemCallFilter=prctl setrlimit prlimit64 mlock mlock2 munlock
SystemCallErrorNumber=EPERM
LimitCORE=0
# memguard locks its keys in memory.
LimitMEMLOCK=64M

[Install]
WantedBy=multi-user.target
`, du.name, bin, vault, sharedGroup, cred)
}

// credentialKEK is where an env-provider KEK arrives under systemd
// (LoadCredential=aivault-kek:…): $CREDENTIALS_DIRECTORY/aivault-kek.
const credentialKEK = "aivault-kek"

// envKeyLookup reads an env-provider KEK: the vault's variable, or, when it
// is unset, the systemd credential file $CREDENTIALS_DIRECTORY/aivault-kek.
func envKeyLookup(name string) (string, bool) {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v, true
	}
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if dir == "" || !filepath.IsAbs(dir) {
		return "", false
	}
	f, err := os.OpenFile(filepath.Join(dir, credentialKEK), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return "", false
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		clear(b)
		return "", false
	}
	s := strings.TrimSpace(string(b))
	clear(b)
	return s, s != ""
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

// accessFor decides, as the kernel's mode bits would (ACLs aside), whether a
// user with uid and groups may open path with want (4 read, 2 write, 1
// search/execute): every directory on the way needs search permission.
func accessFor(path string, uid int, groups map[int]bool, want uint32) bool {
	if uid == 0 {
		return true
	}
	bits := func(fi os.FileInfo) uint32 {
		st := fi.Sys().(*syscall.Stat_t)
		m := uint32(fi.Mode().Perm())
		switch {
		case int(st.Uid) == uid:
			return m >> 6 & 7
		case groups[int(st.Gid)]:
			return m >> 3 & 7
		}
		return m & 7
	}
	clean := filepath.Clean(path)
	for dir := filepath.Dir(clean); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil || bits(fi)&1 == 0 {
			return false
		}
		if dir == "/" || dir == "." {
			break
		}
	}
	fi, err := os.Stat(clean)
	return err == nil && bits(fi)&want == want
}

// deploymentChecks is the seed's deployment checklist, run by the vault
// user ('aivault doctor --agent-user U'), checked against the agent's uid and
// groups as /etc/passwd and /etc/group give them.
func deploymentChecks(agent string) []doctorCheck {
	var out []doctorCheck
	add := func(name, result, detail, fix string) {
		out = append(out, doctorCheck{Name: name, Result: result, Detail: detail, Fix: fix})
	}
	au, err := lookupUserEntry(agent)
	if err != nil {
		return []doctorCheck{{Name: "agent user", Result: "FAIL", Detail: fmt.Sprintf("%s is not in /etc/passwd", agent), Fix: "useradd -m " + agent}}
	}
	me := os.Getuid()
	setupFix := fmt.Sprintf("sudo aivault setup agent-access --agent-user %s --daemon-user <vault user>", au.name)
	if me == au.uid || au.uid == 0 {
		add("agent user", "FAIL", fmt.Sprintf("%s (uid %d) is the vault user or root: agents must be another account", au.name, au.uid), "run the vault and the daemon as a dedicated user, the agent as another")
		return out
	}
	ag := au.groups()
	sg := -1
	if g, err := user.LookupGroup(sharedGroup); err == nil {
		sg, _ = strconv.Atoi(g.Gid)
	}
	if sg >= 0 && ag[sg] {
		add("agent user", "PASS", fmt.Sprintf("%s (uid %d) is in group %s", au.name, au.uid, sharedGroup), "")
	} else {
		add("agent user", "FAIL", fmt.Sprintf("%s is not in group %s: it cannot reach %s", au.name, sharedGroup, sharedSocketPath), setupFix)
	}

	// The vault and key files: owned by the vault user, closed to the agent.
	lay, _ := resolveLayout(os.Getenv)
	if lay.FromEnv {
		add("environment", "WARN", "AIVAULT_DIR is set for this check: the daemon's vault is the one its own environment names", "unset AIVAULT_DIR where the vault user runs the daemon")
	}
	paths := []struct {
		path, what string
		want       uint32
	}{{lay.Dir, "vault directory", 4}, {lay.Dir, "vault directory", 1}}
	if _, err := os.Stat(lay.KeyFile); err == nil {
		paths = append(paths, struct {
			path, what string
			want       uint32
		}{lay.KeyFile, "key file", 4}, struct {
			path, what string
			want       uint32
		}{filepath.Dir(lay.KeyFile), "key directory", 4})
	}
	seen := map[string]bool{}
	for _, p := range paths {
		fi, err := os.Lstat(p.path)
		if err != nil {
			add("vault files", "FAIL", fmt.Sprintf("%s %s: %v", p.what, p.path, err), "")
			continue
		}
		if !seen[p.path] {
			seen[p.path] = true
			st := fi.Sys().(*syscall.Stat_t)
			switch {
			case fi.Mode()&os.ModeSymlink != 0:
				add("vault files", "FAIL", fmt.Sprintf("%s %s is a symlink", p.what, p.path), "replace it with the real directory")
			case int(st.Uid) != me:
				add("vault files", "FAIL", fmt.Sprintf("%s %s is owned by uid %d, not by the vault user (uid %d)", p.what, p.path, st.Uid, me), fmt.Sprintf("chown -R %d %s", me, p.path))
			}
		}
		verb := map[uint32]string{4: "read", 1: "enter"}[p.want]
		if accessFor(p.path, au.uid, ag, p.want) {
			add("agent access", "FAIL", fmt.Sprintf("%s can %s the %s %s", au.name, verb, p.what, p.path), "chmod go-rwx "+p.path)
		} else {
			add("agent access", "PASS", fmt.Sprintf("%s cannot %s the %s %s", au.name, verb, p.what, p.path), "")
		}
	}
	// Nothing under the vault and key directories is group- or world-
	// accessible: the agent shares group aivault, often the vault user's own.
	var open []string
	for _, root := range []string{lay.Dir, filepath.Dir(lay.KeyFile)} {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if fi, err := d.Info(); err == nil && fi.Mode()&os.ModeSymlink == 0 && fi.Mode().Perm()&0o077 != 0 {
				open = append(open, fmt.Sprintf("%s (%04o)", p, fi.Mode().Perm()))
			}
			return nil
		})
	}
	if len(open) > 0 {
		if len(open) > 5 {
			open = append(open[:5], "…")
		}
		add("file modes", "FAIL", "group- or world-accessible: "+strings.Join(open, ", "), fmt.Sprintf("chmod -R go-rwx %s %s", lay.Dir, filepath.Dir(lay.KeyFile)))
	} else {
		add("file modes", "PASS", "nothing under the vault and key directories is group- or world-accessible", "")
	}

	// The shared socket directory and socket.
	if fi, err := os.Lstat(sharedSocketDir); err != nil {
		add("socket dir", "FAIL", sharedSocketDir+" does not exist", setupFix)
	} else {
		st := fi.Sys().(*syscall.Stat_t)
		var bad []string
		if !fi.IsDir() {
			bad = append(bad, "not a directory")
		}
		if int(st.Uid) != me {
			bad = append(bad, fmt.Sprintf("owner uid %d, not the vault user (uid %d)", st.Uid, me))
		}
		if int(st.Gid) != sg {
			bad = append(bad, fmt.Sprintf("group gid %d, not %s", st.Gid, sharedGroup))
		}
		if fi.Mode().Perm() != 0o750 || fi.Mode()&os.ModeSetgid == 0 {
			bad = append(bad, fmt.Sprintf("mode %v, not 2750 (drwxr-s---)", fi.Mode()))
		}
		if len(bad) > 0 {
			add("socket dir", "FAIL", sharedSocketDir+": "+strings.Join(bad, "; "), setupFix)
		} else {
			add("socket dir", "PASS", sharedSocketDir+" is 2750, owned by the vault user, group "+sharedGroup, "")
		}
	}
	if _, err := os.Stat(tmpfilesPath); err != nil {
		add("socket dir", "WARN", tmpfilesPath+" is missing: "+sharedSocketDir+" will not come back after a reboot", setupFix)
	}
	daemonPID := 0
	if fi, err := os.Lstat(sharedSocketPath); err != nil {
		add("daemon", "WARN", "the shared daemon is not running ("+sharedSocketPath+" does not exist)", "start it as the vault user: aivaultd --shared (or its systemd unit)")
	} else {
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 || int(st.Gid) != sg || int(st.Uid) != me {
			add("socket", "FAIL", fmt.Sprintf("%s: mode %v, uid %d, gid %d (want a socket 0660, the vault user's, group %s)", sharedSocketPath, fi.Mode(), st.Uid, st.Gid, sharedGroup), "restart the daemon as the vault user: aivault restart")
		} else {
			add("socket", "PASS", sharedSocketPath+" is 0660, group "+sharedGroup, "")
		}
		pc, err := socketPeer(sharedSocketPath)
		switch {
		case err != nil:
			add("daemon", "WARN", "the shared daemon is not answering on "+sharedSocketPath+": "+err.Error(), "start it as the vault user: aivaultd --shared")
		case pc.UID == au.uid:
			add("daemon", "FAIL", fmt.Sprintf("the shared daemon (pid %d) runs as the agent user %s", pc.PID, au.name), "stop it; run it as the vault user")
		case pc.UID != me:
			add("daemon", "FAIL", fmt.Sprintf("the shared daemon (pid %d) runs as uid %d, not as the vault user (uid %d)", pc.PID, pc.UID, me), "run it as the vault user")
		default:
			daemonPID = pc.PID
			add("daemon", "PASS", fmt.Sprintf("the shared daemon (pid %d) runs as the vault user, not as %s", pc.PID, au.name), "")
		}
	}

	// AIVAULT_DIR in an environment the agent (or everyone) gets.
	envFiles := []string{"/etc/environment", "/etc/profile", "/etc/bash.bashrc", "/etc/security/pam_env.conf"}
	for _, glob := range []string{"/etc/profile.d/*", "/etc/environment.d/*"} {
		m, _ := filepath.Glob(glob)
		envFiles = append(envFiles, m...)
	}
	for _, f := range []string{".profile", ".bashrc", ".bash_profile", ".pam_environment", ".zshenv"} {
		envFiles = append(envFiles, filepath.Join(au.home, f))
	}
	var setIn []string
	for _, f := range envFiles {
		if fileMentions(f, "AIVAULT_DIR") {
			setIn = append(setIn, f)
		}
	}
	if len(setIn) > 0 {
		add("environment", "WARN", "AIVAULT_DIR is set in "+strings.Join(setIn, ", ")+": the agent's CLI should find the shared daemon by itself", "remove AIVAULT_DIR from shared environment files")
	} else {
		add("environment", "PASS", "AIVAULT_DIR is not set in the shared environment files (the agent's own ones unreadable to this user are not checked)", "")
	}

	// Sandbox, memlock, binary.
	if sup := sandbox.Support(); len(sup.Problems) > 0 {
		add("sandbox", "FAIL", strings.Join(sup.Problems, "; "), "a kernel with Landlock ABI >= 4 and seccomp")
	} else {
		add("sandbox", "PASS", fmt.Sprintf("Landlock ABI %d, seccomp available", sup.LandlockABI), "")
	}
	if err := crypt.CheckMemlock(); err != nil {
		add("memlock", "FAIL", "this process: "+err.Error(), fmt.Sprintf("LimitMEMLOCK=%dK (systemd) or a memlock line in /etc/security/limits.conf", crypt.MinMemlock>>10))
	} else if daemonPID > 0 {
		if lim, ok := procMemlock(daemonPID); ok && lim < crypt.MinMemlock {
			add("memlock", "FAIL", fmt.Sprintf("the daemon's RLIMIT_MEMLOCK is %d bytes, below %d", lim, crypt.MinMemlock), fmt.Sprintf("LimitMEMLOCK=%dK in its unit", crypt.MinMemlock>>10))
		} else {
			add("memlock", "PASS", "RLIMIT_MEMLOCK is enough for locked key memory", "")
		}
	} else {
		add("memlock", "PASS", "RLIMIT_MEMLOCK is enough for locked key memory", "")
	}
	if self, err := os.Executable(); err == nil {
		for _, p := range []string{self, filepath.Dir(self)} {
			fi, err := os.Stat(p)
			if err != nil {
				continue
			}
			st := fi.Sys().(*syscall.Stat_t)
			if st.Uid != 0 || fi.Mode().Perm()&0o022 != 0 {
				add("binary", "FAIL", fmt.Sprintf("%s is owned by uid %d, mode %04o: whoever can replace it controls the vault", p, st.Uid, fi.Mode().Perm()), "sudo aivault install --prefix /usr/local")
			} else {
				add("binary", "PASS", p+" is root-owned and not writable by others", "")
			}
		}
	}
	return out
}

// socketPeer connects to a unix socket and returns the listener's
// credentials (SO_PEERCRED on the client side), then hangs up.
func socketPeer(path string) (*ipc.PeerCred, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return ipc.ReadPeerCred(c.(*net.UnixConn))
}

// procMemlock reads the soft "Max locked memory" of a process
// (/proc/PID/limits is world-readable even for a non-dumpable process).
func procMemlock(pid int) (uint64, bool) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "limits"))
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Max locked memory")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return 0, false
		}
		if fields[0] == "unlimited" {
			return ^uint64(0), true
		}
		n, err := strconv.ParseUint(fields[0], 10, 64)
		return n, err == nil
	}
	return 0, false
}

func fileMentions(path, word string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if l := strings.TrimSpace(line); !strings.HasPrefix(l, "#") && strings.Contains(l, word) {
			return true
		}
	}
	return false
}
