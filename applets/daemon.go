package applets

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/aivault/aivault/applets/devhooks"
	"github.com/aivault/aivault/audit"
	"github.com/aivault/aivault/crypt"
	"github.com/aivault/aivault/ipc"
	"github.com/aivault/aivault/policy"
	"github.com/aivault/aivault/sandbox"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

type daemonOpts struct {
	socket      string
	shared      bool
	once        bool
	pool        int
	insecure    bool
	autostarted bool
	idle        time.Duration
}

func newDaemonCmd(applet bool) *cobra.Command {
	var o daemonOpts
	use := "daemon"
	if applet {
		use = "aivaultd"
	}
	cmd := &cobra.Command{
		Use:   use,
		Short: "Run aivaultd, the monitor that holds the key and serves invocations over a unix socket",
		Long: `aivaultd holds the vault key in locked memory, checks the peer credentials of
every connection (operator, agent or refused), decides each request by policy,
injects the auth and runs every upstream request in a sandboxed worker
(Landlock + seccomp). One daemon serves one vault.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDaemon(cmd.Context(), o, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.socket, "socket", "", "socket path (default: the vault's own, or /var/run/aivault/aivaultd.sock with --shared)")
	f.BoolVar(&o.shared, "shared", false, "serve agents on the group-shared socket /var/run/aivault/aivaultd.sock (0660, group from the directory)")
	f.BoolVar(&o.once, "once", false, "serve one connection, then exit")
	f.IntVar(&o.pool, "pool", 2, "number of pre-spawned, locked-down workers")
	f.BoolVar(&o.insecure, "insecure-no-sandbox", false, "run workers WITHOUT Landlock and seccomp (only for kernels that lack them; loudly reported)")
	f.BoolVar(&o.autostarted, "autostarted", false, "started by the CLI: exit after an idle period")
	f.DurationVar(&o.idle, "idle-timeout", 10*time.Minute, "with --autostarted: exit after this long without a connection")
	_ = f.MarkHidden("autostarted")
	if !applet {
		cmd.AddCommand(&cobra.Command{
			Use:   "stop",
			Short: "Stop the vault's daemon (operator)",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return stopDaemon(cmd, false)
			},
		})
	}
	return cmd
}

type daemon struct {
	eng      *engine
	opts     daemonOpts
	log      *slog.Logger
	sockPath string
	sockGID  int
	ownerUID int
	wg       sync.WaitGroup
	mu       sync.Mutex
	perUID   map[int]int
	conns    map[*net.UnixConn]struct{}
	stopping context.Context
	lastConn time.Time
	stop     context.CancelFunc
	abi      int
	seccomp  bool
}

// Garbage collection in the daemon: its live heap is a few MB and every
// request allocates, so with Go's default (GOGC=100) the collector ran
// constantly (a sixth of the monitor's CPU per request under load). The
// daemon lets the heap grow to 4x the live data instead, under a soft limit
// (28 MiB of Go memory, so that the daemon stays under 40 MB resident with
// its code) that keeps it bounded under any load; GOGC and GOMEMLIMIT set
// by the operator win.
const (
	daemonGCPercent   = 300
	daemonMemoryLimit = 28 << 20
)

func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(daemonGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(daemonMemoryLimit)
	}
}

const (
	maxConnsPerAgentUID = 16
	handshakeTimeout    = 10 * time.Second
	idleCallTimeout     = 60 * time.Second
)

func runDaemon(ctx context.Context, o daemonOpts, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	tuneGC()
	// Opened while still dumpable: scrubEnv overwrites the env-provider key
	// in the exec-time environment block through it (see envscrub.go).
	selfMem, _ := os.OpenFile("/proc/self/mem", os.O_RDWR, 0)
	if selfMem != nil {
		defer selfMem.Close()
	}
	// Same-uid processes must not read our memory or environment.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE): %w", err)
	}
	_ = unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{})
	unix.Umask(0o077)
	hooks, err := devhooks.Load(os.Environ())
	if err != nil {
		return err
	}
	lay, err := resolveLayout(os.Getenv)
	if err != nil {
		return err
	}
	if err := crypt.CheckMemlock(); err != nil {
		return mapCryptErr(err)
	}
	v, err := crypt.Open(lay.Paths, crypt.Options{CrashPoint: hooks.Crash})
	if err != nil {
		if errors.Is(err, crypt.ErrNoVault) && agentAccount() {
			return &policy.Error{Class: "NoVault", Msg: "this is an agent account (group aivault): it owns no vault and runs no daemon",
				Hint: "agents use the shared daemon at " + sharedSocketPath + "; the vault user starts it"}
		}
		if errors.Is(err, crypt.ErrNoVault) {
			return &policy.Error{Class: "NoVault", Msg: "no vault at " + lay.Dir, Hint: "as the vault owner run 'aivault status' (creates a file-key vault) or 'aivault init'; aivaultd never creates one"}
		}
		return mapCryptErr(err)
	}
	// One daemon per vault.
	lockf, err := os.OpenFile(lay.lockPath(), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("daemon lock: %w", err)
	}
	defer lockf.Close()
	if err := unix.Flock(int(lockf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return &policy.Error{Class: "DaemonRunning", Msg: "another aivaultd already serves the vault at " + lay.Dir, Hint: "use 'aivault restart' to restart it"}
	}
	sup := sandbox.Support()
	if len(sup.Problems) > 0 {
		if !o.insecure {
			return &policy.Error{Class: "SandboxUnavailable", Msg: "the worker sandbox cannot run here: " + joinList(sup.Problems),
				Hint: "use a kernel with Landlock ABI >= 4 and seccomp, or run with --insecure-no-sandbox (workers then run WITHOUT isolation)"}
		}
	}
	if o.insecure {
		log.Warn("WORKER SANDBOX DISABLED by --insecure-no-sandbox: workers run without Landlock and seccomp")
	}
	eng, err := newEngine(lay, v, hooks, stderr)
	if err != nil {
		return err
	}
	eng.daemon = true
	defer eng.close()
	// The key: file and env providers are read once now and kept only in a
	// memguard enclave; passphrase vaults start locked until 'aivault unlock'.
	switch v.Provider() {
	case crypt.ProviderFile:
		k, err := v.Unlock(crypt.KeySource{})
		if err != nil {
			return mapCryptErr(err)
		}
		eng.setKey(k, 0)
	case crypt.ProviderEnv:
		// The variable, or under systemd the credential aivault-kek
		// (LoadCredential=, see 'aivault setup systemd').
		k, err := v.Unlock(crypt.KeySource{Lookup: envKeyLookup})
		if err != nil {
			return mapCryptErr(err)
		}
		eng.setKey(k, 0)
		// Unset the variable and overwrite its value wherever this process
		// still holds it (runtime heap copy, exec-time stack block).
		if err := scrubEnv(v.EnvVar(), selfMem); err != nil {
			log.Warn("could not wipe the key variable from this process's environment", "var", v.EnvVar(), "err", err)
		}
	}
	if selfMem != nil {
		selfMem.Close()
	}
	cfg, err := eng.basePoolConfig(o.pool, o.insecure)
	if err != nil {
		return err
	}
	eng.poolCfg = cfg
	pool, err := sandbox.NewPool(ctx, cfg)
	if err != nil {
		return fmt.Errorf("worker pool: %w", err)
	}
	eng.pool = pool

	d := &daemon{eng: eng, opts: o, log: log, perUID: map[int]int{}, conns: map[*net.UnixConn]struct{}{}, ownerUID: os.Getuid(), sockGID: -1, abi: sup.LandlockABI, seccomp: sup.SeccompAvailable}
	// Logged before the socket exists, so that anyone who can connect has
	// this line in the log already.
	log.Info("aivaultd starting", "vault", lay.Dir, "pid", os.Getpid(), "pool", o.pool, "landlock_abi", sup.LandlockABI, "locked", eng.locked())
	ln, err := d.listen(lay)
	if err != nil {
		return err
	}
	sb := "enforced"
	if o.insecure {
		sb = "DISABLED (--insecure-no-sandbox)"
	}
	scMode := "disabled"
	if sup.SeccompAvailable && !o.insecure {
		scMode = "filter (mode 2)"
	}
	eng.dinfo = &daemonInfo{PID: os.Getpid(), Socket: d.sockPath, Shared: o.shared, Pool: o.pool, LandlockABI: sup.LandlockABI, Seccomp: sup.SeccompAvailable, SeccompMode: scMode, Sandbox: sb, Args: o.restartArgs()}
	defer os.Remove(d.sockPath)
	if err := crypt.WriteFileAtomic(lay.advertPath(), []byte(d.sockPath+"\n"), 0o600); err != nil {
		if err := os.MkdirAll(filepath.Dir(lay.advertPath()), 0o700); err == nil {
			_ = crypt.WriteFileAtomic(lay.advertPath(), []byte(d.sockPath+"\n"), 0o600)
		}
	}
	self := selfPeer()
	self.Role, self.Comm = "daemon", "aivaultd"
	eng.record(self, audit.Event{Kind: "daemon.start", Decision: "allow", Detail: map[string]string{"socket": d.sockPath, "shared": strconv.FormatBool(o.shared), "sandbox": strconv.FormatBool(!o.insecure)}})
	log.Info("aivaultd serving", "socket", d.sockPath, "vault", lay.Dir, "pid", os.Getpid(), "pool", o.pool, "landlock_abi", sup.LandlockABI, "locked", eng.locked())
	return d.serve(ctx, ln)
}

// restartArgs are the flags that start an equivalent daemon (--once is not
// carried over: a restarted daemon serves on).
func (o daemonOpts) restartArgs() []string {
	var a []string
	if o.socket != "" {
		a = append(a, "--socket", o.socket)
	}
	if o.shared {
		a = append(a, "--shared")
	}
	a = append(a, "--pool", strconv.Itoa(o.pool))
	if o.insecure {
		a = append(a, "--insecure-no-sandbox")
	}
	if o.autostarted {
		a = append(a, "--autostarted", "--idle-timeout", o.idle.String())
	}
	return a
}

func joinList(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += "; "
		}
		out += x
	}
	return out
}

func envMode(name string, def os.FileMode) (os.FileMode, error) {
	s := os.Getenv(name)
	if s == "" {
		return def, nil
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, fmt.Errorf("%s=%q is not an octal mode", name, s)
	}
	return os.FileMode(m), nil
}

// listen creates the socket after checking its directory.
func (d *daemon) listen(lay layout) (*net.UnixListener, error) {
	path := d.opts.socket
	sockMode, dirMode := os.FileMode(0o600), os.FileMode(0o700)
	if d.opts.shared {
		if path == "" {
			path = sharedSocketPath
		}
		sockMode, dirMode = 0o660, 0o2750
	}
	if path == "" {
		path = lay.SocketPath
	}
	var err error
	if sockMode, err = envMode("AIVAULTD_SOCKET_MODE", sockMode); err != nil {
		return nil, err
	}
	if dirMode, err = envMode("AIVAULTD_SOCKET_DIR_MODE", dirMode); err != nil {
		return nil, err
	}
	// Modes may open the socket to more peers (their credentials still
	// decide), never let others replace it.
	if dirMode.Perm()&0o002 != 0 || d.opts.shared && dirMode.Perm()&0o020 != 0 {
		return nil, &policy.Error{Class: "UnsafeSocketDir", Msg: fmt.Sprintf("AIVAULTD_SOCKET_DIR_MODE=%04o would let others replace the socket", dirMode.Perm()), Hint: "use a mode without write permission for group/others, e.g. 0755"}
	}
	dir := filepath.Dir(path)
	if !d.opts.shared {
		if err := os.MkdirAll(dir, dirMode.Perm()); err != nil {
			return nil, fmt.Errorf("socket directory: %w", err)
		}
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		if d.opts.shared {
			return nil, &policy.Error{Class: "SetupNeeded", Msg: "the shared socket directory " + dir + " does not exist", Hint: "run 'sudo aivault setup agent-access --agent-user <agent> --daemon-user <you>' first"}
		}
		return nil, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() {
		return nil, fmt.Errorf("socket directory %s is not a directory", dir)
	}
	if int(st.Uid) != os.Getuid() {
		return nil, &policy.Error{Class: "UnsafeSocketDir", Msg: fmt.Sprintf("socket directory %s is owned by uid %d, not by this daemon's uid %d", dir, st.Uid, os.Getuid()), Hint: "the daemon user must own it ('aivault setup agent-access' sets that up)"}
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return nil, &policy.Error{Class: "UnsafeSocketDir", Msg: "socket directory " + dir + " is writable by others", Hint: "chmod o-w " + dir}
	}
	if d.opts.shared && fi.Mode().Perm()&0o020 != 0 {
		return nil, &policy.Error{Class: "UnsafeSocketDir", Msg: "socket directory " + dir + " is group-writable: agents could replace the socket", Hint: "chmod 2750 " + dir}
	}
	if !d.opts.shared {
		_ = os.Chmod(dir, dirMode.Perm())
	}
	if d.opts.shared {
		d.sockGID = int(st.Gid)
	}
	// Replace a stale socket, never a live one.
	if _, err := os.Lstat(path); err == nil {
		if socketLive(path) {
			return nil, &policy.Error{Class: "DaemonRunning", Msg: "a live daemon already listens on " + path, Hint: "stop it first ('aivault daemon stop' or 'aivault restart')"}
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	old := unix.Umask(int(0o777 &^ sockMode.Perm()))
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(path, sockMode.Perm()); err != nil {
		ln.Close()
		return nil, err
	}
	if d.opts.shared {
		if err := os.Lchown(path, -1, d.sockGID); err != nil {
			ln.Close()
			return nil, fmt.Errorf("chgrp socket: %w", err)
		}
	}
	d.sockPath = path
	return ln, nil
}

func (d *daemon) serve(parent context.Context, ln *net.UnixListener) error {
	ctx, cancel := context.WithCancel(parent)
	d.stop = cancel
	defer cancel()
	// Requests run under their own context: SIGTERM stops accepting and
	// ends idle connections, but lets requests in flight finish (drain).
	reqCtx, reqCancel := context.WithCancel(context.WithoutCancel(parent))
	defer reqCancel()
	d.stopping = ctx
	go func() {
		<-ctx.Done()
		ln.Close()
		d.mu.Lock()
		for c := range d.conns {
			_ = c.SetReadDeadline(time.Now()) // wake connections waiting for their next call
		}
		d.mu.Unlock()
	}()
	if d.opts.autostarted {
		go d.idleWatch(ctx)
	}
	d.touch()
	var served sync.Once
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			d.log.Error("accept", "err", err)
			break
		}
		d.touch()
		d.wg.Add(1)
		if d.opts.once {
			// --once: the first connection that makes a request ends the
			// daemon once it is answered; a bare connect (a readiness
			// probe) or a refused peer does not count.
			go func() {
				defer d.wg.Done()
				if d.handleConn(reqCtx, c) {
					served.Do(cancel)
				}
			}()
			continue
		}
		go func() {
			defer d.wg.Done()
			d.handleConn(reqCtx, c)
		}()
	}
	d.log.Info("aivaultd stopping: draining in-flight requests")
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		d.log.Warn("drain timed out; abandoning the requests still in flight")
		reqCancel()
	}
	return nil
}

func (d *daemon) touch() {
	d.mu.Lock()
	d.lastConn = time.Now()
	d.mu.Unlock()
}

func (d *daemon) idleWatch(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			d.mu.Lock()
			idle := time.Since(d.lastConn) > d.opts.idle && len(d.perUID) == 0
			d.mu.Unlock()
			if idle {
				d.log.Info("idle timeout reached")
				d.stop()
				return
			}
		}
	}
}

// classify decides a peer's role from the kernel's credentials only.
func (d *daemon) classify(pc *ipc.PeerCred) string {
	switch {
	case pc.UID == 0:
		return ipc.RoleOperator
	case pc.UID == d.ownerUID:
		return ipc.RoleOwner
	case d.sockGID >= 0 && pc.InGroup(d.sockGID):
		return ipc.RoleAgent
	}
	return ipc.RoleRefused
}

func userName(uid int) string {
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return u.Username
	}
	return ""
}

// handleConn serves one connection; requested reports whether the peer made
// at least one well-formed call.
func (d *daemon) handleConn(ctx context.Context, c *net.UnixConn) (requested bool) {
	defer c.Close()
	pc, err := ipc.ReadPeerCred(c)
	if err != nil {
		d.log.Warn("peer credentials unavailable; closing", "err", err)
		return
	}
	role := d.classify(pc)
	p := &peer{UID: pc.UID, GID: pc.GID, PID: pc.PID, Groups: pc.Groups, Comm: pc.Comm, Exe: pc.Exe, User: userName(pc.UID), Role: role}
	if role == ipc.RoleRefused {
		d.eng.record(p, audit.Event{Kind: "connection.refused", Decision: "deny", Reason: "AccessDenied: not the owner, root or a member of the socket's group"})
		_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_ = ipc.WriteFrame(c, ipc.Reply{Class: policy.ClassAccessDenied, Error: fmt.Sprintf("uid %d may not use this daemon", pc.UID), Hint: "ask the operator to run 'aivault setup agent-access --agent-user <you>'"})
		return
	}
	if role == ipc.RoleAgent || role == ipc.RoleOwner {
		d.mu.Lock()
		if d.perUID[pc.UID] >= maxConnsPerAgentUID {
			d.mu.Unlock()
			_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			_ = ipc.WriteFrame(c, ipc.Reply{Class: policy.ClassRateLimited, Error: "too many connections from this uid", Hint: "close idle connections"})
			return
		}
		d.perUID[pc.UID]++
		d.mu.Unlock()
		defer func() {
			d.mu.Lock()
			if d.perUID[pc.UID]--; d.perUID[pc.UID] <= 0 {
				delete(d.perUID, pc.UID)
			}
			d.mu.Unlock()
		}()
	}
	challenge := make([]byte, 32)
	if _, err := rand.Read(challenge); err != nil {
		return
	}
	_ = c.SetWriteDeadline(time.Now().Add(handshakeTimeout))
	if err := ipc.WriteFrame(c, ipc.ServerHello{V: ipc.ProtocolVersion, Version: Version, Role: role, Challenge: challenge, Provider: string(d.eng.vault.Provider())}); err != nil {
		return
	}
	proven := false
	d.mu.Lock()
	d.conns[c] = struct{}{}
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.conns, c)
		d.mu.Unlock()
	}()
	for {
		if d.stopping != nil && d.stopping.Err() != nil {
			return // shutting down: no new calls on this connection
		}
		_ = c.SetReadDeadline(time.Now().Add(idleCallTimeout))
		payload, err := ipc.ReadRawFrame(c, ipc.DefaultMaxFrame)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				d.log.Debug("connection ended", "uid", pc.UID, "err", err)
			}
			if errors.Is(err, ipc.ErrFrameTooLarge) {
				_ = ipc.WriteFrame(c, ipc.Reply{Class: policy.ClassInvalidRequest, Error: "request frame too large"})
			}
			return
		}
		var call ipc.Call
		err = ipc.DecodeStrict(payload, &call)
		clear(payload)
		if err != nil || call.V != ipc.ProtocolVersion {
			msg, hint := "malformed request", "this socket speaks aivault's framed JSON protocol; use the aivault CLI"
			if err == nil {
				msg = fmt.Sprintf("protocol v%d is not supported (daemon speaks v%d, aivault %s)", call.V, ipc.ProtocolVersion, Version)
				hint = "run 'aivault restart' after upgrading"
			}
			_ = c.SetWriteDeadline(time.Now().Add(handshakeTimeout))
			_ = ipc.WriteFrame(c, ipc.Reply{Class: policy.ClassInvalidRequest, Error: msg, Hint: hint})
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		requested = true
		if role == ipc.RoleOwner && len(call.Proof) > 0 && !proven {
			if k, err := d.eng.getKey(); err == nil && k.VerifyProof(challenge, call.Proof) {
				proven = true
				p.Role = ipc.RoleOperator
			} else if err == nil {
				d.eng.record(p, audit.Event{Kind: "operator.proof", Decision: "deny", Reason: "AccessDenied: bad key proof"})
			}
		}
		ownerOp := ownerNoProofOps[call.Op] && role == ipc.RoleOwner
		if ownerOp {
			// Unlocking is itself the proof: the daemon checks the key.
			// Locking and stopping only take power away, and the owner's
			// uid can signal the daemon anyway: no proof needed.
			p.Role = ipc.RoleOperator
		}
		if call.Op == "invoke" {
			d.serveInvoke(ctx, c, p, call.Args)
			return
		}
		_ = c.SetWriteDeadline(time.Time{})
		res, err := d.eng.handle(ctx, p, call.Op, call.Args)
		if ownerOp && !proven {
			p.Role = role
		}
		var reply ipc.Reply
		if err != nil {
			reply = errReply(err)
		} else {
			raw, merr := json.Marshal(res)
			if merr != nil {
				reply = errReply(merr)
			} else {
				reply = ipc.Reply{OK: true, Result: raw}
			}
		}
		_ = c.SetWriteDeadline(time.Now().Add(idleCallTimeout))
		if err := ipc.WriteFrame(c, reply); err != nil {
			return
		}
		if call.Op == "shutdown" && err == nil {
			d.stop()
			return
		}
	}
}

// ownerNoProofOps are the operations the vault owner's uid may run without
// proving the key: unlock (it carries the key, which the daemon checks), lock
// and shutdown (they only take power away; the same uid could kill(2) the
// daemon anyway).
var ownerNoProofOps = map[string]bool{"unlock": true, "lock": true, "shutdown": true}

func errReply(err error) ipc.Reply {
	var pe *policy.Error
	if errors.As(err, &pe) {
		return ipc.Reply{Class: pe.Class, Error: pe.Msg, Hint: pe.Hint}
	}
	return ipc.Reply{Class: "Internal", Error: err.Error()}
}

func (d *daemon) serveInvoke(ctx context.Context, c *net.UnixConn, p *peer, raw json.RawMessage) {
	var a invokeArgs
	var err error
	if err = decodeArgs(raw, &a); err == nil {
		_ = c.SetWriteDeadline(time.Time{})
		ended := false
		err = d.eng.invoke(ctx, p, a, func(r ipc.Result) error {
			if r.Kind == ipc.ResultEnd {
				ended = true
			}
			// A slow reader cannot hold a worker forever.
			_ = c.SetWriteDeadline(time.Now().Add(idleCallTimeout))
			return ipc.WriteFrame(c, r)
		})
		if err == nil || ended {
			return
		}
	}
	rp := errReply(err)
	_ = c.SetWriteDeadline(time.Now().Add(handshakeTimeout))
	_ = ipc.WriteFrame(c, ipc.Result{Kind: ipc.ResultEnd, ErrorClass: rp.Class, Error: rp.Error, Hint: rp.Hint})
}
