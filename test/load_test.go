package test

import (
	"context"
	"flag"
	"fmt"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/aivault/aivault/test/bench/load"
	"github.com/rogpeppe/go-internal/testscript"
)

// cmdLoadgen drives a running daemon through its socket with the load
// package (the same driver as `make soak` and the benchmark):
//
//	loadgen [-n N] [-c C] [-kill K] [-pool P] -pid PID SOCKET CAPABILITY METHOD PATH
//
// runs N invocations (default 2000) with C in flight (default 64) of
// CAPABILITY with METHOD and PATH?n=<i>, SIGKILLs K busy workers on the way,
// and fails on any error other than the killed workers' own requests (which
// must end WorkerFailed), on an answer that is not the fake upstream's echo
// of that very request, on daemon descriptors or RSS growing from the first
// to the last tenth (generous tolerance: a leak check, not a timing
// threshold), and unless exactly P idle workers remain afterwards. The
// summary goes to stdout. Needs root (it reads the daemon's /proc/PID/fd).
//
//	loadgen -gone USER
//
// waits (up to 15s) until USER owns no process, and fails otherwise.
func cmdLoadgen(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("loadgen does not support !")
	}
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	n := fs.Int("n", 2000, "invocations")
	c := fs.Int("c", 64, "concurrency")
	kills := fs.Int("kill", 0, "busy workers to kill")
	pool := fs.Int("pool", 2, "the daemon's --pool")
	pid := fs.Int("pid", 0, "the daemon's pid")
	gone := fs.String("gone", "", "wait until this user has no process")
	if err := fs.Parse(args); err != nil {
		ts.Fatalf("loadgen: %v", err)
	}
	if *gone != "" {
		u, err := user.Lookup(*gone)
		ts.Check(err)
		uid, _ := strconv.Atoi(u.Uid)
		var left []int
		err = poll(15*time.Second, func() (bool, error) {
			left = load.ProcsOfUID(uid)
			return len(left) == 0, nil
		})
		if err != nil {
			var names []string
			for _, p := range left {
				names = append(names, fmt.Sprintf("%d(%s)", p, load.Comm(p)))
			}
			ts.Fatalf("processes of %s left behind: %s", *gone, strings.Join(names, " "))
		}
		return
	}
	if fs.NArg() != 4 || *pid <= 0 {
		ts.Fatalf("usage: loadgen [-n N] [-c C] [-kill K] [-pool P] -pid PID SOCKET CAPABILITY METHOD PATH")
	}
	sock, capID, method, path := ts.MkAbs(fs.Arg(0)), fs.Arg(1), fs.Arg(2), fs.Arg(3)
	target := func(i int) string { return path + "?n=" + strconv.Itoa(i) }
	r := load.Run(context.Background(), load.Config{
		Socket: sock, N: *n, Concurrency: *c, DaemonPID: *pid, PoolSize: *pool, Kills: *kills,
		Request: func(i int) load.Request {
			return load.Request{Capability: capID, Method: method, Path: target(i)}
		},
		Validate: func(i int, o load.Outcome) error {
			if o.Status != 200 {
				return fmt.Errorf("status %d", o.Status)
			}
			// The fake upstream echoes the request target: each answer
			// must belong to its own request.
			if !strings.Contains(string(o.Body), `"target":"`+target(i)+`"`) {
				return fmt.Errorf("answer is not the echo of %s: %.200s", target(i), o.Body)
			}
			return nil
		},
	})
	summary := r.Summary()
	ts.Logf("%s", summary)
	_, _ = ts.Stdout().Write([]byte(summary))
	if p := r.Problems(); len(p) > 0 {
		ts.Fatalf("load run failed:\n  %s", strings.Join(p, "\n  "))
	}
}
