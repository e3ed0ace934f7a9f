// Package applets holds aivault's front doors: the aivault CLI, the aivaultd
// daemon, the setup applet and the worker entry. Everything below it (crypt,
// policy, ipc, sandbox, audit) is wired together here.
package applets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/aivault/aivault/applets/devhooks"
	"github.com/aivault/aivault/policy"
	"github.com/aivault/aivault/sandbox"
	"github.com/spf13/cobra"
)

// Exit codes: 0 ok, 1 error, 2 usage.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// Main dispatches on the name the binary was invoked as.
func Main(name string, args []string) int {
	switch name {
	case "aivault-worker":
		return sandbox.WorkerMain()
	}
	if vars := devhooks.DevVars(os.Environ()); len(vars) > 0 && !devhooks.Enabled {
		fmt.Fprintf(os.Stderr, "aivault: error: %s is set, but this is a release build without test hooks\n", strings.Join(vars, ", "))
		fmt.Fprintf(os.Stderr, "aivault: hint: unset it; test hooks exist only in the devhooks build (make dev → bin/aivault-dev)\n")
		return exitError
	}
	var root *cobra.Command
	switch name {
	case "aivaultd":
		root = newDaemonCmd(true)
	case "setup", "aivault-setup":
		root = newSetupCmd(true)
	default:
		root = newRootCmd(args...)
	}
	return execute(root, args, os.Stdout, os.Stderr)
}

func execute(root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SilenceErrors = true
	root.SilenceUsage = true
	ctx, stop := signalContext()
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	return reportError(stderr, err)
}

// usageError marks a command-line mistake (exit 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitCodeError carries an exit status without printing anything more.
type exitCodeError struct{ code int }

func (e *exitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// reportError prints an error age-style ("aivault: error: …" then
// "aivault: hint: …") and returns the exit code.
func reportError(w io.Writer, err error) int {
	var ec *exitCodeError
	if errors.As(err, &ec) {
		return ec.code
	}
	var ue *usageError
	var pe *policy.Error
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(w, "aivault: error: %s\n", ue.msg)
		fmt.Fprintf(w, "aivault: hint: see 'aivault --help' or '<command> --help'\n")
		return exitUsage
	case errors.As(err, &pe):
		fmt.Fprintf(w, "aivault: error: %s: %s\n", pe.Class, pe.Msg)
		if pe.Hint != "" {
			fmt.Fprintf(w, "aivault: hint: %s\n", pe.Hint)
		}
		return exitError
	case isCobraUsage(err):
		fmt.Fprintf(w, "aivault: error: %s\n", err)
		fmt.Fprintf(w, "aivault: hint: see 'aivault --help' or '<command> --help'\n")
		return exitUsage
	default:
		fmt.Fprintf(w, "aivault: error: %s\n", err)
		return exitError
	}
}

func isCobraUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument", "invalid argument", "accepts ", "requires at least", "required flag", "if any flags in the group"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

var _ = context.Background
