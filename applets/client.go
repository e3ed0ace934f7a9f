package applets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aivault/aivault/crypt"
	"github.com/aivault/aivault/ipc"
	"github.com/aivault/aivault/policy"
)

// client is one connection to a daemon.
type client struct {
	conn  *net.UnixConn
	hello ipc.ServerHello
	proof []byte
	path  string
}

// connWaitLimit bounds how long a client waits for a connection slot when
// the daemon's per-uid connection limit is reached (a burst of parallel
// commands by one user waits its turn instead of failing).
const connWaitLimit = 30 * time.Second

func dialSocket(ctx context.Context, path string) (*client, error) {
	deadline := time.Now().Add(connWaitLimit)
	wait := 5 * time.Millisecond
	for {
		c, err := dialOnce(ctx, path)
		var pe *policy.Error
		if err == nil || !errors.As(err, &pe) || pe.Class != policy.ClassRateLimited || !strings.Contains(pe.Msg, "too many connections") || time.Now().After(deadline) {
			return c, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		wait = min(2*wait, 250*time.Millisecond)
	}
}

// dialIfLive connects to the daemon at path when one accepts connections
// there (one connection, no separate liveness probe). live is false, with
// no error, when nothing listens at path.
func dialIfLive(ctx context.Context, path string) (c *client, live bool, err error) {
	c, err = dialSocket(ctx, path)
	if err == nil {
		return c, true, nil
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return nil, false, nil
	}
	return nil, true, err
}

func dialOnce(ctx context.Context, path string) (*client, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	uc := c.(*net.UnixConn)
	_ = uc.SetReadDeadline(time.Now().Add(15 * time.Second))
	var hello ipc.ServerHello
	payload, err := ipc.ReadRawFrame(uc, ipc.DefaultMaxFrame)
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("daemon at %s did not greet: %w", path, err)
	}
	if err := json.Unmarshal(payload, &hello); err != nil || hello.V == 0 {
		// A refusal arrives as a Reply.
		var r ipc.Reply
		if json.Unmarshal(payload, &r) == nil && r.Class != "" {
			uc.Close()
			return nil, &policy.Error{Class: r.Class, Msg: r.Error, Hint: r.Hint}
		}
		uc.Close()
		return nil, fmt.Errorf("daemon at %s sent a malformed greeting", path)
	}
	_ = uc.SetReadDeadline(time.Time{})
	if hello.V != ipc.ProtocolVersion {
		uc.Close()
		return nil, &policy.Error{Class: "VersionMismatch", Msg: fmt.Sprintf("the daemon speaks protocol v%d (aivault %s), this client v%d (aivault %s)", hello.V, hello.Version, ipc.ProtocolVersion, Version),
			Hint: "run 'aivault restart' so the daemon runs this binary"}
	}
	return &client{conn: uc, hello: hello, path: path}, nil
}

func (c *client) Close() error { return c.conn.Close() }

func (c *client) call(op string, args any, out any) error {
	raw, err := json.Marshal(args)
	if err != nil {
		return err
	}
	defer clear(raw)
	if err := ipc.WriteFrame(c.conn, ipc.Call{V: ipc.ProtocolVersion, Op: op, Proof: c.proof, Args: raw}); err != nil {
		return fmt.Errorf("send to daemon: %w", err)
	}
	var r ipc.Reply
	if err := ipc.ReadFrame(c.conn, ipc.DefaultMaxFrame, &r); err != nil {
		return fmt.Errorf("daemon closed the connection: %w", err)
	}
	if !r.OK {
		return &policy.Error{Class: r.Class, Msg: r.Error, Hint: r.Hint}
	}
	if out != nil && len(r.Result) > 0 {
		return json.Unmarshal(r.Result, out)
	}
	return nil
}

func (c *client) invoke(a invokeArgs, emit func(ipc.Result) error) error {
	raw, err := json.Marshal(a)
	if err != nil {
		return err
	}
	defer clear(raw)
	if err := ipc.WriteFrame(c.conn, ipc.Call{V: ipc.ProtocolVersion, Op: "invoke", Args: raw}); err != nil {
		return fmt.Errorf("send to daemon: %w", err)
	}
	for {
		var r ipc.Result
		if err := ipc.ReadFrame(c.conn, ipc.DefaultMaxFrame, &r); err != nil {
			return fmt.Errorf("daemon closed the connection mid-response: %w", err)
		}
		if r.Kind == ipc.ResultEnd && r.ErrorClass != "" && r.Status == 0 {
			if err := emit(r); err != nil {
				return err
			}
			return &policy.Error{Class: r.ErrorClass, Msg: r.Error, Hint: r.Hint}
		}
		if err := emit(r); err != nil {
			return err
		}
		if r.Kind == ipc.ResultEnd {
			if r.ErrorClass != "" {
				return &policy.Error{Class: r.ErrorClass, Msg: r.Error, Hint: r.Hint}
			}
			return nil
		}
	}
}

// prove makes the connection an operator connection when this process holds
// the vault key; the key never crosses the socket, only an HMAC of the
// daemon's challenge.
func (c *client) prove(k *crypt.Key) {
	if k != nil && len(c.hello.Challenge) > 0 {
		c.proof = k.Prove(c.hello.Challenge)
	}
}

// socketCandidate is where the CLI looks for a daemon.
func advertisedSocket(lay layout) string {
	if b, err := os.ReadFile(lay.advertPath()); err == nil {
		if s := strings.TrimSpace(string(b)); s != "" && !strings.ContainsAny(s, "\x00\n") {
			return s
		}
	}
	return lay.SocketPath
}

func socketLive(path string) bool {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// agentAccount reports whether this user is in group aivault (by the
// kernel's view of our groups) — such an account never owns a vault unless it
// already has one.
func agentAccount() bool {
	g, err := user.LookupGroup("aivault")
	if err != nil {
		return false
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return false
	}
	if os.Getuid() == 0 {
		return false
	}
	// The vault user is in group aivault too ('aivault setup agent-access'
	// adds it): it owns the shared socket directory.
	if fi, err := os.Lstat(sharedSocketDir); err == nil && fi.IsDir() {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) == os.Getuid() {
			return false
		}
	}
	if os.Getgid() == gid {
		// The vault owner's private group may be named aivault (useradd's default).
		if u, err := user.LookupId(strconv.Itoa(os.Getuid())); err == nil && u.Username == "aivault" {
			return false
		}
	}
	groups, _ := os.Getgroups()
	for _, x := range append(groups, os.Getgid()) {
		if x == gid {
			return true
		}
	}
	return false
}

// autostartDaemon starts the owner's daemon in the background and waits for
// its socket. args are the daemon's flags (default: --autostarted, which
// exits after an idle period); restart passes the old daemon's own flags.
func autostartDaemon(ctx context.Context, lay layout, args ...string) error {
	if len(args) == 0 {
		args = []string{"--autostarted"}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logf, err := os.OpenFile(lay.Dir+"/run/daemon.log", os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		if err := os.MkdirAll(lay.Dir+"/run", 0o700); err != nil {
			return err
		}
		if logf, err = os.OpenFile(lay.Dir+"/run/daemon.log", os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600); err != nil {
			return err
		}
	}
	defer logf.Close()
	cmd := exec.Command(exe, append([]string{"daemon"}, args...)...)
	cmd.Env = os.Environ()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("autostart aivaultd: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	sock := lay.SocketPath
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if socketLive(advertisedSocket(lay)) || socketLive(sock) {
			return nil
		}
		select {
		case err := <-done:
			if err == nil {
				err = errors.New("it exited")
			}
			return fmt.Errorf("autostarted aivaultd did not come up (%v); see %s/run/daemon.log", err, lay.Dir)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
	return fmt.Errorf("autostarted aivaultd did not come up in time; see %s/run/daemon.log", lay.Dir)
}
