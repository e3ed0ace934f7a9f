package applets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/aivault/aivault/audit"
	"github.com/aivault/aivault/crypt"
	"github.com/aivault/aivault/policy"
	"github.com/aivault/aivault/sandbox"
	"github.com/spf13/cobra"
)

type daemonInfo struct {
	PID         int    `json:"pid"`
	Socket      string `json:"socket"`
	Shared      bool   `json:"shared"`
	Pool        int    `json:"pool"`
	LandlockABI int    `json:"landlockAbi"`
	Seccomp     bool   `json:"seccomp"`
	SeccompMode string `json:"seccompMode"` // workers' mode: "filter (mode 2)" or "disabled"
	Sandbox     string `json:"sandbox"`     // enforced | DISABLED
	// Args are the flags to start an equivalent daemon with ('aivault restart').
	Args []string `json:"args,omitempty"`
}

type statusView struct {
	VaultDir         string      `json:"vaultDir"`
	KeyFile          string      `json:"keyFile,omitempty"`
	Provider         string      `json:"provider"`
	EnvVar           string      `json:"envVar,omitempty"`
	Locked           bool        `json:"locked"`
	Secrets          int         `json:"secrets"`
	Role             string      `json:"role"`
	Where            string      `json:"servedBy"`
	Daemon           *daemonInfo `json:"daemon,omitempty"`
	DiskLogsDisabled bool        `json:"diskLogsDisabled"`
	Warnings         []string    `json:"warnings"`
}

func opStatus(_ context.Context, e *engine, p *peer, _ json.RawMessage) (any, error) {
	st := statusView{Provider: string(e.vault.Provider()), Locked: e.locked(), Role: p.Role, DiskLogsDisabled: e.noDisk, Warnings: []string{}}
	if e.daemon {
		st.Daemon = e.dinfo
	}
	if p.Role != "operator" {
		// Agents learn only what they need: that the daemon is up, its
		// role for them and its sandbox.
		return st, nil
	}
	st.VaultDir = e.lay.Dir
	if e.vault.Provider() == crypt.ProviderFile {
		st.KeyFile = e.lay.KeyFile
	}
	st.EnvVar = e.vault.EnvVar()
	if !e.daemon && e.vault.Provider() != crypt.ProviderPassphrase {
		// In-process with a file/env key: the key is at hand.
		st.Locked = false
	}
	if infos, err := e.secretInfos(); err == nil {
		st.Secrets = len(infos)
	}
	st.Warnings = append(st.Warnings, e.fileWarnings()...)
	return st, nil
}

// fileWarnings checks modes and ownership of the vault and key files.
func (e *engine) fileWarnings() []string {
	var w []string
	check := func(path string, want os.FileMode, what string) {
		fi, err := os.Lstat(path)
		if err != nil {
			return
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			w = append(w, fmt.Sprintf("%s %s is a symlink", what, path))
			return
		}
		if fi.Mode().Perm()&0o077 != 0 {
			w = append(w, fmt.Sprintf("%s %s is accessible by group or others (mode %04o); run: chmod %04o %s", what, path, fi.Mode().Perm(), want, path))
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Getuid() {
			w = append(w, fmt.Sprintf("%s %s is owned by uid %d, not by the vault owner uid %d", what, path, st.Uid, os.Getuid()))
		}
	}
	check(e.lay.Dir, 0o700, "vault directory")
	if e.vault.Provider() == crypt.ProviderFile {
		check(e.lay.KeyFile, 0o600, "key file")
		check(filepath.Dir(e.lay.KeyFile), 0o700, "key directory")
	}
	if e.lay.FromEnv {
		w = append(w, "AIVAULT_DIR is set: on a shared machine every process that can set it chooses the vault; prefer the default location")
	}
	if os.Getuid() == 0 {
		w = append(w, "running as root: run the vault and daemon as a dedicated user (see 'aivault setup agent-access')")
	}
	return w
}

type doctorCheck struct {
	Name   string `json:"name"`
	Result string `json:"result"` // PASS | WARN | FAIL
	Detail string `json:"detail,omitempty"`
	Fix    string `json:"fix,omitempty"`
}

type doctorReport struct {
	OK     bool          `json:"ok"`
	Checks []doctorCheck `json:"checks"`
}

func opDoctor(_ context.Context, e *engine, _ *peer, _ json.RawMessage) (any, error) {
	rep := &doctorReport{OK: true}
	add := func(name, result, detail, fix string) {
		rep.Checks = append(rep.Checks, doctorCheck{Name: name, Result: result, Detail: detail, Fix: fix})
		if result == "FAIL" {
			rep.OK = false
		}
	}
	warns := e.fileWarnings()
	if len(warns) == 0 {
		add("permissions", "PASS", "vault directory and key file are private to the owner", "")
	}
	for _, w := range warns {
		res := "WARN"
		if strings.Contains(w, "accessible by group or others") || strings.Contains(w, "owned by uid") || strings.Contains(w, "symlink") {
			res = "FAIL"
		}
		add("permissions", res, w, "")
	}
	k, err := e.getKey()
	if err != nil {
		fix := "unlock the vault ('aivault unlock') and re-run"
		switch e.vault.Provider() {
		case crypt.ProviderFile:
			fix = "restore the vault's key file " + e.lay.KeyFile + " (mode 0600) from your backup"
		case crypt.ProviderEnv:
			fix = "set " + e.vault.EnvVar() + " to the vault's base64 key"
		}
		add("key", "FAIL", err.Error(), fix)
		return rep, nil
	}
	add("key", "PASS", fmt.Sprintf("%s provider, key id %s", e.vault.Provider(), k.ID()), "")
	probs, err := e.vault.Verify(k)
	bad := 0
	for _, pr := range probs {
		switch {
		case filepath.Base(pr.File) == stateName:
			// Reported by the broker.json check below.
			continue
		case pr.ID == "":
			add("records", "FAIL", fmt.Sprintf("file %s: %s", pr.File, pr.Problem), "move it out of the secrets directory")
		case filepath.Dir(pr.File) != filepath.Join(e.lay.Dir, "secrets"):
			add("records", "FAIL", fmt.Sprintf("%s: %s", pr.File, pr.Problem), "")
		default:
			add("records", "FAIL", fmt.Sprintf("secret %s (%s): %s", pr.ID, pr.File, pr.Problem), "restore that record from a backup or delete the secret")
		}
		bad++
	}
	switch {
	case err != nil:
		add("records", "FAIL", err.Error(), "")
	case bad == 0:
		n, _ := e.vault.ListSecrets()
		user := 0
		for _, m := range n {
			if !isInternalSecret(m.Name) {
				user++
			}
		}
		add("records", "PASS", fmt.Sprintf("%d secret(s) authenticate (and %d internal record(s))", user, len(n)-user), "")
	}
	if st, err := e.loadState(); err != nil {
		add("broker.json", "FAIL", err.Error(), "restore broker.json from a backup, or remove it to reset credentials and policy")
	} else {
		add("broker.json", "PASS", "state MAC verifies", "")
		if infos, err := e.secretInfos(); err == nil {
			metas, _ := e.vault.ListSecrets()
			for _, m := range metas {
				if e.unprovisioned(m, cloneState(st), infos) {
					add("credentials", "WARN", fmt.Sprintf("secret %s (%s) is pinned to %s but no credential uses it (an interrupted create?)", m.Name, m.ID, m.Pinned),
						fmt.Sprintf("'aivault secrets rotate --id %s' (with its value) provisions it again", m.ID))
				}
			}
		}
	}
	if _, serr := os.Stat(e.lay.auditDir()); e.noDisk {
		add("audit", "WARN", "disk audit logs are disabled (AIVAULT_DISABLE_DISK_LOGS=1)", "unset AIVAULT_DISABLE_DISK_LOGS")
	} else if errors.Is(serr, fs.ErrNotExist) {
		// A process that crashed before its first audit record leaves no
		// audit directory; an emptied one would verify as an empty chain.
		add("audit", "WARN", "no audit log yet: "+e.lay.auditDir()+" does not exist (nothing recorded yet, or it was removed)", "")
	} else if ak, err := e.auditKey(); err == nil {
		e.auditMu.Lock()
		vr, err := audit.Verify(e.lay.auditDir(), ak)
		e.auditMu.Unlock()
		clear(ak)
		switch {
		case err != nil:
			add("audit", "FAIL", err.Error(), "")
		case !vr.OK && vr.FirstBad != nil:
			add("audit", "FAIL", fmt.Sprintf("chain broken at %s line %d: %s", vr.FirstBad.File, vr.FirstBad.Line, vr.FirstBad.Why), "restore the audit file from a backup")
		default:
			add("audit", "PASS", fmt.Sprintf("chain of %d record(s) verifies", vr.Records), "")
		}
	}
	return rep, nil
}

func newDoctorCmd() *cobra.Command {
	var asJSON, sandboxProbe bool
	var agentUser string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check permissions, that every record authenticates, broker.json, the audit chain (and --sandbox)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cc := newCC(cmd)
			rep := &doctorReport{OK: true}
			if !sandboxProbe || agentUser != "" {
				ex, err := cc.openExec(modeOperator)
				if err == nil {
					err = ex.call("doctor", struct{}{}, rep)
					ex.close()
				}
				if err != nil && agentUser == "" {
					return err
				}
				if err != nil {
					// The deployment checklist still runs: it often says why.
					var pe *policy.Error
					detail, fix := err.Error(), ""
					if errors.As(err, &pe) {
						detail, fix = pe.Class+": "+pe.Msg, pe.Hint
					}
					rep.OK = false
					rep.Checks = append(rep.Checks, doctorCheck{Name: "vault", Result: "FAIL", Detail: detail, Fix: fix})
				}
			}
			if agentUser != "" {
				for _, c := range deploymentChecks(agentUser) {
					rep.Checks = append(rep.Checks, c)
					if c.Result == "FAIL" {
						rep.OK = false
					}
				}
			}
			if sandboxProbe {
				for _, c := range sandboxChecks(cc) {
					rep.Checks = append(rep.Checks, c)
					if c.Result == "FAIL" {
						rep.OK = false
					}
				}
			}
			if asJSON {
				if err := printJSON(cc.stdout, rep); err != nil {
					return err
				}
			} else {
				for _, c := range rep.Checks {
					line := fmt.Sprintf("%-4s %-12s %s", c.Result, c.Name, c.Detail)
					if c.Fix != "" && c.Result != "PASS" {
						line += " (fix: " + c.Fix + ")"
					}
					fmt.Fprintln(cc.stdout, line)
				}
			}
			if !rep.OK {
				return &exitCodeError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&sandboxProbe, "sandbox", false, "run probe jobs in a real worker: opening a file, creating a socket, exec and an unlisted syscall must all fail")
	cmd.Flags().StringVar(&agentUser, "agent-user", "", "check the deployment against this agent account")
	return cmd
}

func sandboxChecks(cc *cliCtx) []doctorCheck {
	var out []doctorCheck
	sup := sandbox.Support()
	if len(sup.Problems) > 0 {
		return []doctorCheck{{Name: "sandbox", Result: "FAIL", Detail: strings.Join(sup.Problems, "; "), Fix: "a kernel with Landlock ABI >= 4 and seccomp"}}
	}
	out = append(out, doctorCheck{Name: "sandbox", Result: "PASS", Detail: fmt.Sprintf("Landlock ABI %d, seccomp filter available", sup.LandlockABI)})
	cfg := sandbox.PoolConfig{Exe: "/proc/self/exe", Argv0: "aivault-worker", Env: workerEnv(), Stderr: cc.stderr}
	for _, f := range systemRootFiles {
		if b, err := os.ReadFile(f); err == nil {
			cfg.RootsPEM = b
			break
		}
	}
	if cfg.RootsPEM == nil {
		cfg.RootsPEM = []byte("\n")
	}
	for _, what := range []string{"open", "socket", "exec", "syscall"} {
		res, err := sandbox.Probe(cc.ctx, cfg, what)
		switch {
		case err != nil:
			out = append(out, doctorCheck{Name: "probe " + what, Result: "FAIL", Detail: err.Error()})
		case !res.Blocked:
			out = append(out, doctorCheck{Name: "probe " + what, Result: "FAIL", Detail: "NOT blocked: " + res.Detail})
		default:
			out = append(out, doctorCheck{Name: "probe " + what, Result: "PASS", Detail: "blocked: " + res.Detail})
		}
	}
	return out
}
