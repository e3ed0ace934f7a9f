package audit

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestOpenAndAppendBasics(t *testing.T) {
	t.Run("short key", func(t *testing.T) {
		if _, err := Open(t.TempDir(), make([]byte, 15), Options{}); !errors.Is(err, ErrKey) {
			t.Errorf("err = %v, want ErrKey", err)
		}
	})
	t.Run("symlinked dir refused", func(t *testing.T) {
		base := t.TempDir()
		if err := os.Mkdir(filepath.Join(base, "real"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(base, "real"), filepath.Join(base, "link")); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(filepath.Join(base, "link"), testKey, Options{}); err == nil {
			t.Error("Open through a symlink succeeded")
		}
	})
	t.Run("wide dir tightened", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "audit")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		l := openTest(t, dir, newClock(day1))
		defer l.Close()
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("mode %v", fi.Mode().Perm())
		}
	})
	t.Run("fills seq prev mac tsMs; keeps caller tsMs", func(t *testing.T) {
		dir := t.TempDir()
		c := newClock(day1)
		l := openTest(t, dir, c)
		defer l.Close()
		if err := l.Append(Event{Kind: "vault.init", Seq: 99, Prev: "x", MAC: "y"}); err != nil {
			t.Fatal(err)
		}
		if err := l.Append(Event{Kind: "secret.create", TsMs: 1234, SecretID: "s1"}); err != nil {
			t.Fatal(err)
		}
		evs, err := Query(dir, QueryOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 2 {
			t.Fatalf("got %d events", len(evs))
		}
		if evs[1].Seq != 1 || evs[1].Prev != zeroMAC || evs[1].TsMs != day1.UnixMilli() || !isMACHex(evs[1].MAC) {
			t.Errorf("first record = %+v", evs[1])
		}
		if evs[0].Seq != 2 || evs[0].Prev != evs[1].MAC || evs[0].TsMs != 1234 {
			t.Errorf("second record = %+v", evs[0])
		}
	})
	t.Run("refuses bad events", func(t *testing.T) {
		l := openTest(t, t.TempDir(), newClock(day1))
		defer l.Close()
		if err := l.Append(Event{}); err == nil {
			t.Error("event without kind accepted")
		}
		big := Event{Kind: "invoke", Reason: strings.Repeat("x", MaxRecordBytes)}
		if err := l.Append(big); err == nil {
			t.Error("oversized event accepted")
		}
	})
	t.Run("invalid UTF-8 is normalised and verifies", func(t *testing.T) {
		dir := t.TempDir()
		l := openTest(t, dir, newClock(day1))
		if err := l.Append(Event{Kind: "invoke", Path: "/a\xff\xfe<b>&\u2028", Detail: map[string]string{"k\xff": "v"}}); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		mustVerify(t, dir)
		evs, err := Query(dir, QueryOptions{})
		if err != nil || len(evs) != 1 {
			t.Fatalf("evs=%v err=%v", evs, err)
		}
		if evs[0].Path != "/a\ufffd\ufffd<b>&\u2028" {
			t.Errorf("path = %q", evs[0].Path)
		}
	})
	t.Run("closed log", func(t *testing.T) {
		l := openTest(t, t.TempDir(), newClock(day1))
		key := l.key
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(key, make([]byte, len(testKey))) {
			t.Error("key copy not wiped on Close")
		}
		if err := l.Append(Event{Kind: "x"}); !errors.Is(err, ErrClosed) {
			t.Errorf("Append after Close: %v", err)
		}
		if err := l.Refused("p", Event{}); !errors.Is(err, ErrClosed) {
			t.Errorf("Refused after Close: %v", err)
		}
		if err := l.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})
	t.Run("stale temp files removed by Open", func(t *testing.T) {
		dir := t.TempDir()
		stale := filepath.Join(dir, ".head.json.12345.tmp")
		if err := os.WriteFile(stale, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
		l := openTest(t, dir, newClock(day1))
		defer l.Close()
		if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stale temp file kept: %v", err)
		}
	})
	t.Run("caller's key slice untouched", func(t *testing.T) {
		key := bytes.Clone(testKey)
		l, err := Open(t.TempDir(), key, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(key, testKey) {
			t.Error("Close modified the caller's key")
		}
	})
}

func TestDisabled(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "audit")
	l, err := Open(dir, nil, Options{Disabled: true})
	if err != nil {
		t.Fatal(err)
	}
	if !l.Disabled() {
		t.Error("Disabled() = false")
	}
	if err := l.Append(Event{Kind: "invoke"}); err != nil {
		t.Error(err)
	}
	if err := l.Refused("p", Event{}); err != nil {
		t.Error(err)
	}
	if err := l.Close(); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("disabled log touched the disk: %v", err)
	}
}

func TestClockStepsBack(t *testing.T) {
	dir := t.TempDir()
	c := newClock(day1.AddDate(0, 0, 1))
	l := openTest(t, dir, c)
	if err := l.Append(Event{Kind: "a"}); err != nil {
		t.Fatal(err)
	}
	c.Set(day1) // a day earlier
	if err := l.Append(Event{Kind: "b"}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rep := mustVerify(t, dir)
	if len(rep.Files) != 1 || rep.Files[0] != "2025-03-02.jsonl" || rep.Records != 2 {
		t.Errorf("report %+v: records must stay in the newest file", rep)
	}
}

func TestRecovery(t *testing.T) {
	t.Run("records beyond a stale head are adopted", func(t *testing.T) {
		dir := t.TempDir()
		c := newClock(day1)
		l := openTest(t, dir, c)
		for range 3 {
			if err := l.Append(Event{Kind: "a"}); err != nil {
				t.Fatal(err)
			}
		}
		settle(l) // the committer updates head.json after answering
		stale, err := os.ReadFile(filepath.Join(dir, headName))
		if err != nil {
			t.Fatal(err)
		}
		c.Advance(24 * time.Hour) // the un-headed record lands in a new file
		if err := l.AppendBatch([]Event{{Kind: "b"}, {Kind: "c"}}); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		// Crash between the record fsync and the head rename.
		if err := os.WriteFile(filepath.Join(dir, headName), stale, 0o600); err != nil {
			t.Fatal(err)
		}
		rep := mustVerify(t, dir)
		if rep.BeyondHead != 2 || rep.Records != 5 {
			t.Errorf("report %+v", rep)
		}
		l = openTest(t, dir, c)
		if err := l.Append(Event{Kind: "d"}); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		rep = mustVerify(t, dir)
		if rep.BeyondHead != 0 || rep.Records != 6 || rep.HeadSeq != 6 {
			t.Errorf("after reopen: %+v", rep)
		}
	})
	t.Run("torn final line is truncated by Open", func(t *testing.T) {
		dir := t.TempDir()
		c := newClock(day1)
		l := openTest(t, dir, c)
		for range 2 {
			if err := l.Append(Event{Kind: "a"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, dayName(day1))
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(`{"tsMs":17`); err != nil {
			t.Fatal(err)
		}
		f.Close()
		rep, err := Verify(dir, testKey)
		if err != nil {
			t.Fatal(err)
		}
		if rep.OK || rep.FirstBad.Line != 3 || !strings.Contains(rep.FirstBad.Why, "incomplete") {
			t.Errorf("torn line: %+v %v", rep, rep.FirstBad)
		}
		if evs, err := Query(dir, QueryOptions{}); err != nil || len(evs) != 2 {
			t.Errorf("Query over a torn tail: %d events, err %v", len(evs), err)
		}
		l = openTest(t, dir, c)
		if err := l.Append(Event{Kind: "b"}); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if rep := mustVerify(t, dir); rep.Records != 3 {
			t.Errorf("records %d", rep.Records)
		}
	})
	corrupt := []struct {
		name   string
		tamper func(t *testing.T, dir string)
	}{
		{"head missing", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, headName)); err != nil {
				t.Fatal(err)
			}
		}},
		{"tail truncated", func(t *testing.T, dir string) {
			p := filepath.Join(dir, dayName(day1))
			ls := readLines(t, p)
			writeLines(t, p, ls[:1])
		}},
		{"forged record beyond head", func(t *testing.T, dir string) {
			p := filepath.Join(dir, dayName(day1))
			ls := readLines(t, p)
			ls = append(ls, bytes.Replace(ls[1], []byte(`"kind":"a"`), []byte(`"kind":"z"`), 1))
			writeLines(t, p, ls)
		}},
		{"last file deleted", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, dayName(day1))); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range corrupt {
		t.Run("Open refuses: "+tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openTest(t, dir, newClock(day1))
			for range 2 {
				if err := l.Append(Event{Kind: "a"}); err != nil {
					t.Fatal(err)
				}
			}
			// A second, open Log refuses to append too.
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l2 := openTest(t, dir, newClock(day1))
			defer l2.Close()
			tc.tamper(t, dir)
			if _, err := Open(dir, testKey, Options{}); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Open: err = %v, want ErrCorrupt", err)
			}
			if err := l2.Append(Event{Kind: "x"}); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Append: err = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestRefusedAggregation(t *testing.T) {
	dir := t.TempDir()
	c := newClock(day1)
	l, err := Open(dir, testKey, Options{Now: c.Now, RefusalWindow: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	count := func() int {
		t.Helper()
		evs, err := Query(dir, QueryOptions{Limit: MaxQueryLimit})
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}
	refuse := func(peer string) {
		t.Helper()
		if err := l.Refused(peer, Event{UID: intp(1001), Reason: "AccessDenied: not in group"}); err != nil {
			t.Fatal(err)
		}
	}
	refuse("uid:1001")
	if n := count(); n != 1 {
		t.Fatalf("first refusal: %d records", n)
	}
	for range 4 {
		c.Advance(time.Second)
		refuse("uid:1001")
	}
	if n := count(); n != 1 {
		t.Fatalf("suppressed refusals written: %d records", n)
	}
	refuse("uid:1002") // another peer: its own first record
	if n := count(); n != 2 {
		t.Fatalf("second peer: %d records", n)
	}
	c.Advance(time.Minute) // both windows closed
	refuse("uid:1001")     // flushes 1001's count, then a new first record
	evs, err := Query(dir, QueryOptions{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 4 {
		t.Fatalf("after window: %d records: %v", len(evs), evs)
	}
	agg, first := evs[1], evs[0]
	if agg.Count != 4 || agg.Detail["aggregated"] != "true" || agg.Kind != KindConnectionRefused || agg.Reason == "" {
		t.Errorf("aggregate = %+v", agg)
	}
	if agg.Detail["windowStartMs"] != "1740823200000" {
		t.Errorf("windowStartMs = %s", agg.Detail["windowStartMs"])
	}
	if first.Count != 0 || first.Detail != nil {
		t.Errorf("new window's first record = %+v", first)
	}
	// Counts are flushed by Append and FlushRefusals once the window closed...
	refuse("uid:1001")
	c.Advance(2 * time.Minute)
	if err := l.FlushRefusals(); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 5 {
		t.Errorf("FlushRefusals: %d records, want 5", n)
	}
	// ... and by Close before it closed.
	refuse("uid:1003")
	refuse("uid:1003")
	refuse("uid:1003")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	evs, err = Query(dir, QueryOptions{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if evs[0].Count != 2 {
		t.Errorf("Close flush = %+v", evs[0])
	}
	if n := count(); n != 7 {
		t.Errorf("total %d records, want 7", n)
	}
	mustVerify(t, dir)
}

func TestRefusedPeerCap(t *testing.T) {
	dir := t.TempDir()
	c := newClock(day1)
	l := openTest(t, dir, c)
	for i := range maxRefusalPeers + 50 {
		if err := l.Refused("peer"+strconv.Itoa(i), Event{}); err != nil {
			t.Fatal(err)
		}
	}
	if len(l.refusals) > maxRefusalPeers+1 {
		t.Errorf("tracking %d peers", len(l.refusals))
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	evs, err := Query(dir, QueryOptions{Limit: MaxQueryLimit})
	if err != nil {
		t.Fatal(err)
	}
	// maxRefusalPeers first records, one overflow first record, and one
	// overflow aggregate of the remaining 49.
	if len(evs) != maxRefusalPeers+2 || evs[0].Count != 49 {
		t.Errorf("%d records, newest %+v", len(evs), evs[0])
	}
}
