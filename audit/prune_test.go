package audit

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// buildDays writes n records on each of the given days (offsets from day1).
func buildDays(t *testing.T, dir string, n int, days ...int) {
	t.Helper()
	c := newClock(day1)
	l := openTest(t, dir, c)
	for _, d := range days {
		c.Set(day1.AddDate(0, 0, d))
		for range n {
			if err := l.Append(Event{Kind: "invoke", User: "alice"}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestPrune(t *testing.T) {
	tests := []struct {
		name        string
		days        []int
		now         time.Time
		maxAge      time.Duration
		wantRemoved []string
		wantFiles   []string
		wantRecords int // records left, checkpoint included
	}{
		{
			name: "nothing old enough", days: []int{0, 1, 2}, now: day1.AddDate(0, 0, 2), maxAge: 72 * time.Hour,
			wantFiles: []string{"2025-03-01.jsonl", "2025-03-02.jsonl", "2025-03-03.jsonl"}, wantRecords: 9,
		},
		{
			// now = 03-05 10:00, cutoff 03-03 10:00: days ending by then go.
			name: "two old days", days: []int{0, 1, 2, 4}, now: day1.AddDate(0, 0, 4), maxAge: 48 * time.Hour,
			wantRemoved: []string{"2025-03-01.jsonl", "2025-03-02.jsonl"},
			wantFiles:   []string{"2025-03-03.jsonl", "2025-03-05.jsonl"}, wantRecords: 7,
		},
		{
			name: "everything old: the checkpoint starts the chain", days: []int{0, 1}, now: day1.AddDate(0, 0, 30), maxAge: 24 * time.Hour,
			wantRemoved: []string{"2025-03-01.jsonl", "2025-03-02.jsonl"},
			wantFiles:   []string{"2025-03-31.jsonl"}, wantRecords: 1,
		},
		{
			name: "maxAge zero keeps today", days: []int{0, 1}, now: day1.AddDate(0, 0, 1), maxAge: 0,
			wantRemoved: []string{"2025-03-01.jsonl"},
			wantFiles:   []string{"2025-03-02.jsonl"}, wantRecords: 4,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			buildDays(t, dir, 3, tc.days...)
			removed, err := Prune(dir, testKey, tc.maxAge, tc.now)
			if err != nil {
				t.Fatalf("Prune: %v", err)
			}
			if !slices.Equal(removed, tc.wantRemoved) {
				t.Errorf("removed %v, want %v", removed, tc.wantRemoved)
			}
			rep := mustVerify(t, dir)
			if !slices.Equal(rep.Files, tc.wantFiles) || rep.Records != tc.wantRecords {
				t.Errorf("after prune: files %v records %d; want %v %d", rep.Files, rep.Records, tc.wantFiles, tc.wantRecords)
			}
			if len(tc.wantRemoved) == 0 {
				return
			}
			if !rep.Anchored {
				t.Error("report not anchored")
			}
			cps, err := Query(dir, QueryOptions{Kind: KindCheckpoint})
			if err != nil {
				t.Fatal(err)
			}
			if len(cps) != 1 || cps[0].Detail["removed"] != strings.Join(tc.wantRemoved, ",") || cps[0].Detail["anchorFile"] != tc.wantFiles[0] {
				t.Errorf("checkpoint records: %+v", cps)
			}
			// The chain keeps growing and verifying after the cut.
			l := openTest(t, dir, newClock(tc.now))
			if err := l.Append(Event{Kind: "after"}); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			if rep := mustVerify(t, dir); rep.Records != tc.wantRecords+1 {
				t.Errorf("after append: %d records", rep.Records)
			}
			// Removing the anchor is detected at the first kept record.
			snap := snapshot(t, dir)
			if err := os.Remove(filepath.Join(dir, anchorName)); err != nil {
				t.Fatal(err)
			}
			rep, err = Verify(dir, testKey)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK || rep.FirstBad.File != tc.wantFiles[0] || rep.FirstBad.Line != 1 {
				t.Errorf("anchor removed: OK=%v FirstBad=%v", rep.OK, rep.FirstBad)
			}
			restore(t, dir, snap)
			mustVerify(t, dir)
		})
	}
}

func TestPruneTwiceAndInterrupted(t *testing.T) {
	dir := t.TempDir()
	buildDays(t, dir, 2, 0, 1, 2, 3, 4)
	if _, err := Prune(dir, testKey, 48*time.Hour, day1.AddDate(0, 0, 3)); err != nil { // removes 03-01
		t.Fatal(err)
	}
	snapBefore := snapshot(t, dir)
	removed, err := Prune(dir, testKey, 24*time.Hour, day1.AddDate(0, 0, 4)) // cutoff 03-04 10:00: removes 03-02, 03-03
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"2025-03-02.jsonl", "2025-03-03.jsonl"}
	if !slices.Equal(removed, want) {
		t.Fatalf("removed %v, want %v", removed, want)
	}
	rep := mustVerify(t, dir)
	if rep.FirstSeq != 7 || rep.Files[0] != "2025-03-04.jsonl" {
		t.Errorf("FirstSeq = %d, Files %v; want 7 from 2025-03-04.jsonl", rep.FirstSeq, rep.Files)
	}
	// An interrupted prune: the anchor was written, a file not yet removed.
	name := "2025-03-03.jsonl"
	if err := os.WriteFile(filepath.Join(dir, name), snapBefore[name], 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err = Verify(dir, testKey)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.FirstBad.File != name || !strings.Contains(rep.FirstBad.Why, "interrupted prune") {
		t.Errorf("leftover file: OK=%v FirstBad=%v", rep.OK, rep.FirstBad)
	}
	l := openTest(t, dir, newClock(day1.AddDate(0, 0, 4)))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open did not finish the prune: %v", err)
	}
	mustVerify(t, dir)
}

func TestPruneRefusals(t *testing.T) {
	dir := t.TempDir()
	buildDays(t, dir, 3, 0, 1, 2)
	if _, err := Prune(dir, testKey, -time.Hour, day1); err == nil {
		t.Error("negative maxAge accepted")
	}
	if _, err := Prune(dir, []byte("short"), time.Hour, day1); !errors.Is(err, ErrKey) {
		t.Errorf("short key: %v", err)
	}
	// A tampered log is not pruned (pruning must not launder tampering).
	p := filepath.Join(dir, "2025-03-01.jsonl")
	ls := readLines(t, p)
	writeLines(t, p, append(ls[:1], ls[2:]...))
	if _, err := Prune(dir, testKey, 0, day1.AddDate(0, 0, 10)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Prune of a tampered log: %v, want ErrCorrupt", err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Errorf("tampered file removed: %v", err)
	}
}
