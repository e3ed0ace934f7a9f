package applets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"github.com/aivault/aivault/applets/devhooks"
	"github.com/aivault/aivault/crypt"
	"github.com/aivault/aivault/ipc"
	"github.com/aivault/aivault/policy"
)

// executor runs operations either in this process or in the vault's daemon.
type executor interface {
	call(op string, args, out any) error
	invoke(ctx context.Context, a invokeArgs, emit func(ipc.Result) error) error
	close()
	where() string
}

type localExec struct {
	eng *engine
	p   *peer
	ctx context.Context
}

func (l *localExec) call(op string, args, out any) error {
	raw, err := json.Marshal(args)
	if err != nil {
		return err
	}
	defer clear(raw)
	res, err := l.eng.handle(l.ctx, l.p, op, raw)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

func (l *localExec) invoke(ctx context.Context, a invokeArgs, emit func(ipc.Result) error) error {
	return l.eng.invoke(ctx, l.p, a, emit)
}

func (l *localExec) close()        { l.eng.close() }
func (l *localExec) where() string { return "in-process" }

type remoteExec struct {
	c      *client
	keyFn  func() (*crypt.Key, error)
	proven bool
}

func (r *remoteExec) call(op string, args, out any) error {
	var proofErr error
	// status proves too when the key is at hand without a prompt, so the
	// owner sees the operator's view; a failure there is not an error.
	tryStatus := op == "status" && r.c.hello.Provider != string(crypt.ProviderPassphrase)
	if (!agentOps[op] || tryStatus) && r.c.hello.Role == ipc.RoleOwner && !r.proven && r.keyFn != nil && !ownerNoProofOps[op] {
		k, err := r.keyFn()
		if err != nil {
			// Without the key this process is no operator: let the daemon
			// decide (it refuses operator verbs with AccessDenied) and say
			// why the proof was impossible.
			proofErr = err
		} else {
			r.c.prove(k)
			k.Destroy()
		}
		r.proven = true
	}
	err := r.c.call(op, args, out)
	var pe *policy.Error
	if proofErr != nil && errors.As(err, &pe) && pe.Class == policy.ClassAccessDenied {
		why := proofErr.Error()
		var ke *policy.Error
		if errors.As(proofErr, &ke) {
			why = ke.Msg
		}
		pe.Hint = "this process runs as the vault owner but cannot prove it holds the key (" + why + "); provide the key (the key file, the passphrase on a terminal, or the key variable) or run it as root"
	}
	return err
}

func (r *remoteExec) invoke(_ context.Context, a invokeArgs, emit func(ipc.Result) error) error {
	return r.c.invoke(a, emit)
}

func (r *remoteExec) close()        { r.c.Close() }
func (r *remoteExec) where() string { return "daemon at " + r.c.path }

// execMode says what a command needs.
type execMode int

const (
	modeOperator  execMode = iota // operator commands: daemon if running, else in-process
	modeInvoke                    // invoke/list/describe: daemon (autostart) or in-process with AIVAULTD_DISABLE=1
	modeLocalOnly                 // always in-process (init, doctor of files)
)

// cliCtx is the per-command environment.
type cliCtx struct {
	ctx        context.Context
	stdout     io.Writer
	stderr     io.Writer
	stdin      io.Reader
	passphrase func() ([]byte, error) // prompt or flag
}

func (cc *cliCtx) warnf(format string, args ...any) {
	fmt.Fprintf(cc.stderr, "aivault: warning: "+format+"\n", args...)
}

// openExec finds where a command runs.
func (cc *cliCtx) openExec(mode execMode) (executor, error) {
	lay, err := resolveLayout(os.Getenv)
	if err != nil {
		return nil, err
	}
	disable := os.Getenv("AIVAULTD_DISABLE") == "1"
	if s := os.Getenv("AIVAULTD_SOCKET"); s != "" && !disable && mode != modeLocalOnly {
		c, err := dialSocket(cc.ctx, s)
		if err != nil {
			return nil, daemonDown(s, err)
		}
		return &remoteExec{c: c, keyFn: cc.keyFnFor(lay)}, nil
	}
	exists, err := crypt.Exists(lay.Paths)
	if err != nil {
		return nil, mapCryptErr(err)
	}
	if !exists && !disable && mode != modeLocalOnly {
		// No vault of our own: the shared daemon, if any.
		if c, live, err := dialIfLive(cc.ctx, sharedSocketPath); live {
			if err != nil {
				return nil, err
			}
			return &remoteExec{c: c}, nil
		}
		if agentAccount() {
			return nil, &policy.Error{Class: "DaemonNotRunning", Msg: "this account has no vault of its own and the shared aivaultd (" + sharedSocketPath + ") is not running",
				Hint: "ask the operator to start it ('aivaultd --shared' as the vault user, or its systemd unit)"}
		}
	}
	if !exists && agentAccount() {
		return nil, &policy.Error{Class: "NoVault", Msg: "this account is an agent account (group aivault) and never owns a vault",
			Hint: "run operator commands as the vault user (e.g. sudo -u aivault aivault …)"}
	}
	if exists && !disable && mode != modeLocalOnly {
		if c, live, err := dialIfLive(cc.ctx, advertisedSocket(lay)); live {
			if err != nil {
				return nil, err
			}
			return &remoteExec{c: c, keyFn: cc.keyFnFor(lay)}, nil
		}
		if mode == modeInvoke {
			if os.Getenv("AIVAULTD_AUTOSTART") == "0" {
				return nil, &policy.Error{Class: "DaemonNotRunning", Msg: "aivaultd is not running for the vault at " + lay.Dir + " and AIVAULTD_AUTOSTART=0",
					Hint: "start it with 'aivaultd', unset AIVAULTD_AUTOSTART, or set AIVAULTD_DISABLE=1 to run in-process"}
			}
			if err := autostartDaemon(cc.ctx, lay); err != nil {
				return nil, err
			}
			c, err := dialSocket(cc.ctx, advertisedSocket(lay))
			if err != nil {
				return nil, err
			}
			return &remoteExec{c: c, keyFn: cc.keyFnFor(lay)}, nil
		}
	}
	return cc.localExec(lay)
}

func daemonDown(path string, err error) error {
	var pe *policy.Error
	if errors.As(err, &pe) {
		return err
	}
	if errors.Is(err, syscall.EACCES) {
		return &policy.Error{Class: policy.ClassAccessDenied, Msg: fmt.Sprintf("you may not use the aivaultd socket at %s (permission denied)", path),
			Hint: "agents must be in the socket's group: ask the operator to run 'aivault setup agent-access --agent-user <you>', then log in again"}
	}
	return &policy.Error{Class: "DaemonNotRunning", Msg: fmt.Sprintf("cannot reach aivaultd at %s: %v", path, err), Hint: "check that the daemon runs and that you may use its socket"}
}

// localExec opens (or, with the file provider, creates) the vault and runs
// the engine in this process, as the operator.
func (cc *cliCtx) localExec(lay layout) (executor, error) {
	hooks, err := devhooks.Load(os.Environ())
	if err != nil {
		return nil, err
	}
	if err := crypt.CheckMemlock(); err != nil {
		return nil, mapCryptErr(err)
	}
	v, created, err := crypt.OpenOrInitFile(lay.Paths, crypt.Options{CrashPoint: hooks.Crash})
	if err != nil {
		return nil, mapCryptErr(err)
	}
	if created {
		fmt.Fprintf(cc.stderr, "aivault: created a new vault at %s (key file %s)\n", lay.Dir, lay.KeyFile)
	}
	eng, err := newEngine(lay, v, hooks, cc.stderr)
	if err != nil {
		return nil, err
	}
	eng.unlockFn = func() (*crypt.Key, error) { return cc.unlockLocal(v) }
	if created {
		eng.record(selfPeer(), auditEvent("vault.init", map[string]string{"provider": string(v.Provider())}))
	}
	return &localExec{eng: eng, p: selfPeer(), ctx: cc.ctx}, nil
}

func (cc *cliCtx) unlockLocal(v *crypt.Vault) (*crypt.Key, error) {
	switch v.Provider() {
	case crypt.ProviderPassphrase:
		if cc.passphrase == nil {
			return nil, crypt.ErrVaultLocked
		}
		pw, err := cc.passphrase()
		if err != nil {
			return nil, err
		}
		defer clear(pw)
		return v.Unlock(crypt.KeySource{Passphrase: pw})
	default:
		return v.Unlock(crypt.KeySource{Lookup: os.LookupEnv})
	}
}

// keyFnFor returns how this client gets the key to prove operator status.
func (cc *cliCtx) keyFnFor(lay layout) func() (*crypt.Key, error) {
	return func() (*crypt.Key, error) {
		v, err := crypt.Open(lay.Paths, crypt.Options{})
		if err != nil {
			return nil, mapCryptErr(err)
		}
		if err := crypt.CheckMemlock(); err != nil {
			return nil, mapCryptErr(err)
		}
		k, err := cc.unlockLocal(v)
		return k, mapCryptErr(err)
	}
}

func selfPeer() *peer {
	p := &peer{UID: os.Getuid(), GID: os.Getgid(), PID: os.Getpid(), Role: ipc.RoleOperator}
	if u, err := user.LookupId(strconv.Itoa(p.UID)); err == nil {
		p.User = u.Username
	}
	if exe, err := os.Executable(); err == nil {
		p.Exe = exe
	}
	p.Comm = "aivault"
	return p
}

// callOp runs one operation where it belongs (the vault's daemon, or this
// process) and decodes its result into out.
func callOp(cc *cliCtx, mode execMode, op string, args, out any) error {
	ex, err := cc.openExec(mode)
	if err != nil {
		return err
	}
	defer ex.close()
	return ex.call(op, args, out)
}
