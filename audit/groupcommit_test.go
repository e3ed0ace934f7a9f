package audit

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestGroupCommit holds the log busy while one call commits and eight more
// arrive: those eight must be written by one commit, each call's events
// contiguous and in order, and every call must see success.
func TestGroupCommit(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, newClock(day1))
	defer l.Close()

	l.mu.Lock() // a commit "in progress": the first caller becomes leader and waits here
	errs := make(chan error, 9)
	go func() { errs <- l.Append(Event{Kind: "first"}) }()
	waitFor(t, func() bool { l.qmu.Lock(); defer l.qmu.Unlock(); return l.leader && len(l.queue) == 0 })
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			evs := []Event{}
			for i := range 3 {
				evs = append(evs, Event{Kind: "batch", Detail: map[string]string{"g": strconv.Itoa(g), "i": strconv.Itoa(i)}})
			}
			errs <- l.AppendBatch(evs)
		}()
	}
	waitFor(t, func() bool { l.qmu.Lock(); defer l.qmu.Unlock(); return len(l.queue) == 8 })
	before := l.commits
	l.mu.Unlock()
	wg.Wait()
	for range 9 {
		if err := <-errs; err != nil {
			t.Fatalf("append: %v", err)
		}
	}
	l.mu.Lock()
	commits := l.commits - before
	l.mu.Unlock()
	if commits != 2 {
		t.Fatalf("commits = %d, want 2 (the leader's own, then the 8 queued calls together)", commits)
	}
	rep := mustVerify(t, dir)
	if rep.Records != 25 {
		t.Fatalf("records = %d, want 25", rep.Records)
	}
	evs, err := Query(dir, QueryOptions{Limit: 100, Kind: "batch"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 24 {
		t.Fatalf("batch events = %d, want 24", len(evs))
	}
	// Query returns newest first; walk oldest first: runs of three per g.
	for k := 0; k < 24; k += 3 {
		g := evs[23-k].Detail["g"]
		for i := range 3 {
			e := evs[23-k-i]
			if e.Detail["g"] != g || e.Detail["i"] != strconv.Itoa(i) {
				t.Fatalf("call %s's events are not contiguous and in order at %d: %v", g, k+i, e.Detail)
			}
		}
	}
}

// TestGroupCommitBadEvent: a call whose event cannot be sealed (too large)
// fails alone; the calls committed with it succeed.
func TestGroupCommitBadEvent(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, newClock(day1))
	defer l.Close()
	mk := func(evs ...Event) *pendingAppend { return &pendingAppend{evs: evs, done: make(chan error, 1)} }
	good1 := mk(Event{Kind: "a"})
	bad := mk(Event{Kind: "b", Reason: strings.Repeat("x", MaxRecordBytes)})
	good2 := mk(Event{Kind: "c"}, Event{Kind: "d"})
	l.commit([]*pendingAppend{good1, bad, good2})
	if err := <-good1.done; err != nil {
		t.Fatalf("good call 1: %v", err)
	}
	if err := <-bad.done; err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("oversized call: err = %v, want the size limit", err)
	}
	if err := <-good2.done; err != nil {
		t.Fatalf("good call 2: %v", err)
	}
	rep := mustVerify(t, dir)
	if rep.Records != 3 {
		t.Fatalf("records = %d, want 3 (a, c, d)", rep.Records)
	}
	evs, err := Query(dir, QueryOptions{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range evs {
		kinds = append(kinds, e.Kind)
	}
	if got := strings.Join(kinds, ","); got != "d,c,a" {
		t.Fatalf("kinds newest first = %s, want d,c,a", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
