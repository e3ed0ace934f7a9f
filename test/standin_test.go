package test

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

// standinMain is a minimal stand-in for the product binary, used by
// TestHarness to exercise the harness's commands (daemon, as, exitcode, …)
// without depending on the product. It runs when the test binary is invoked
// as aivault/aivaultd/setup with AIVAULT_HARNESS_STANDIN=1.
func standinMain(name string, args []string) int {
	switch name {
	case "aivaultd":
		return standinDaemon(args)
	case "setup":
		if len(args) == 1 && args[0] == "--help" {
			fmt.Println("setup (harness stand-in): usage: setup [flags]")
			return 0
		}
		fmt.Fprintln(os.Stderr, "setup: error: stand-in only knows --help")
		return 2
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "aivault: error: missing command")
		return 2
	}
	switch args[0] {
	case "--version", "version":
		fmt.Println("aivault 0.0.0-harness-standin")
		return 0
	case "--help", "help":
		fmt.Println("aivault (harness stand-in): usage: aivault COMMAND")
		return 0
	case "daemon":
		return standinDaemon(args[1:])
	case "whoami":
		groups, _ := os.Getgroups()
		fmt.Printf("uid=%d gid=%d groups=%v home=%s user=%s\n", os.Getuid(), os.Getgid(), groups, os.Getenv("HOME"), os.Getenv("USER"))
		return 0
	case "printenv":
		for _, k := range args[1:] {
			fmt.Printf("%s=%s\n", k, os.Getenv(k))
		}
		return 0
	case "cat-stdin":
		_, _ = io.Copy(os.Stdout, os.Stdin)
		return 0
	case "exit":
		var code int
		if len(args) == 2 {
			fmt.Sscan(args[1], &code)
		}
		return code
	case "writefile":
		// writefile FILE CONTENT: lets scripts plant a value in a file.
		if len(args) != 3 {
			return 2
		}
		if err := os.WriteFile(args[1], []byte(args[2]), 0o600); err != nil {
			fmt.Fprintln(os.Stderr, "aivault: error:", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(os.Stderr, "aivault: error: unknown command %q\n", args[0])
	fmt.Fprintln(os.Stderr, "aivault: hint: see 'aivault --help'")
	return 2
}

func standinDaemon(args []string) int {
	fs := flag.NewFlagSet("daemon", flag.ContinueOnError)
	socket := fs.String("socket", "", "socket path")
	fail := fs.Bool("fail", false, "exit 3 at once")
	exitCode := fs.Int("exit-on-term", 0, "exit status after SIGTERM")
	printEnv := fs.String("print-env", "", "comma-separated env vars to print at start")
	readStdin := fs.Bool("read-stdin", false, "print the length and first line of stdin")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *fail {
		fmt.Fprintln(os.Stderr, "aivaultd: error: refusing to start (stand-in --fail)")
		return 3
	}
	for _, k := range strings.Split(*printEnv, ",") {
		if k != "" {
			fmt.Fprintf(os.Stderr, "env %s=%s\n", k, os.Getenv(k))
		}
	}
	if *readStdin {
		b, _ := io.ReadAll(os.Stdin)
		first, _, _ := strings.Cut(string(b), "\n")
		fmt.Fprintf(os.Stderr, "stdin %d bytes, first line %q\n", len(b), first)
	}
	if *socket == "" {
		*socket = os.Getenv("AIVAULTD_SOCKET")
	}
	if *socket == "" {
		if d := os.Getenv("AIVAULT_DIR"); d != "" {
			*socket = filepath.Join(d, "run", "aivaultd.sock")
		} else {
			*socket = filepath.Join(os.Getenv("HOME"), ".aivault", "run", "aivaultd.sock")
		}
	}
	if err := os.MkdirAll(filepath.Dir(*socket), 0o700); err != nil {
		fmt.Fprintln(os.Stderr, "aivaultd: error:", err)
		return 1
	}
	os.Remove(*socket)
	// Signals are caught before the socket exists: once it accepts, the
	// harness may signal us at once.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	// Printed before listening: once the socket accepts, the harness stops
	// waiting and reads the output so far.
	fmt.Fprintf(os.Stderr, "aivaultd: listening on %s as uid %d\n", *socket, os.Getuid())
	ln, err := net.Listen("unix", *socket)
	if err != nil {
		fmt.Fprintln(os.Stderr, "aivaultd: error:", err)
		return 1
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "stand-in")
			c.Close()
		}
	}()
	for s := range sigs {
		if s == syscall.SIGHUP {
			fmt.Fprintln(os.Stderr, "aivaultd: got SIGHUP")
			continue
		}
		break
	}
	ln.Close()
	fmt.Fprintln(os.Stderr, "aivaultd: stopping")
	return *exitCode
}
