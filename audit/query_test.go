package audit

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestQuery(t *testing.T) {
	dir := t.TempDir()
	c := newClock(day1)
	l := openTest(t, dir, c)
	type rec struct {
		user, cap, decision string
	}
	recs := []rec{
		{"alice", "openai/chat", "allow"},
		{"bob", "openai/chat", "deny"},
		{"alice", "github/issues", "allow"},
		{"carol", "openai/chat", "allow"},
		{"alice", "openai/chat", "deny"},
	}
	for i, r := range recs {
		if i == 3 {
			c.Advance(24 * time.Hour) // spread over two day files
		}
		if err := l.Append(Event{Kind: "invoke", User: r.user, Capability: r.cap, Decision: r.decision, Status: 100 + i}); err != nil {
			t.Fatal(err)
		}
		c.Advance(time.Second)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ts := func(i int) int64 { // TsMs of record i
		d := time.Duration(i) * time.Second
		if i >= 3 {
			d += 24 * time.Hour
		}
		return day1.Add(d).UnixMilli()
	}
	tests := []struct {
		name string
		q    QueryOptions
		want []int // record indexes, newest first
	}{
		{"all newest first", QueryOptions{}, []int{4, 3, 2, 1, 0}},
		{"limit", QueryOptions{Limit: 2}, []int{4, 3}},
		{"before", QueryOptions{BeforeTsMs: ts(3)}, []int{2, 1, 0}},
		{"before and limit (paging)", QueryOptions{BeforeTsMs: ts(2), Limit: 1}, []int{1}},
		{"user", QueryOptions{User: "alice"}, []int{4, 2, 0}},
		{"capability", QueryOptions{Capability: "openai/chat"}, []int{4, 3, 1, 0}},
		{"user and capability", QueryOptions{User: "alice", Capability: "openai/chat", Limit: 1}, []int{4}},
		{"decision", QueryOptions{Decision: "deny"}, []int{4, 1}},
		{"kind", QueryOptions{Kind: "secret.create"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := Query(dir, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, ev := range evs {
				got = append(got, ev.Status-100)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
	if _, err := Query(dir, QueryOptions{Limit: -1}); err == nil {
		t.Error("negative limit accepted")
	}
}

func TestQueryDefaultsAndErrors(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, dir, newClock(day1))
	evs := make([]Event, DefaultQueryLimit+5)
	for i := range evs {
		evs[i] = Event{Kind: "invoke"}
	}
	if err := l.AppendBatch(evs); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := Query(dir, QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != DefaultQueryLimit || got[0].Seq != uint64(len(evs)) {
		t.Errorf("default limit: %d events, newest seq %d", len(got), got[0].Seq)
	}
	// A garbage line is an error, not silently skipped.
	p := filepath.Join(dir, dayName(day1))
	ls := readLines(t, p)
	ls[10] = []byte("not json\n")
	writeLines(t, p, ls)
	if _, err := Query(dir, QueryOptions{Limit: MaxQueryLimit}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("garbage line: err = %v, want ErrCorrupt", err)
	}
	if _, err := Query(filepath.Join(dir, "missing"), QueryOptions{}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing dir: err = %v", err)
	}
	// An empty directory has no events.
	got, err = Query(t.TempDir(), QueryOptions{})
	if err != nil || len(got) != 0 {
		t.Errorf("empty dir: %v %v", got, err)
	}
}
