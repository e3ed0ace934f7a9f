package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aivault/aivault/test/bench/load"
)

// benchEnv is the throwaway world a run sets up: a temp dir, a copy of the
// product binary, the upstream, a vault with one key owned by an unprivileged
// user, and that user's daemon.
type benchEnv struct {
	work    string
	bin     string // the product, copied 0755 so the daemon user can run it
	key     string // the API key stored in the vault (and injected by nginx)
	logw    io.Writer
	asUser  bool // the daemon runs as another (non-root) user
	user    string
	uid     int
	gid     int
	created bool // this run created the user (and removes it)
	home    string
	vault   string
	sock    string
	pool    int

	upCmd  *exec.Cmd
	upAddr string
	ca     string

	daemon     *exec.Cmd
	daemonPID  int
	daemonExit chan error
}

const benchUser = "aivbench"

func (e *benchEnv) setup(ctx context.Context, product string) error {
	var err error
	if e.work, err = os.MkdirTemp("/tmp", "avbench"); err != nil {
		return err
	}
	if err := os.Chmod(e.work, 0o755); err != nil {
		return err
	}
	e.bin = filepath.Join(e.work, "aivault")
	if err := copyFile(product, e.bin, 0o755); err != nil {
		return fmt.Errorf("copy %s: %w (run make dev first)", product, err)
	}
	if err := writePKI(e.work); err != nil {
		return err
	}
	e.ca = filepath.Join(e.work, "ca.pem")
	e.key = "sk-bench-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-0123456789abcdef"

	// The upstream.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	e.upCmd = exec.Command(self, "-serve-upstream", e.work)
	e.upCmd.Env = append(os.Environ(), "BENCH_UPSTREAM_AUTH=Bearer "+e.key)
	e.upCmd.Stderr = e.logw
	out, err := e.upCmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := e.upCmd.Start(); err != nil {
		return err
	}
	line := make([]byte, 64)
	n, err := out.Read(line)
	if err != nil {
		return fmt.Errorf("upstream did not start: %w", err)
	}
	e.upAddr = strings.TrimSpace(string(line[:n]))

	// The daemon's user: an unprivileged account when we are root (root is
	// exempt from limits that bite real deployments).
	e.uid, e.gid = os.Getuid(), os.Getgid()
	if os.Getuid() == 0 {
		e.asUser, e.user = true, benchUser
		if _, err := user.Lookup(benchUser); err != nil {
			if out, err := exec.Command("useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", benchUser).CombinedOutput(); err != nil {
				return fmt.Errorf("useradd %s: %v: %s", benchUser, err, out)
			}
			e.created = true
		}
		u, err := user.Lookup(benchUser)
		if err != nil {
			return err
		}
		e.uid, _ = strconv.Atoi(u.Uid)
		e.gid, _ = strconv.Atoi(u.Gid)
	}
	owned := filepath.Join(e.work, "u")
	e.home = filepath.Join(owned, "home")
	if err := os.MkdirAll(e.home, 0o700); err != nil {
		return err
	}
	for _, d := range []string{owned, e.home} {
		if err := os.Chown(d, e.uid, e.gid); err != nil {
			return err
		}
	}
	e.vault = filepath.Join(owned, "v")
	e.sock = filepath.Join(e.vault, "run", "aivaultd.sock")
	cmd := e.asOwner(e.bin, "secrets", "create", "--name", "OPENAI_API_KEY", "--value-file", "-")
	cmd.Stdin = strings.NewReader(e.key + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("store the key: %v: %s", err, out)
	}
	return e.startDaemon(ctx)
}

// ownerEnv is the environment of every product process of the run.
func (e *benchEnv) ownerEnv() []string {
	return []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + e.home, "USER=" + e.user, "LOGNAME=" + e.user,
		"AIVAULT_DIR=" + e.vault, "AIVAULTD_AUTOSTART=0",
	}
}

// asOwner runs the product as the vault owner (the daemon's user).
func (e *benchEnv) asOwner(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = e.ownerEnv()
	cmd.Dir = e.work
	if e.asUser {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(e.uid), Gid: uint32(e.gid)}}
	}
	return cmd
}

func (e *benchEnv) startDaemon(ctx context.Context) error {
	logf, err := os.OpenFile(filepath.Join(e.work, "daemon.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := e.asOwner(e.bin, "daemon", "--pool", strconv.Itoa(e.pool))
	cmd.Env = append(cmd.Env,
		"AIVAULT_DEV_RESOLVE="+upstreamHost+"="+e.upAddr,
		"AIVAULT_DEV_CA_CERT_PATH="+e.ca)
	// Experiments: extra variables for the daemon only (e.g. GOGC=200).
	if extra := os.Getenv("BENCH_DAEMON_ENV"); extra != "" {
		cmd.Env = append(cmd.Env, strings.Fields(extra)...)
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	e.daemon, e.daemonPID = cmd, cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if c, err := net.Dial("unix", e.sock); err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(e.work, "daemon.log"))
			return fmt.Errorf("the daemon exited (%v): %s", err, log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return errors.New("the daemon's socket did not come up in 30s")
		}
	}
	// Wait for the pool to be full before measuring anything.
	deadline = time.Now().Add(30 * time.Second)
	for len(load.Children(e.daemonPID)) < e.pool && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	e.daemonExit = exited
	return nil
}

// stopDaemon sends SIGTERM and waits; it reports a non-zero exit.
func (e *benchEnv) stopDaemon() error {
	if e.daemon == nil {
		return nil
	}
	_ = e.daemon.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-e.daemonExit:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-e.daemonPID, syscall.SIGKILL)
		err = <-e.daemonExit
	}
	e.daemon = nil
	return err
}

func (e *benchEnv) close() {
	if e.daemon != nil {
		_ = e.stopDaemon()
	}
	if e.upCmd != nil && e.upCmd.Process != nil {
		_ = e.upCmd.Process.Kill()
		_ = e.upCmd.Wait()
	}
	if e.created {
		_ = exec.Command("userdel", benchUser).Run()
	}
	if e.work != "" && os.Getenv("AIVAULT_BENCH_KEEP") != "1" {
		_ = os.RemoveAll(e.work)
	}
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}
