package crypt

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestWriteFileAtomic(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := t.TempDir()
	path := filepath.Join(dir, "f.json")
	for i, perm := range []os.FileMode{0o600, 0o640, 0o600} {
		data := []byte{byte('a' + i)}
		if err := WriteFileAtomic(path, data, perm); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != perm {
			t.Fatalf("mode %v, want %v (umask must not matter)", st.Mode().Perm(), perm)
		}
		got, _ := os.ReadFile(path)
		if string(got) != string(data) {
			t.Fatalf("content %q", got)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("left %d files", len(ents))
	}
	// A symlink at the target is replaced, not followed.
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("keep"), 0o600)
	link := filepath.Join(dir, "link")
	os.Symlink(victim, link)
	if err := WriteFileAtomic(link, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(victim); string(got) != "keep" {
		t.Fatal("write followed a symlink")
	}
	if err := WriteFileAtomic(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}

func TestParseKeyText(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n", true},
		{"  AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA  ", true},
		{"-__7__v_-__7__v_-__7__v_-__7__v_-__7__v_-_8", true},
		{"-__7__v_-__7__v_-__7__v_-__7__v_-__7__v_-_8=", true},
		{"-__7__v_-__7__v_-__7__v_-__7__v_-__7__v_-_", false}, // one character short
		{"AAAA", false},
		{"", false},
		{"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", false},
	}
	for _, tc := range tests {
		raw, ok := parseKeyText([]byte(tc.in))
		if ok != tc.ok || (ok && len(raw) != 32) {
			t.Errorf("parseKeyText(%q) ok=%v len=%d", tc.in, ok, len(raw))
		}
	}
}
