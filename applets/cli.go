package applets

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aivault/aivault/audit"
	"github.com/aivault/aivault/crypt"
	"github.com/aivault/aivault/ipc"
	"github.com/aivault/aivault/policy"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

func auditEvent(kind string, detail map[string]string) audit.Event {
	return audit.Event{Kind: kind, Decision: "allow", Detail: detail}
}

// newCC builds the per-command context.
func newCC(cmd *cobra.Command) *cliCtx {
	cc := &cliCtx{ctx: cmd.Context(), stdout: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr(), stdin: cmd.InOrStdin()}
	cc.passphrase = func() ([]byte, error) {
		// Scripts prove a passphrase vault's key with a file only the
		// operator can read (read here, by the client, as the caller).
		if f := os.Getenv("AIVAULT_PASSPHRASE_FILE"); f != "" {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("AIVAULT_PASSPHRASE_FILE: %w", err)
			}
			return bytes.TrimRight(b, "\r\n"), nil
		}
		pw, err := promptSecret(cc, "Vault passphrase: ")
		if errors.Is(err, crypt.ErrVaultLocked) {
			return nil, fmt.Errorf("%w: this vault uses a passphrase and there is no terminal to ask for it; set AIVAULT_PASSPHRASE_FILE=F for operator commands, and hand the key to the daemon with 'aivault unlock --passphrase-file F'", err)
		}
		return pw, err
	}
	return cc
}

func isTTY(r io.Reader) bool {
	f, ok := r.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// promptSecret reads a secret without echo from the terminal.
func promptSecret(cc *cliCtx, prompt string) ([]byte, error) {
	f, ok := cc.stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, crypt.ErrVaultLocked
	}
	// Echo goes off before the prompt appears, so that nothing typed as soon
	// as the prompt shows (or pasted) is ever echoed; ReadPassword then reads
	// with echo off and the terminal's state is restored afterwards.
	fd := int(f.Fd())
	if old, err := unix.IoctlGetTermios(fd, unix.TCGETS); err == nil {
		quiet := *old
		quiet.Lflag &^= unix.ECHO
		if unix.IoctlSetTermios(fd, unix.TCSETS, &quiet) == nil {
			defer func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }()
		}
	}
	fmt.Fprint(cc.stderr, prompt)
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(cc.stderr)
	if err != nil {
		return nil, fmt.Errorf("read from terminal: %w", err)
	}
	return b, nil
}

const psWarning = "a value on the command line is visible to other users through ps and lands in shell history; prefer the prompt (omit %s), --%s-file, or stdin"

// readValue gets a secret value from --value, --value-file (or -), the
// terminal prompt, or stdin.
func readValue(cc *cliCtx, flagVal string, flagSet bool, file string, what string) ([]byte, error) {
	switch {
	case flagSet:
		cc.warnf(psWarning, "--"+what, what)
		return []byte(flagVal), nil
	case file == "-":
		return readAllTrim(cc.stdin)
	case file != "":
		f, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("--%s-file: %w", what, err)
		}
		defer f.Close()
		return readAllTrim(f)
	case isTTY(cc.stdin):
		v, err := promptSecret(cc, "Secret value (not shown): ")
		if err != nil {
			return nil, err
		}
		return v, nil
	default:
		return readAllTrim(cc.stdin)
	}
}

func readAllTrim(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, 1<<20+1))
	if err != nil {
		return nil, err
	}
	if len(b) > 1<<20 {
		clear(b)
		return nil, fmt.Errorf("the value is larger than 1 MiB")
	}
	out := bytes.TrimRight(b, "\r\n")
	return out, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newRootCmd builds the CLI. For the invoke commands (what agents run, once
// per call) only they are attached: building every command and its flags
// was a tenth of such a call's CPU. Anything else, help and completion
// included, gets the whole tree.
func newRootCmd(args ...string) *cobra.Command {
	root := newBareRoot()
	if len(args) > 0 && invokeCmdNames[args[0]] {
		for _, c := range newInvokeCmds("") {
			root.AddCommand(c)
		}
		return root
	}
	root.AddCommand(
		newVersionCmd(), newInitCmd(), newStatusCmd(), newDoctorCmd(), newSecretsCmd(), newCredentialCmd(),
		newCapabilityCmd(), newAccessCmd(), newAuditCmd(), newUnlockCmd(), newLockCmd(), newRotateMasterCmd(),
		newRestartCmd(), newDaemonCmd(false), newSetupCmd(false), newInstallCmd(),
	)
	for _, c := range newInvokeCmds("") {
		root.AddCommand(c)
	}
	return root
}

// invokeCmdNames are the names (and aliases) of the top-level invoke commands.
var invokeCmdNames = map[string]bool{"invoke": true, "json": true, "markdown": true, "md": true}

func newBareRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "aivault",
		Short: "A local secrets vault and policy-enforcing proxy for AI agents",
		Long: `aivault keeps API keys encrypted in a local vault and lets untrusted code
(AI agents, skills, generated scripts) call third-party HTTP APIs through
approved capabilities, without ever holding the keys.

  aivault secrets create --name OPENAI_API_KEY     store a key (prompted, not echoed)
  aivault capability list                          what is ready to invoke
  aivault invoke openai/chat-completions --body '{…}'`,
		Version: versionString(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	return root
}

// ---- init / status ----

func newInitCmd() *cobra.Command {
	var provider, passphrase, passFile, envVar string
	var argonMiB, argonTime uint32
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the vault with a key provider: file (default), passphrase or env",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			lay, err := resolveLayout(os.Getenv)
			if err != nil {
				return err
			}
			if agentAccount() {
				return &policy.Error{Class: "NoVault", Msg: "this account is an agent account (group aivault) and never owns a vault", Hint: "initialise the vault as the vault user"}
			}
			// Refuse an existing vault before asking for a passphrase.
			if ok, err := crypt.Exists(lay.Paths); err != nil {
				return mapCryptErr(err)
			} else if ok {
				return mapCryptErr(fmt.Errorf("%w: %s", crypt.ErrVaultExists, lay.Dir))
			}
			o := crypt.InitOptions{Provider: crypt.ProviderKind(provider), EnvVar: envVar}
			switch o.Provider {
			case crypt.ProviderFile:
			case crypt.ProviderPassphrase:
				pw, err := readPassphraseFlags(cc, cmd, passphrase, passFile, true)
				if err != nil {
					return err
				}
				defer clear(pw)
				o.Passphrase = pw
				if argonMiB > 0 || argonTime > 0 {
					o.Argon = &crypt.ArgonParams{MemoryKiB: max(argonMiB, 64) * 1024, Time: max(argonTime, 2), Threads: 1}
				}
			case crypt.ProviderEnv:
				if envVar == "" {
					return usagef("--provider env needs --env-var NAME (the variable holding a base64 32-byte key)")
				}
			default:
				return usagef("unknown --provider %q: use file, passphrase or env", provider)
			}
			if err := crypt.CheckMemlock(); err != nil {
				return mapCryptErr(err)
			}
			v, err := crypt.Init(lay.Paths, o)
			if err != nil {
				return mapCryptErr(err)
			}
			fmt.Fprintf(cc.stdout, "initialised a %s-key vault at %s\n", v.Provider(), lay.Dir)
			if v.Provider() == crypt.ProviderFile {
				fmt.Fprintf(cc.stdout, "key file: %s (0600; keep it off backups that others can read)\n", lay.KeyFile)
			}
			// Record the init in the audit chain when the key is at hand.
			if v.Provider() != crypt.ProviderPassphrase {
				if k, err := v.Unlock(crypt.KeySource{Lookup: os.LookupEnv}); err == nil {
					eng, err := newEngine(lay, v, nil, cc.stderr)
					if err == nil {
						eng.setKey(k, 0)
						eng.record(selfPeer(), auditEvent("vault.init", map[string]string{"provider": string(v.Provider())}))
						eng.close()
					}
				}
			} else {
				k, err := v.Unlock(crypt.KeySource{Passphrase: o.Passphrase})
				if err == nil {
					eng, err := newEngine(lay, v, nil, cc.stderr)
					if err == nil {
						eng.setKey(k, 0)
						eng.record(selfPeer(), auditEvent("vault.init", map[string]string{"provider": string(v.Provider())}))
						eng.close()
					}
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&provider, "provider", "file", "key provider: file, passphrase or env")
	f.StringVar(&passphrase, "passphrase", "", "passphrase (visible in ps; prefer the prompt or --passphrase-file)")
	f.StringVar(&passFile, "passphrase-file", "", "read the passphrase from this file ('-' for stdin)")
	f.StringVar(&envVar, "env-var", "", "with --provider env: the variable that holds the base64 key")
	f.Uint32Var(&argonMiB, "argon-memory-mib", 0, "Argon2id memory in MiB (minimum and default 64)")
	f.Uint32Var(&argonTime, "argon-time", 0, "Argon2id passes (minimum and default 2)")
	_ = f.MarkHidden("argon-memory-mib")
	_ = f.MarkHidden("argon-time")
	return cmd
}

func readPassphraseFlags(cc *cliCtx, cmd *cobra.Command, passphrase, passFile string, confirm bool) ([]byte, error) {
	switch {
	case cmd.Flags().Changed("passphrase"):
		cc.warnf(psWarning, "--passphrase", "passphrase")
		if passphrase == "" {
			return nil, usagef("--passphrase is empty")
		}
		return []byte(passphrase), nil
	case passFile == "-":
		return readAllTrim(cc.stdin)
	case passFile != "":
		b, err := os.ReadFile(passFile)
		if err != nil {
			return nil, fmt.Errorf("--passphrase-file: %w", err)
		}
		out := bytes.TrimRight(b, "\r\n")
		return out, nil
	}
	pw, err := promptSecret(cc, "Passphrase: ")
	if err != nil {
		return nil, usagef("no passphrase: give --passphrase-file F (or run on a terminal to be prompted)")
	}
	if confirm {
		again, err := promptSecret(cc, "Repeat passphrase: ")
		if err != nil {
			return nil, err
		}
		defer clear(again)
		if !bytes.Equal(pw, again) {
			clear(pw)
			return nil, fmt.Errorf("the passphrases do not match")
		}
	}
	return pw, nil
}

func newStatusCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the vault: key provider, locked state, paths, secret count, daemon and warnings",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			ex, err := cc.openExec(modeOperator)
			if err != nil {
				return err
			}
			defer ex.close()
			var st statusView
			if err := ex.call("status", struct{}{}, &st); err != nil {
				return err
			}
			st.Where = ex.where()
			if asJSON {
				return printJSON(cc.stdout, st)
			}
			printStatus(cc.stdout, st)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printStatus(w io.Writer, st statusView) {
	tw := tabwriter.NewWriter(w, 0, 2, 2, ' ', 0)
	if st.VaultDir != "" {
		fmt.Fprintf(tw, "vault:\t%s\n", st.VaultDir)
	}
	fmt.Fprintf(tw, "provider:\t%s\n", st.Provider)
	if st.KeyFile != "" {
		fmt.Fprintf(tw, "key file:\t%s\n", st.KeyFile)
	}
	lock := "unlocked"
	if st.Locked {
		lock = "locked"
	}
	fmt.Fprintf(tw, "state:\t%s\n", lock)
	if st.Role == ipc.RoleOperator {
		// Agents and key-less owners are not told the vault's contents.
		fmt.Fprintf(tw, "secrets:\t%d\n", st.Secrets)
	}
	fmt.Fprintf(tw, "role:\t%s\n", st.Role)
	fmt.Fprintf(tw, "served by:\t%s\n", st.Where)
	if st.Daemon != nil {
		sc := st.Daemon.SeccompMode
		if sc == "" {
			sc = fmt.Sprint(st.Daemon.Seccomp)
		}
		fmt.Fprintf(tw, "daemon:\tpid %d, socket %s, pool %d, landlock ABI %d, seccomp %s, sandbox %s\n", st.Daemon.PID, st.Daemon.Socket, st.Daemon.Pool, st.Daemon.LandlockABI, sc, st.Daemon.Sandbox)
	}
	if st.DiskLogsDisabled {
		fmt.Fprintf(tw, "audit:\tDISABLED (AIVAULT_DISABLE_DISK_LOGS=1)\n")
	}
	tw.Flush()
	for _, wn := range st.Warnings {
		fmt.Fprintf(w, "warning: %s\n", wn)
	}
}

// ---- unlock / lock / rotate-master / restart ----

func newUnlockCmd() *cobra.Command {
	var passphrase, passFile string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "unlock",
		Short: "Hand the unlocked key of a passphrase vault to its daemon (kept in locked memory until lock/timeout/exit)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			lay, err := resolveLayout(os.Getenv)
			if err != nil {
				return err
			}
			v, err := crypt.Open(lay.Paths, crypt.Options{})
			if err != nil {
				return mapCryptErr(err)
			}
			if err := crypt.CheckMemlock(); err != nil {
				return mapCryptErr(err)
			}
			var k *crypt.Key
			if v.Provider() == crypt.ProviderPassphrase {
				pw, err := readPassphraseFlags(cc, cmd, passphrase, passFile, false)
				if err != nil {
					return err
				}
				k, err = v.Unlock(crypt.KeySource{Passphrase: pw})
				clear(pw)
				if err != nil {
					return mapCryptErr(err)
				}
			} else {
				k, err = v.Unlock(crypt.KeySource{Lookup: os.LookupEnv})
				if err != nil {
					return mapCryptErr(err)
				}
			}
			defer k.Destroy()
			sock := advertisedSocket(lay)
			if !socketLive(sock) {
				if os.Getenv("AIVAULTD_AUTOSTART") == "0" {
					return &policy.Error{Class: "DaemonNotRunning", Msg: "aivaultd is not running", Hint: "start it with 'aivaultd' first"}
				}
				if err := autostartDaemon(cc.ctx, lay); err != nil {
					return err
				}
				sock = advertisedSocket(lay)
			}
			c, err := dialSocket(cc.ctx, sock)
			if err != nil {
				return err
			}
			defer c.Close()
			raw, err := k.Export()
			if err != nil {
				return err
			}
			defer clear(raw)
			if err := c.call("unlock", unlockArgs{Key: raw, TimeoutMs: timeout.Milliseconds()}, nil); err != nil {
				return err
			}
			msg := "unlocked: the daemon holds the key until 'aivault lock' or it exits"
			if timeout > 0 {
				msg = fmt.Sprintf("unlocked for %s", timeout)
			}
			fmt.Fprintln(cc.stdout, msg)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&passphrase, "passphrase", "", "passphrase (visible in ps; prefer the prompt or --passphrase-file)")
	f.StringVar(&passFile, "passphrase-file", "", "read the passphrase from this file ('-' for stdin)")
	f.DurationVar(&timeout, "timeout", 0, "relock after this long (e.g. 30m); 0 = until 'aivault lock'")
	return cmd
}

func newLockCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "lock",
		Short: "Make the daemon forget the key (passphrase vaults need 'aivault unlock' again)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			lay, err := resolveLayout(os.Getenv)
			if err != nil {
				return err
			}
			sock := controlSocket(lay)
			if !socketLive(sock) {
				fmt.Fprintln(cc.stdout, "no daemon is running; the key is not held anywhere")
				return nil
			}
			c, err := dialSocket(cc.ctx, sock)
			if err != nil {
				return err
			}
			ex := &remoteExec{c: c, keyFn: cc.keyFnFor(lay)}
			defer ex.close()
			if err := ex.call("lock", struct{}{}, nil); err != nil {
				return err
			}
			fmt.Fprintln(cc.stdout, "locked")
			return nil
		},
	}
}

func newRotateMasterCmd() *cobra.Command {
	var newKey, newPass, newPassFile string
	cmd := &cobra.Command{
		Use:   "rotate-master",
		Short: "Re-wrap every secret under a new key (crash-safe) and update the key source",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			a := rotateMasterArgs{}
			if newKey != "" {
				cc.warnf("a key on the command line is visible to other users through ps and lands in shell history; prefer omitting --new-key (file provider: a fresh random key is generated; env provider: the new key is read from the vault's variable)")
				k, err := base64.StdEncoding.DecodeString(newKey)
				if err != nil || len(k) != 32 {
					return usagef("--new-key must be a base64 32-byte key")
				}
				a.NewKey = k
			}
			switch {
			case cmd.Flags().Changed("new-passphrase"):
				// readPassphraseFlags only knows --passphrase.
				cc.warnf("a passphrase on the command line is visible to other users through ps and lands in shell history; prefer --new-passphrase-file")
				if newPass == "" {
					return usagef("--new-passphrase is empty")
				}
				a.NewPassphrase = []byte(newPass)
			case newPassFile != "":
				pw, err := readPassphraseFlags(cc, cmd, "", newPassFile, false)
				if err != nil {
					return err
				}
				if len(pw) == 0 {
					return usagef("--new-passphrase-file %s is empty", newPassFile)
				}
				a.NewPassphrase = pw
			}
			defer clear(a.NewKey)
			defer clear(a.NewPassphrase)
			var out map[string]string
			if err := callOp(cc, modeOperator, "rotate-master", a, &out); err != nil {
				return err
			}
			fmt.Fprintf(cc.stdout, "rotated the master key (%s provider, key id %s)\n", out["provider"], out["keyId"])
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&newKey, "new-key", "", "file/env provider: the new base64 32-byte key (default for file: a fresh random key)")
	f.StringVar(&newPass, "new-passphrase", "", "passphrase provider: the new passphrase (visible in ps)")
	f.StringVar(&newPassFile, "new-passphrase-file", "", "passphrase provider: read the new passphrase from this file")
	return cmd
}

func newRestartCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "restart",
		Short: "Restart the vault's daemon (it runs this binary afterwards)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			lay, err := resolveLayout(os.Getenv)
			if err != nil {
				return err
			}
			// The new daemon gets the old one's flags (--shared, --socket,
			// --pool, …): a restart must not turn a shared daemon into a
			// private, idle-exiting one.
			args := runningDaemonArgs(cc, lay)
			if err := stopDaemon(cmd, true); err != nil {
				return err
			}
			if err := autostartDaemon(cc.ctx, lay, args...); err != nil {
				return err
			}
			fmt.Fprintln(cc.stdout, "aivaultd restarted")
			return nil
		},
	}
}

// runningDaemonArgs asks the vault's running daemon for the flags it was
// started with; nil when none runs or it does not say.
func runningDaemonArgs(cc *cliCtx, lay layout) []string {
	sock := advertisedSocket(lay)
	if !socketLive(sock) {
		return nil
	}
	c, err := dialSocket(cc.ctx, sock)
	if err != nil {
		return nil
	}
	defer c.Close()
	var st statusView
	if err := c.call("status", struct{}{}, &st); err != nil || st.Daemon == nil {
		return nil
	}
	return st.Daemon.Args
}

// controlSocket is the daemon 'lock' and 'daemon stop' talk to: the one
// every other command uses when AIVAULTD_SOCKET names it, else the vault's
// advertised socket. (Without this an agent pointed at a shared daemon was
// told "not running", exit 0, instead of the daemon's AccessDenied.)
func controlSocket(lay layout) string {
	if s := os.Getenv("AIVAULTD_SOCKET"); s != "" && os.Getenv("AIVAULTD_DISABLE") != "1" {
		return s
	}
	sock := advertisedSocket(lay)
	if !socketLive(sock) && agentAccount() && socketLive(sharedSocketPath) {
		return sharedSocketPath
	}
	return sock
}

func stopDaemon(cmd *cobra.Command, quiet bool) error {
	cc := newCC(cmd)
	lay, err := resolveLayout(os.Getenv)
	if err != nil {
		return err
	}
	sock := controlSocket(lay)
	if !socketLive(sock) {
		if !quiet {
			fmt.Fprintln(cc.stdout, "aivaultd is not running")
		}
		return nil
	}
	c, err := dialSocket(cc.ctx, sock)
	if err != nil {
		return err
	}
	ex := &remoteExec{c: c, keyFn: cc.keyFnFor(lay)}
	err = ex.call("shutdown", struct{}{}, nil)
	ex.close()
	if err != nil {
		return err
	}
	// Wait until the daemon has really gone: its socket closes first, its
	// vault lock is released when it exits (after draining), and a restart
	// must not race it for that lock.
	deadline := time.Now().Add(35 * time.Second)
	for (socketLive(sock) || daemonLockHeld(lay)) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !quiet {
		fmt.Fprintln(cc.stdout, "aivaultd stopped")
	}
	return nil
}

// ---- install ----

func newInstallCmd() *cobra.Command {
	var prefix string
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Copy this binary to PREFIX/bin/aivault (root-owned, 0755) with aivaultd and setup symlinks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return installBinary(newCC(cmd), prefix)
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", "/usr/local", "installation prefix")
	return cmd
}

func readLines(r io.Reader) []string {
	var out []string
	s := bufio.NewScanner(r)
	for s.Scan() {
		out = append(out, s.Text())
	}
	return out
}

var _ = strings.TrimSpace

// daemonLockHeld reports whether some process holds the vault's daemon lock.
func daemonLockHeld(lay layout) bool {
	f, err := os.OpenFile(lay.lockPath(), os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return true
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}
