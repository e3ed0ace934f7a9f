package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aivault/aivault/test/bench/load"
)

// soak is `make soak`: o.soak invocations at o.soakConc through the daemon
// (run as a non-root user when we are root), killing o.kills busy workers on
// the way. It fails on any error other than the killed workers' own
// requests, on descriptors or RSS growing from the first to the last tenth,
// and on workers left behind (while running and after the daemon stopped).
func soak(ctx context.Context, o options) error {
	e := &benchEnv{logw: os.Stderr, pool: o.pool}
	defer e.close()
	if err := e.setup(ctx, o.bin); err != nil {
		return err
	}
	fmt.Printf("soak: %d invocations at concurrency %d, %d workers killed on the way; daemon pid %d (uid %d, --pool %d)\n",
		o.soak, o.soakConc, o.kills, e.daemonPID, e.uid, o.pool)
	req := load.Request{Capability: capability, Method: "POST", Path: requestPath, Body: []byte(requestBody)}
	r := load.Run(ctx, load.Config{
		Socket: e.sock, N: o.soak, Concurrency: o.soakConc,
		Request:   func(int) load.Request { return req },
		Validate:  func(_ int, out load.Outcome) error { return checkAnswer(out.Status, out.Body) },
		DaemonPID: e.daemonPID, PoolSize: o.pool, Kills: o.kills, Log: os.Stdout,
	})
	fmt.Print(r.Summary())
	problems := r.Problems()
	if e.asUser {
		pid := e.daemonPID
		if err := e.stopDaemon(); err != nil {
			problems = append(problems, fmt.Sprintf("daemon stop: %v", err))
		}
		deadline := time.Now().Add(10 * time.Second)
		var left []int
		for {
			left = load.ProcsOfUID(e.uid)
			if len(left) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if len(left) > 0 {
			var names []string
			for _, p := range left {
				names = append(names, fmt.Sprintf("%d(%s)", p, load.Comm(p)))
			}
			problems = append(problems, fmt.Sprintf("processes of %s left after daemon %d stopped: %s", e.user, pid, strings.Join(names, " ")))
		}
	}
	if len(problems) > 0 {
		return errors.New("soak failed:\n  " + strings.Join(problems, "\n  "))
	}
	fmt.Println("soak: ok (0 errors beyond the killed workers' requests, descriptors and RSS flat, no worker left behind)")
	return nil
}
