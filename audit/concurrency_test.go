package audit

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
)

const (
	envHelperDir = "AUDIT_TEST_HELPER_DIR"
	envHelperID  = "AUDIT_TEST_HELPER_ID"
	envHelperN   = "AUDIT_TEST_HELPER_N"
)

// TestHelperProcess is not a test: TestConcurrentAppend re-executes the test
// binary with it to append from separate processes.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(envHelperDir)
	if dir == "" {
		t.Skip("helper process only")
	}
	n, err := strconv.Atoi(os.Getenv(envHelperN))
	if err != nil {
		t.Fatal(err)
	}
	writer := os.Getenv(envHelperID)
	l, err := Open(dir, testKey, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := l.Append(Event{Kind: "invoke", Detail: map[string]string{"writer": writer, "i": strconv.Itoa(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentAppend appends from 20 goroutines (over two Logs in this
// process, which also serialise on the flock) and from 4 other processes at
// once; the chain must verify and hold every record exactly once, each
// writer's records in its own order.
func TestConcurrentAppend(t *testing.T) {
	if os.Getenv(envHelperDir) != "" {
		t.Skip("inside a helper")
	}
	const (
		goroutines = 20
		perG       = 10
		procs      = 4
		perProc    = 25
	)
	dir := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for p := range procs {
		cmd := exec.Command(exe, "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), envHelperDir+"="+dir, envHelperID+"=p"+strconv.Itoa(p), envHelperN+"="+strconv.Itoa(perProc))
		out := new(bytes.Buffer)
		cmd.Stdout, cmd.Stderr = out, out
		outs = append(outs, out)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	logs := [2]*Log{}
	for i := range logs {
		l, err := Open(dir, testKey, Options{})
		if err != nil {
			t.Fatal(err)
		}
		logs[i] = l
	}
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			l := logs[g%2]
			for i := range perG {
				if err := l.Append(Event{Kind: "invoke", Detail: map[string]string{"writer": "g" + strconv.Itoa(g), "i": strconv.Itoa(i)}}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, l := range logs {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("helper process %d: %v\n%s", i, err, outs[i])
		}
	}
	total := goroutines*perG + procs*perProc
	rep := mustVerify(t, dir)
	if rep.Records != total {
		t.Errorf("Records = %d, want %d", rep.Records, total)
	}
	evs, err := Query(dir, QueryOptions{Limit: MaxQueryLimit})
	if err != nil {
		t.Fatal(err)
	}
	next := map[string]int{} // per writer, the next i expected (oldest first)
	for j := len(evs) - 1; j >= 0; j-- {
		w, i := evs[j].Detail["writer"], evs[j].Detail["i"]
		if want := strconv.Itoa(next[w]); i != want {
			t.Fatalf("writer %s: record i=%s, want %s (lost, duplicated or reordered)", w, i, want)
		}
		next[w]++
	}
	for g := range goroutines {
		if n := next["g"+strconv.Itoa(g)]; n != perG {
			t.Errorf("goroutine %d: %d records", g, n)
		}
	}
	for p := range procs {
		if n := next[fmt.Sprintf("p%d", p)]; n != perProc {
			t.Errorf("process %d: %d records", p, n)
		}
	}
}
