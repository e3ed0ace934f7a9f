package audit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const perDay = 5

var threeDays = []string{"2025-03-01.jsonl", "2025-03-02.jsonl", "2025-03-03.jsonl"}

// buildThreeDays writes perDay records on each of three consecutive days.
func buildThreeDays(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "audit")
	c := newClock(day1)
	l := openTest(t, dir, c)
	for d := range 3 {
		for i := range perDay {
			ev := Event{
				Kind: "invoke", Decision: "allow", User: "alice", UID: intp(1000), GID: intp(1000),
				Capability: "openai/chat", Method: "POST", Host: "api.openai.com", Path: "/v1/chat/completions",
				Status: 200, DurationMs: int64(10 + i), Detail: map[string]string{"day": fmt.Sprint(d), "i": fmt.Sprint(i)},
			}
			if err := l.Append(ev); err != nil {
				t.Fatalf("Append: %v", err)
			}
			c.Advance(time.Minute)
		}
		c.Set(day1.AddDate(0, 0, d+1))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestChainAcrossDayFiles(t *testing.T) {
	dir := buildThreeDays(t)
	rep := mustVerify(t, dir)
	if rep.Records != 3*perDay {
		t.Errorf("Records = %d, want %d", rep.Records, 3*perDay)
	}
	if strings.Join(rep.Files, ",") != strings.Join(threeDays, ",") {
		t.Errorf("Files = %v, want %v", rep.Files, threeDays)
	}
	if rep.HeadSeq != 3*perDay || rep.BeyondHead != 0 || rep.Anchored {
		t.Errorf("report = %+v", rep)
	}
	// The first record of day 2 chains to the last of day 1.
	l1 := readLines(t, filepath.Join(dir, threeDays[0]))
	l2 := readLines(t, filepath.Join(dir, threeDays[1]))
	last1, err := ParseLine(bytes.TrimSuffix(l1[len(l1)-1], []byte("\n")))
	if err != nil {
		t.Fatal(err)
	}
	first2, err := ParseLine(bytes.TrimSuffix(l2[0], []byte("\n")))
	if err != nil {
		t.Fatal(err)
	}
	if first2.Prev != last1.MAC || first2.Seq != last1.Seq+1 {
		t.Errorf("day 2 does not chain to day 1: prev %s seq %d, last MAC %s seq %d", first2.Prev, first2.Seq, last1.MAC, last1.Seq)
	}
	first1, _ := ParseLine(bytes.TrimSuffix(l1[0], []byte("\n")))
	if first1.Prev != zeroMAC || first1.Seq != 1 {
		t.Errorf("genesis record: prev %s seq %d", first1.Prev, first1.Seq)
	}
	// Permissions.
	for _, name := range append([]string{headName, lockName}, threeDays...) {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v, want 0700", fi.Mode().Perm())
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	dir := buildThreeDays(t)
	path := func(i int) string { return filepath.Join(dir, threeDays[i]) }
	edit := func(i int, fn func([][]byte) [][]byte) func(t *testing.T) {
		return func(t *testing.T) { writeLines(t, path(i), fn(readLines(t, path(i)))) }
	}
	tests := []struct {
		name     string
		tamper   func(t *testing.T)
		file     string
		line     int
		whyPart  string
		otherKey bool
	}{
		{"edit one char of a middle line", edit(1, func(ls [][]byte) [][]byte {
			ls[2] = bytes.Replace(ls[2], []byte(`"alice"`), []byte(`"alicf"`), 1)
			return ls
		}), threeDays[1], 3, "bad MAC", false},
		{"add whitespace to a middle line", edit(1, func(ls [][]byte) [][]byte {
			ls[2] = append([]byte("{ "), ls[2][1:]...)
			return ls
		}), threeDays[1], 3, "canonical", false},
		{"change the mac of a middle line", edit(1, func(ls [][]byte) [][]byte {
			i := bytes.LastIndex(ls[2], []byte(`"mac":"`)) + len(`"mac":"`)
			ls[2][i] ^= 1
			return ls
		}), threeDays[1], 3, "", false},
		{"delete a middle line", edit(1, func(ls [][]byte) [][]byte {
			return append(ls[:2], ls[3:]...)
		}), threeDays[1], 3, "broken chain", false},
		{"swap two lines", edit(1, func(ls [][]byte) [][]byte {
			ls[1], ls[2] = ls[2], ls[1]
			return ls
		}), threeDays[1], 2, "broken chain", false},
		{"duplicate a line", edit(1, func(ls [][]byte) [][]byte {
			return append(ls[:3], append([][]byte{ls[2]}, ls[3:]...)...)
		}), threeDays[1], 4, "broken chain", false},
		{"insert a blank line", edit(1, func(ls [][]byte) [][]byte {
			return append(ls[:3], append([][]byte{[]byte("\n")}, ls[3:]...)...)
		}), threeDays[1], 4, "unparsable", false},
		{"truncate the tail", edit(2, func(ls [][]byte) [][]byte {
			return ls[:perDay-1]
		}), threeDays[2], perDay, "missing after head", false},
		{"cut the last line in half", edit(2, func(ls [][]byte) [][]byte {
			ls[perDay-1] = ls[perDay-1][:40]
			return ls
		}), threeDays[2], perDay, "incomplete final line", false},
		{"delete the middle day file", func(t *testing.T) {
			if err := os.Remove(path(1)); err != nil {
				t.Fatal(err)
			}
		}, threeDays[2], 1, "broken chain", false},
		{"delete the first day file", func(t *testing.T) {
			if err := os.Remove(path(0)); err != nil {
				t.Fatal(err)
			}
		}, threeDays[1], 1, "broken chain", false},
		{"delete the last day file", func(t *testing.T) {
			if err := os.Remove(path(2)); err != nil {
				t.Fatal(err)
			}
		}, threeDays[2], 1, "missing after head", false},
		{"swap two day files", func(t *testing.T) {
			a, b := readLines(t, path(0)), readLines(t, path(1))
			writeLines(t, path(0), b)
			writeLines(t, path(1), a)
		}, threeDays[0], 1, "broken chain", false},
		{"edit head.json", func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join(dir, headName))
			if err != nil {
				t.Fatal(err)
			}
			b = bytes.Replace(b, []byte(`"lines":5`), []byte(`"lines":4`), 1)
			if err := os.WriteFile(filepath.Join(dir, headName), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, headName, 0, "bad MAC", false},
		{"delete head.json", func(t *testing.T) {
			if err := os.Remove(filepath.Join(dir, headName)); err != nil {
				t.Fatal(err)
			}
		}, headName, 0, "missing", false},
		{"add a stray record file at the end", func(t *testing.T) {
			ls := readLines(t, path(2))
			writeLines(t, filepath.Join(dir, "2025-03-04.jsonl"), ls[:1])
		}, "2025-03-04.jsonl", 1, "broken chain", false},
		{"verify under another key", func(*testing.T) {}, threeDays[0], 1, "bad MAC", true},
	}
	orig := snapshot(t, dir)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.tamper(t)
			key := testKey
			if tc.otherKey {
				key = bytes.Repeat([]byte{7}, 32)
			}
			rep, err := Verify(dir, key)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if rep.OK || rep.FirstBad == nil {
				t.Fatalf("Verify passed a tampered log")
			}
			got := rep.FirstBad
			if got.File != tc.file || got.Line != tc.line || !strings.Contains(got.Why, tc.whyPart) {
				t.Errorf("FirstBad = %s; want %s:%d containing %q", got, tc.file, tc.line, tc.whyPart)
			}
			restore(t, dir, orig)
			mustVerify(t, dir)
		})
	}
}

// TestVerifyEveryByteOfALine flips each byte of a middle line in turn: every
// single change must be caught and blamed on that line.
func TestVerifyEveryByteOfALine(t *testing.T) {
	dir := buildThreeDays(t)
	p := filepath.Join(dir, threeDays[1])
	orig, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	ls := readLines(t, p)
	start := len(ls[0]) + len(ls[1])
	end := start + len(ls[2]) - 1 // the newline itself changes the line count; covered elsewhere
	for i := start; i < end; i++ {
		for _, flip := range []byte{0x01, 0x20} {
			b := bytes.Clone(orig)
			b[i] ^= flip
			if b[i] == '\n' {
				continue
			}
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
			rep, err := Verify(dir, testKey)
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK || rep.FirstBad.File != threeDays[1] || rep.FirstBad.Line != 3 {
				t.Fatalf("flip 0x%02x at offset %d of line 3 (%q): report OK=%v FirstBad=%v", flip, i-start, orig[i], rep.OK, rep.FirstBad)
			}
		}
	}
	if err := os.WriteFile(p, orig, 0o600); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, dir)
}

func TestVerifyEmptyAndMissing(t *testing.T) {
	dir := t.TempDir()
	rep, err := Verify(dir, testKey)
	if err != nil || !rep.OK || rep.Records != 0 {
		t.Fatalf("empty dir: rep=%+v err=%v", rep, err)
	}
	if _, err := Verify(filepath.Join(dir, "nope"), testKey); err == nil {
		t.Error("Verify of a missing dir succeeded")
	}
	if _, err := Verify(dir, []byte("short")); !errors.Is(err, ErrKey) {
		t.Errorf("short key: err = %v, want ErrKey", err)
	}
	// A freshly opened, never written log verifies.
	sub := filepath.Join(dir, "audit")
	l := openTest(t, sub, newClock(day1))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep = mustVerify(t, sub)
	if rep.Records != 0 || len(rep.Files) != 0 {
		t.Errorf("fresh log: %+v", rep)
	}
}
