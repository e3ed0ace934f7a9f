package test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aivault/aivault/test/fakeupstream"
	"github.com/aivault/aivault/test/jsonpath"
	"github.com/aivault/aivault/test/leakscan"
	"github.com/rogpeppe/go-internal/testscript"
)

// Timeouts for things the harness waits on.
const (
	startTimeout = 30 * time.Second
	stopTimeout  = 30 * time.Second
)

// commands returns the custom script commands (documented in README.md).
func commands() map[string]func(ts *testscript.TestScript, neg bool, args []string) {
	return map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"upstream":   cmdUpstream,
		"daemon":     cmdDaemon,
		"as":         cmdAs,
		"useradd":    cmdUseradd,
		"groupadd":   cmdGroupadd,
		"noleak":     cmdNoleak,
		"waitfile":   cmdWaitfile,
		"jsonget":    cmdJSONGet,
		"grepcount":  cmdGrepcount,
		"fetch":      cmdFetch,
		"exitcode":   cmdExitcode,
		"tamper":     cmdTamper,
		"firstfile":  cmdFirstFile,
		"sigv4check": cmdSigV4Check,
		"hmaccheck":  cmdHMACCheck,
		"memscan":    cmdMemscan,
		"rawsock":    cmdRawsock,
		"exclusive":  cmdExclusive,
		"ptyrun":     cmdPtyrun,
		"loadgen":    cmdLoadgen,
	}
}

// envSuffix turns a process name into an env-var suffix: "" for the default
// one, else "_" + upper-cased name with non-alphanumerics as '_'.
func envSuffix(name string) string {
	if name == "" {
		return ""
	}
	b := []byte(strings.ToUpper(name))
	for i, c := range b {
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			b[i] = '_'
		}
	}
	return "_" + string(b)
}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,31}$`)

// takeName pops an optional leading name (anything not starting with '-').
func takeName(ts *testscript.TestScript, args []string) (string, []string) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", args
	}
	if !nameRE.MatchString(args[0]) {
		ts.Fatalf("bad name %q (want [a-zA-Z0-9_-], at most 32)", args[0])
	}
	return args[0], args[1:]
}

// snapshot captures the script's current environment, working directory and
// pending stdin (consuming it, as exec would) by running sh through ts.Exec;
// testscript exposes no other way to read them, and a background process
// must see what `env` set. It leaves stdout and stderr empty.
func snapshot(ts *testscript.TestScript, st *scriptState) (env []string, dir string, stdin *os.File) {
	d, err := os.MkdirTemp(st.h.priv, "snap")
	ts.Check(err)
	defer os.RemoveAll(d)
	envFile, inFile := filepath.Join(d, "env"), filepath.Join(d, "stdin")
	if err := ts.Exec("sh", "-c", `env -0 > "$1" && cat > "$2"`, "sh", envFile, inFile); err != nil {
		ts.Fatalf("snapshot environment: %v", err)
	}
	data, err := os.ReadFile(envFile)
	ts.Check(err)
	for _, kv := range strings.Split(string(data), "\x00") {
		if kv == "" {
			continue
		}
		if v, ok := strings.CutPrefix(kv, "PWD="); ok {
			dir = v
		}
		env = append(env, kv)
	}
	stdin, err = os.Open(inFile) // stays readable after the dir is removed
	ts.Check(err)
	return env, dir, stdin
}

func getenvFrom(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if v, ok := strings.CutPrefix(env[i], key+"="); ok {
			return v
		}
	}
	return ""
}

func setenvIn(env []string, key, value string) []string {
	out := slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, key+"=") })
	return append(out, key+"="+value)
}

// lookupUser resolves a user for `as` and `daemon -as`.
func lookupUser(ts *testscript.TestScript, cmd, name string) *user.User {
	if os.Geteuid() != 0 {
		ts.Fatalf("%s: running as another user needs root (euid %d); guard the script with [root]", cmd, os.Geteuid())
	}
	u, err := user.Lookup(name)
	if err != nil {
		ts.Fatalf("%s: no user %q (create it with useradd): %v", cmd, name, err)
	}
	return u
}

// ---- upstream ----

type upstreamProc struct {
	name  string
	dir   string
	cmd   *exec.Cmd
	done  chan struct{}
	err   error // exit status; valid once done is closed
	ready fakeupstream.Ready
}

func (u *upstreamProc) exited() bool {
	select {
	case <-u.done:
		return true
	default:
		return false
	}
}

func (u *upstreamProc) stop() error {
	if !u.exited() {
		_ = u.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-u.done:
		case <-time.After(stopTimeout):
			_ = u.cmd.Process.Kill()
			<-u.done
			return errors.New("did not exit on SIGTERM; killed")
		}
	}
	return u.err
}

func cmdUpstream(ts *testscript.TestScript, neg bool, args []string) {
	st := state(ts)
	if len(args) == 0 {
		ts.Fatalf("usage: upstream start|stop|requests|count|clientcert ...")
	}
	sub, args := args[0], args[1:]
	if sub == "clientcert" {
		if neg || len(args) != 1 {
			ts.Fatalf("usage: upstream clientcert CN")
		}
		cn := args[0]
		if !nameRE.MatchString(cn) {
			ts.Fatalf("upstream clientcert: bad common name %q", cn)
		}
		b, err := fakeupstream.WriteClientBundle(filepath.Join(st.work, "client-"+cn), cn)
		ts.Check(err)
		sfx := envSuffix(cn)
		ts.Setenv("CLIENT_CA"+sfx, b.CAPath)
		ts.Setenv("CLIENT_CERT"+sfx, b.CertPath)
		ts.Setenv("CLIENT_KEY"+sfx, b.KeyPath)
		ts.Setenv("CLIENT_SUBJECT"+sfx, b.Subject)
		return
	}
	var name string
	if sub != "count" || len(args) > 1 { // "count N" has no name
		name, args = takeName(ts, args)
	}
	key := name
	if key == "" {
		key = "default"
	}
	switch sub {
	case "start":
		upstreamStart(ts, st, neg, name, key, args)
	case "stop":
		if neg || len(args) != 0 {
			ts.Fatalf("usage: upstream stop [name]")
		}
		u := st.upstreams[key]
		if u == nil {
			ts.Fatalf("upstream %s is not running", key)
		}
		delete(st.upstreams, key)
		if err := u.stop(); err != nil {
			ts.Fatalf("upstream %s: %v", key, err)
		}
	case "requests":
		if neg || len(args) != 0 {
			ts.Fatalf("usage: upstream requests [name]")
		}
		_, _ = io.WriteString(ts.Stdout(), readUpstreamLog(ts, st, key))
	case "count":
		if len(args) != 1 {
			ts.Fatalf("usage: upstream count [name] N")
		}
		want, err := strconv.Atoi(args[0])
		if err != nil {
			ts.Fatalf("upstream count: bad N %q", args[0])
		}
		got := strings.Count(readUpstreamLog(ts, st, key), "\n")
		if (got == want) == neg {
			ts.Fatalf("upstream %s recorded %d requests; want %s%d", key, got, map[bool]string{true: "not ", false: ""}[neg], want)
		}
	default:
		ts.Fatalf("upstream: unknown subcommand %q", sub)
	}
}

func readUpstreamLog(ts *testscript.TestScript, st *scriptState, key string) string {
	u := st.upstreams[key]
	path := filepath.Join(st.work, "up-"+key, fakeupstream.LogFile)
	if u != nil {
		path = u.ready.LogPath
	}
	data, err := os.ReadFile(path)
	if err != nil {
		ts.Fatalf("upstream %s: no request log (was it started?): %v", key, err)
	}
	return string(data)
}

func upstreamStart(ts *testscript.TestScript, st *scriptState, neg bool, name, key string, flags []string) {
	if u := st.upstreams[key]; u != nil && !u.exited() {
		ts.Fatalf("upstream %s is already running", key)
	}
	for _, f := range flags {
		if f == "-dir" || strings.HasPrefix(f, "-dir=") {
			ts.Fatalf("upstream start: -dir is chosen by the harness ($WORK/up-%s)", key)
		}
	}
	dir := filepath.Join(st.work, "up-"+key)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		ts.Fatalf("upstream start: %v", err)
	}
	ts.Check(os.Chmod(dir, 0o755))
	readyPath := filepath.Join(dir, fakeupstream.ReadyFile)
	os.Remove(readyPath)
	logf, err := os.OpenFile(filepath.Join(dir, "stderr.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	ts.Check(err)
	defer logf.Close()
	cmd := exec.Command(filepath.Join(st.h.binDir, "fakeupstream"), append([]string{"-dir", dir}, flags...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		ts.Fatalf("upstream start: %v", err)
	}
	u := &upstreamProc{name: name, dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() { u.err = cmd.Wait(); close(u.done) }()
	st.upstreams[key] = u
	ts.Defer(func() {
		if err := u.stop(); err != nil {
			ts.Logf("upstream %s: %v", key, err)
		}
	})
	err = poll(startTimeout, func() (bool, error) {
		if data, err := os.ReadFile(readyPath); err == nil {
			return true, json.Unmarshal(data, &u.ready)
		}
		if u.exited() {
			return false, fmt.Errorf("exited: %v", u.err)
		}
		return false, nil
	})
	if err != nil {
		out, _ := os.ReadFile(logf.Name())
		if neg {
			_, _ = ts.Stderr().Write(out)
			return
		}
		ts.Fatalf("upstream %s did not become ready: %v\n%s", key, err, out)
	}
	if neg {
		ts.Fatalf("upstream %s started, but failure was expected", key)
	}
	sfx := envSuffix(name)
	ts.Setenv("UPSTREAM_ADDR"+sfx, u.ready.Addr)
	ts.Setenv("UPSTREAM_PORT"+sfx, strconv.Itoa(u.ready.Port))
	ts.Setenv("UPSTREAM_CA"+sfx, u.ready.CAPath)
	ts.Setenv("UPSTREAM_LOG"+sfx, u.ready.LogPath)
	ts.Setenv("UPSTREAM_DIR"+sfx, dir)
	var resolve []string
	for _, n := range u.ready.Names {
		if !strings.Contains(n, "*") && n != "localhost" {
			resolve = append(resolve, n+"="+u.ready.Addr)
		}
	}
	ts.Setenv("UPSTREAM_RESOLVE"+sfx, strings.Join(resolve, ","))
}

// ---- daemon ----

type daemonProc struct {
	key      string
	cmd      *exec.Cmd
	done     chan struct{}
	err      error // exit status; valid once done is closed
	logPath  string
	logStart int64
	socket   string
}

func (d *daemonProc) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// output returns what this run of the daemon has written so far.
func (d *daemonProc) output() string {
	f, err := os.Open(d.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(d.logStart, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// killGroup kills whatever is left of the daemon's process group (workers).
func (d *daemonProc) killGroup() {
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
}

// signalAndWait sends sig and waits for exit; it escalates to SIGKILL after
// the timeout and reports whether the process exited on its own.
func (d *daemonProc) signalAndWait(sig syscall.Signal, timeout time.Duration) bool {
	if !d.exited() {
		_ = d.cmd.Process.Signal(sig)
	}
	select {
	case <-d.done:
		d.killGroup()
		return true
	case <-time.After(timeout):
		_ = d.cmd.Process.Kill()
		<-d.done
		d.killGroup()
		return false
	}
}

var signals = map[string]syscall.Signal{
	"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "TERM": syscall.SIGTERM, "KILL": syscall.SIGKILL,
	"USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "QUIT": syscall.SIGQUIT, "STOP": syscall.SIGSTOP, "CONT": syscall.SIGCONT,
}

func cmdDaemon(ts *testscript.TestScript, neg bool, args []string) {
	st := state(ts)
	if len(args) == 0 {
		ts.Fatalf("usage: daemon start|stop|kill|wait|pid|signal ...")
	}
	sub, args := args[0], args[1:]
	var name, asUser string
	timeout := startTimeout
	if sub == "stop" || sub == "wait" {
		timeout = stopTimeout
	}
	// Harness options come first; everything after them (or after "--")
	// goes to `aivault daemon`.
	for len(args) > 0 {
		switch {
		case args[0] == "--":
			args = args[1:]
		case args[0] == "-name" && len(args) > 1:
			if !nameRE.MatchString(args[1]) {
				ts.Fatalf("daemon: bad name %q", args[1])
			}
			name, args = args[1], args[2:]
			continue
		case args[0] == "-as" && len(args) > 1 && sub == "start":
			asUser, args = args[1], args[2:]
			continue
		case args[0] == "-timeout" && len(args) > 1:
			d, err := time.ParseDuration(args[1])
			if err != nil {
				ts.Fatalf("daemon: bad -timeout: %v", err)
			}
			timeout, args = d, args[2:]
			continue
		}
		break
	}
	key := name
	if key == "" {
		key = "default"
	}
	d := st.daemons[key]
	need := func() *daemonProc {
		if d == nil {
			ts.Fatalf("daemon %s was not started", key)
		}
		return d
	}
	check := func(what string) {
		_, _ = io.WriteString(ts.Stderr(), d.output())
		if (d.err == nil) == neg {
			if neg {
				ts.Fatalf("daemon %s %s: exited cleanly, failure expected", key, what)
			}
			ts.Fatalf("daemon %s %s: %v", key, what, d.err)
		}
	}
	switch sub {
	case "start":
		daemonStart(ts, st, neg, name, key, asUser, timeout, args)
	case "stop":
		need()
		if len(args) != 0 {
			ts.Fatalf("usage: daemon stop [-name N] [-timeout D]")
		}
		if !d.signalAndWait(syscall.SIGTERM, timeout) {
			_, _ = io.WriteString(ts.Stderr(), d.output())
			ts.Fatalf("daemon %s did not exit within %v of SIGTERM; killed", key, timeout)
		}
		check("stop")
	case "kill":
		need()
		d.signalAndWait(syscall.SIGKILL, timeout)
	case "wait":
		need()
		select {
		case <-d.done:
			d.killGroup()
		case <-time.After(timeout):
			ts.Fatalf("daemon %s still running after %v", key, timeout)
		}
		check("wait")
	case "signal":
		need()
		if len(args) != 1 || signals[strings.TrimPrefix(strings.ToUpper(args[0]), "SIG")] == 0 {
			ts.Fatalf("usage: daemon signal [-name N] HUP|INT|TERM|USR1|USR2|QUIT|KILL|STOP|CONT")
		}
		if d.exited() {
			ts.Fatalf("daemon %s has exited", key)
		}
		ts.Check(d.cmd.Process.Signal(signals[strings.TrimPrefix(strings.ToUpper(args[0]), "SIG")]))
	case "pid":
		need()
		ts.Setenv("DAEMON_PID"+envSuffix(name), strconv.Itoa(d.cmd.Process.Pid))
	default:
		ts.Fatalf("daemon: unknown subcommand %q", sub)
	}
}

// daemonSocket works out where the daemon will listen, as the product does.
func daemonSocket(env []string, args []string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--socket="); ok {
			return v
		}
		if a == "--socket" && i+1 < len(args) {
			return args[i+1]
		}
	}
	if slices.Contains(args, "--shared") {
		return "/var/run/aivault/aivaultd.sock"
	}
	if s := getenvFrom(env, "AIVAULTD_SOCKET"); s != "" {
		return s
	}
	if d := getenvFrom(env, "AIVAULT_DIR"); d != "" {
		return filepath.Join(d, "run", "aivaultd.sock")
	}
	return filepath.Join(getenvFrom(env, "HOME"), ".aivault", "run", "aivaultd.sock")
}

func daemonStart(ts *testscript.TestScript, st *scriptState, neg bool, name, key, asUser string, timeout time.Duration, args []string) {
	if d := st.daemons[key]; d != nil && !d.exited() {
		ts.Fatalf("daemon %s is already running (use -name for a second one)", key)
	}
	env, dir, stdin := snapshot(ts, st)
	defer stdin.Close()
	bin := filepath.Join(st.binDir, "aivault")
	argv := append([]string{bin, "daemon"}, args...)
	if asUser != "" {
		u := lookupUser(ts, "daemon start -as", asUser)
		env = setenvIn(env, "HOME", u.HomeDir)
		env = setenvIn(env, "USER", u.Username)
		env = setenvIn(env, "LOGNAME", u.Username)
		argv = append([]string{"setpriv", "--reuid", u.Uid, "--regid", u.Gid, "--init-groups", "--"}, argv...)
	}
	socket := daemonSocket(env, args)
	if socket != "" && !filepath.IsAbs(socket) {
		socket = filepath.Join(dir, socket)
	}
	logName := "daemon.log"
	if name != "" {
		logName = "daemon-" + name + ".log"
	}
	logPath := filepath.Join(st.work, logName)
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	ts.Check(err)
	defer logf.Close()
	fi, err := logf.Stat()
	ts.Check(err)
	path := argv[0]
	if !filepath.IsAbs(path) {
		if path, err = exec.LookPath(path); err != nil {
			ts.Fatalf("daemon start: %v", err)
		}
	}
	cmd := &exec.Cmd{Path: path, Args: argv, Env: env, Dir: dir, Stdin: stdin, Stdout: logf, Stderr: logf,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true}}
	if err := cmd.Start(); err != nil {
		ts.Fatalf("daemon start: %v", err)
	}
	d := &daemonProc{key: key, cmd: cmd, done: make(chan struct{}), logPath: logPath, logStart: fi.Size(), socket: socket}
	go func() { d.err = cmd.Wait(); close(d.done) }()
	st.daemons[key] = d
	ts.Defer(func() {
		if d.exited() {
			d.killGroup()
			return
		}
		if !d.signalAndWait(syscall.SIGTERM, stopTimeout) {
			ts.Logf("daemon %s: did not exit on SIGTERM at script end; killed", key)
		} else if d.err != nil {
			ts.Logf("daemon %s: at script end: %v", key, d.err)
		}
	})
	ts.Setenv("DAEMON_PID"+envSuffix(name), strconv.Itoa(cmd.Process.Pid))
	err = poll(timeout, func() (bool, error) {
		if d.exited() {
			return false, fmt.Errorf("daemon exited before its socket %s accepted connections: %v", socket, d.err)
		}
		c, err := net.DialTimeout("unix", socket, time.Second)
		if err != nil {
			return false, nil
		}
		c.Close()
		return true, nil
	})
	_, _ = io.WriteString(ts.Stderr(), d.output())
	switch {
	case err != nil && neg:
		if !d.exited() {
			d.signalAndWait(syscall.SIGKILL, stopTimeout)
		}
	case err != nil:
		if !d.exited() {
			d.signalAndWait(syscall.SIGKILL, stopTimeout)
		}
		ts.Fatalf("daemon %s: %v\n%s", key, err, d.output())
	case neg:
		ts.Fatalf("daemon %s started and listens on %s, but failure was expected", key, socket)
	}
}

// ---- users ----

// cmdAs runs a command as another unix user:
//
//	as USER [-i] [-u NAME]... [NAME=VALUE]... cmd args...
//
// -i starts from an empty environment (a clean login: PATH, HOME, USER,
// LOGNAME and the NAME=VALUE given, nothing of the script's).
func cmdAs(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: as USER [-i] [-u NAME]... [NAME=VALUE]... cmd args...")
	}
	u := lookupUser(ts, "as", args[0])
	rest := args[1:]
	// env(1) wants its -u options before any NAME=VALUE.
	var unset, assign []string
	clean := false
	for len(rest) > 0 {
		if rest[0] == "-i" {
			clean = true
			rest = rest[1:]
			continue
		}
		if rest[0] == "-u" && len(rest) > 1 {
			unset = append(unset, "-u", rest[1])
			rest = rest[2:]
			continue
		}
		if k, _, ok := strings.Cut(rest[0], "="); ok && k != "" && !strings.ContainsAny(k, "/") {
			assign = append(assign, rest[0])
			rest = rest[1:]
			continue
		}
		break
	}
	if len(rest) == 0 {
		ts.Fatalf("as: missing command")
	}
	argv := []string{"--reuid", u.Uid, "--regid", u.Gid, "--init-groups", "--", "env"}
	if clean {
		argv = append(argv, "-i", "PATH="+ts.Getenv("PATH"))
	} else {
		argv = append(argv, unset...)
	}
	argv = append(argv, "HOME="+u.HomeDir, "USER="+u.Username, "LOGNAME="+u.Username)
	argv = append(argv, assign...)
	argv = append(argv, rest...)
	err := ts.Exec("setpriv", argv...)
	if err == nil && neg {
		ts.Fatalf("unexpected command success")
	}
	if err != nil && !neg {
		ts.Fatalf("unexpected command failure: %v", err)
	}
}

func (h *harness) ensureGroup(g string) error {
	if _, err := user.LookupGroup(g); err == nil {
		return nil
	}
	if out, err := exec.Command("groupadd", g).CombinedOutput(); err != nil {
		return fmt.Errorf("groupadd %s: %w: %s", g, err, out)
	}
	h.groups = append(h.groups, g)
	return nil
}

// cmdUseradd creates a user (with a home dir) if absent and adds it to groups:
//
//	useradd USER [-G group[,group...]]
func cmdUseradd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || (len(args) != 1 && (len(args) != 3 || args[1] != "-G")) {
		ts.Fatalf("usage: useradd USER [-G group[,group]]")
	}
	if os.Geteuid() != 0 {
		ts.Fatalf("useradd needs root; guard the script with [root]")
	}
	h := state(ts).h
	name := args[0]
	if !regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,30}$`).MatchString(name) {
		ts.Fatalf("useradd: bad user name %q", name)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, err := user.Lookup(name); err != nil {
		if out, err := exec.Command("useradd", "-m", "-U", "-s", "/bin/sh", name).CombinedOutput(); err != nil {
			ts.Fatalf("useradd %s: %v: %s", name, err, out)
		}
		h.users = append(h.users, name)
	}
	if len(args) == 3 {
		for _, g := range strings.Split(args[2], ",") {
			ts.Check(h.ensureGroup(g))
			if out, err := exec.Command("usermod", "-aG", g, name).CombinedOutput(); err != nil {
				ts.Fatalf("usermod -aG %s %s: %v: %s", g, name, err, out)
			}
		}
	}
}

// cmdGroupadd creates a group if absent: groupadd GROUP
func cmdGroupadd(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: groupadd GROUP")
	}
	if os.Geteuid() != 0 {
		ts.Fatalf("groupadd needs root; guard the script with [root]")
	}
	h := state(ts).h
	h.mu.Lock()
	defer h.mu.Unlock()
	ts.Check(h.ensureGroup(args[0]))
}

// ---- noleak ----

// cmdNoleak is the secret scanner:
//
//	noleak [-except PATH]... VALUE [PATH...]
func cmdNoleak(ts *testscript.TestScript, neg bool, args []string) {
	st := state(ts)
	var except []string
	for len(args) > 1 && args[0] == "-except" {
		except = append(except, ts.MkAbs(args[1]))
		args = args[2:]
	}
	if len(args) == 0 || args[0] == "" {
		ts.Fatalf("usage: noleak [-except PATH]... VALUE [PATH...]")
	}
	variants := leakscan.Variants([]byte(args[0]))
	needles := make([][]byte, len(variants))
	for i, v := range variants {
		needles[i] = v.Bytes
	}
	findings := leakscan.ScanBytes(needles, "stdout (last command)", []byte(ts.ReadFile("stdout")))
	findings = append(findings, leakscan.ScanBytes(needles, "stderr (last command)", []byte(ts.ReadFile("stderr")))...)

	vault := ts.Getenv("AIVAULT_DIR")
	under := func(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+string(filepath.Separator)) }
	var paths []string
	if len(args) == 1 {
		paths = []string{st.work}
		for _, extra := range []string{vault, ts.Getenv("HOME")} {
			if extra != "" && !under(ts.MkAbs(extra), st.work) {
				paths = append(paths, ts.MkAbs(extra))
			}
		}
	} else {
		for _, p := range args[1:] {
			paths = append(paths, ts.MkAbs(p))
		}
		logs, _ := filepath.Glob(filepath.Join(st.work, "daemon*.log"))
		paths = append(paths, logs...)
		if vault != "" {
			paths = append(paths, filepath.Join(ts.MkAbs(vault), "audit"))
		}
	}
	// The upstream legitimately receives secrets, and the script's own
	// archive files are its inputs; neither is a leak.
	ups, _ := filepath.Glob(filepath.Join(st.work, "up-*"))
	excl := append(append(except, ups...), sortedKeys(st.archive)...)
	res, err := leakscan.ScanWithOptions(leakscan.Options{Needles: needles, Paths: paths, Exclude: excl})
	if err != nil {
		ts.Fatalf("noleak: %v", err)
	}
	findings = append(findings, res.Findings...)
	ts.Logf("noleak: %d encodings searched in stdout, stderr and %d files (%d bytes) under %s; excluded %d paths; %d findings",
		len(needles), res.Files, res.Bytes, strings.Join(paths, " "), len(excl), len(findings))
	if neg {
		if len(findings) == 0 {
			ts.Fatalf("noleak: the value was expected somewhere but was not found")
		}
		return
	}
	if len(findings) > 0 {
		var b strings.Builder
		for _, f := range findings {
			fmt.Fprintf(&b, "\n\t%s at byte %d (%s form)", ts.MkAbs(f.Path), f.Offset, variants[f.Needle].Name)
		}
		ts.Fatalf("noleak: SECRET LEAKED in %d places:%s", len(findings), b.String())
	}
}

// ---- small helpers ----

// cmdWaitfile polls until PATH exists (or, negated, until it is gone):
//
//	waitfile [-timeout D] PATH
func cmdWaitfile(ts *testscript.TestScript, neg bool, args []string) {
	timeout := startTimeout
	if len(args) == 3 && args[0] == "-timeout" {
		d, err := time.ParseDuration(args[1])
		if err != nil {
			ts.Fatalf("waitfile: bad -timeout: %v", err)
		}
		timeout, args = d, args[2:]
	}
	if len(args) != 1 {
		ts.Fatalf("usage: waitfile [-timeout D] PATH")
	}
	p := ts.MkAbs(args[0])
	err := poll(timeout, func() (bool, error) {
		_, err := os.Lstat(p)
		return (err == nil) != neg, nil
	})
	if err != nil {
		ts.Fatalf("waitfile %s (exists=%v wanted): %v", args[0], !neg, err)
	}
}

// cmdJSONGet prints a field of a JSON file (or of stdout/stderr):
//
//	jsonget [-n N] FILE PATH
func cmdJSONGet(ts *testscript.TestScript, neg bool, args []string) {
	n := 0
	if len(args) == 4 && args[0] == "-n" {
		var err error
		if n, err = strconv.Atoi(args[1]); err != nil || n == 0 {
			ts.Fatalf("jsonget: -n wants a non-zero integer (1 = first value, -1 = last)")
		}
		args = args[2:]
	}
	if len(args) != 2 {
		ts.Fatalf("usage: jsonget [-n N] FILE PATH")
	}
	doc := []byte(ts.ReadFile(args[0]))
	if n != 0 {
		vals, err := jsonpath.Values(doc)
		if err != nil {
			ts.Fatalf("jsonget: %s: %v", args[0], err)
		}
		i := n - 1
		if n < 0 {
			i = len(vals) + n
		}
		if i < 0 || i >= len(vals) {
			ts.Fatalf("jsonget: %s holds %d JSON values; no value %d", args[0], len(vals), n)
		}
		doc = vals[i]
	}
	v, err := jsonpath.Get(doc, args[1])
	switch {
	case errors.Is(err, jsonpath.ErrNotFound) && neg:
		return
	case err != nil:
		ts.Fatalf("jsonget %s %s: %v", args[0], args[1], err)
	case neg:
		ts.Fatalf("jsonget: %s exists in %s", args[1], args[0])
	}
	fmt.Fprintln(ts.Stdout(), jsonpath.Format(v))
}

// cmdGrepcount asserts how many lines of FILE (or stdout/stderr) match:
//
//	grepcount PATTERN FILE N
func cmdGrepcount(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: grepcount PATTERN FILE N")
	}
	re, err := regexp.Compile(args[0])
	if err != nil {
		ts.Fatalf("grepcount: %v", err)
	}
	want, err := strconv.Atoi(args[2])
	if err != nil {
		ts.Fatalf("grepcount: bad N %q", args[2])
	}
	got := 0
	sc := bufio.NewScanner(strings.NewReader(ts.ReadFile(args[1])))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		if re.Match(sc.Bytes()) {
			got++
		}
	}
	ts.Check(sc.Err())
	if (got == want) == neg {
		ts.Fatalf("grepcount: %d lines of %s match %q; want %s%d", got, args[1], args[0], map[bool]string{true: "not ", false: ""}[neg], want)
	}
}

// cmdExitcode runs a command and asserts its exit status:
//
//	exitcode N cmd args...
func cmdExitcode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exitcode N cmd args...")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exitcode: bad N %q", args[0])
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exitcode: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("exit status %d, want %d", got, want)
	}
}

// cmdFetch does one HTTPS request to the fake upstream and prints
// "status N", the headers with -i, and the body:
//
//	fetch [-ca FILE] [-connect ADDR] [-cert FILE -key FILE] [-X METHOD] [-H 'K: V']... [-d BODY] [-i] [-o FILE] URL
//
// With -o the body goes to FILE instead of stdout.
func cmdFetch(ts *testscript.TestScript, neg bool, args []string) {
	caPath := ts.Getenv("UPSTREAM_CA")
	connect := ts.Getenv("UPSTREAM_ADDR")
	method, body := "GET", ""
	var certPath, keyPath, outFile string
	var headers []string
	showHeaders := false
	for len(args) > 1 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-i":
			showHeaders, args = true, args[1:]
			continue
		case "-ca":
			caPath = args[1]
		case "-connect":
			connect = args[1]
		case "-cert":
			certPath = args[1]
		case "-key":
			keyPath = args[1]
		case "-X":
			method = args[1]
		case "-H":
			headers = append(headers, args[1])
		case "-d":
			body = args[1]
		case "-o":
			outFile = args[1]
		default:
			ts.Fatalf("fetch: unknown flag %s", args[0])
		}
		args = args[2:]
	}
	if len(args) != 1 {
		ts.Fatalf("usage: fetch [-ca FILE] [-connect ADDR] [-cert F -key F] [-X METHOD] [-H 'K: V']... [-d BODY] [-i] [-o FILE] URL")
	}
	tlsConf := &tls.Config{}
	if caPath != "" {
		pem, err := os.ReadFile(ts.MkAbs(caPath))
		ts.Check(err)
		tlsConf.RootCAs = x509.NewCertPool()
		if !tlsConf.RootCAs.AppendCertsFromPEM(pem) {
			ts.Fatalf("fetch: no certificates in %s", caPath)
		}
	}
	if certPath != "" {
		pair, err := tls.LoadX509KeyPair(ts.MkAbs(certPath), ts.MkAbs(keyPath))
		ts.Check(err)
		tlsConf.Certificates = []tls.Certificate{pair}
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	client := &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:    tlsConf,
			DisableCompression: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if connect != "" {
					addr = connect
				}
				return dialer.DialContext(ctx, network, addr)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	defer client.CloseIdleConnections()
	u, err := url.Parse(args[0])
	if err != nil {
		ts.Fatalf("fetch: %v", err)
	}
	req, err := http.NewRequest(method, u.String(), strings.NewReader(body))
	ts.Check(err)
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			ts.Fatalf("fetch: header %q is not 'Name: value'", h)
		}
		req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	resp, err := client.Do(req)
	if err != nil {
		if neg {
			fmt.Fprintln(ts.Stderr(), err)
			return
		}
		ts.Fatalf("fetch: %v", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil && !neg {
		ts.Fatalf("fetch: read body: %v", err)
	}
	if neg && err == nil {
		ts.Fatalf("fetch: request succeeded (status %d), failure expected", resp.StatusCode)
	}
	out := ts.Stdout()
	fmt.Fprintf(out, "status %d\n", resp.StatusCode)
	if showHeaders {
		for _, k := range sortedKeys(resp.Header) {
			for _, v := range resp.Header[k] {
				fmt.Fprintf(out, "%s: %s\n", k, v)
			}
		}
		fmt.Fprintln(out)
	}
	if outFile != "" {
		ts.Check(os.WriteFile(ts.MkAbs(outFile), data, 0o644))
		return
	}
	_, _ = out.Write(data)
}
