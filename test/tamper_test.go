package test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"
)

// cmdTamper edits files the way an attacker without the key would:
//
//	tamper flipjson FILE FIELD        flip one bit in the base64-decoded top-level JSON field
//	tamper swapjson FILE1 FILE2 FIELD swap a top-level JSON field between two files
//	tamper setjson FILE FIELD VALUE   set a top-level string field
//	tamper editline FILE N            change one character of line N (1-based)
//	tamper deleteline FILE N          delete line N
//	tamper backup FILE / restore FILE keep and put back a copy (FILE.orig)
//
// File modes are kept.
func cmdTamper(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("tamper does not support !")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: tamper flipjson|swapjson|setjson|editline|deleteline|backup|restore FILE ...")
	}
	op, file := args[0], ts.MkAbs(args[1])
	read := func(f string) (map[string]json.RawMessage, os.FileMode) {
		b, err := os.ReadFile(f)
		ts.Check(err)
		fi, err := os.Stat(f)
		ts.Check(err)
		var m map[string]json.RawMessage
		ts.Check(json.Unmarshal(b, &m))
		return m, fi.Mode().Perm()
	}
	write := func(f string, m map[string]json.RawMessage, mode os.FileMode) {
		b, err := json.Marshal(m)
		ts.Check(err)
		ts.Check(os.WriteFile(f, b, mode))
		ts.Check(os.Chmod(f, mode))
	}
	switch op {
	case "flipjson":
		if len(args) != 3 {
			ts.Fatalf("usage: tamper flipjson FILE FIELD")
		}
		m, mode := read(file)
		var s string
		ts.Check(json.Unmarshal(m[args[2]], &s))
		raw, err := base64.StdEncoding.DecodeString(s)
		ts.Check(err)
		if len(raw) == 0 {
			ts.Fatalf("field %s is empty", args[2])
		}
		raw[len(raw)/2] ^= 0x01
		nb, _ := json.Marshal(base64.StdEncoding.EncodeToString(raw))
		m[args[2]] = nb
		write(file, m, mode)
	case "swapjson":
		if len(args) != 4 {
			ts.Fatalf("usage: tamper swapjson FILE1 FILE2 FIELD")
		}
		f2 := ts.MkAbs(args[2])
		m1, mode1 := read(file)
		m2, mode2 := read(f2)
		m1[args[3]], m2[args[3]] = m2[args[3]], m1[args[3]]
		write(file, m1, mode1)
		write(f2, m2, mode2)
	case "setjson":
		if len(args) != 4 {
			ts.Fatalf("usage: tamper setjson FILE FIELD VALUE")
		}
		m, mode := read(file)
		nb, _ := json.Marshal(args[3])
		m[args[2]] = nb
		write(file, m, mode)
	case "editline", "deleteline":
		if len(args) != 3 {
			ts.Fatalf("usage: tamper %s FILE N", op)
		}
		n, err := strconv.Atoi(args[2])
		ts.Check(err)
		b, err := os.ReadFile(file)
		ts.Check(err)
		fi, err := os.Stat(file)
		ts.Check(err)
		lines := bytes.SplitAfter(b, []byte("\n"))
		if n < 1 || n > len(lines) || len(lines[n-1]) < 2 {
			ts.Fatalf("%s has no line %d", file, n)
		}
		if op == "deleteline" {
			lines = append(lines[:n-1], lines[n:]...)
		} else {
			l := lines[n-1]
			i := bytes.LastIndexByte(l, ':') + 1
			if i <= 0 || i >= len(l)-1 {
				i = len(l) / 2
			}
			if l[i] == 'x' {
				l[i] = 'y'
			} else if l[i] == '"' || l[i] == '\n' {
				l[i-1] = ' '
			} else {
				l[i] = 'x'
			}
		}
		ts.Check(os.WriteFile(file, bytes.Join(lines, nil), fi.Mode().Perm()))
	case "backup":
		b, err := os.ReadFile(file)
		ts.Check(err)
		ts.Check(os.WriteFile(file+".orig", b, 0o600))
	case "restore":
		b, err := os.ReadFile(file + ".orig")
		ts.Check(err)
		fi, err := os.Stat(file)
		ts.Check(err)
		ts.Check(os.WriteFile(file, b, fi.Mode().Perm()))
		ts.Check(os.Remove(file + ".orig"))
	default:
		ts.Fatalf("unknown tamper operation %q", op)
	}
}

// cmdFirstFile sets env NAME to the Nth (0-based) file in DIR matching GLOB,
// sorted by name: firstfile [-grep STR] NAME DIR GLOB [N]. With -grep only
// files whose content contains STR count (e.g. a record's "name":"X").
func cmdFirstFile(ts *testscript.TestScript, neg bool, args []string) {
	var grep string
	if len(args) >= 2 && args[0] == "-grep" {
		grep, args = args[1], args[2:]
	}
	if len(args) < 3 {
		ts.Fatalf("usage: firstfile [-grep STR] NAME DIR GLOB [N]")
	}
	matches, err := filepath.Glob(filepath.Join(ts.MkAbs(args[1]), args[2]))
	ts.Check(err)
	if grep != "" {
		kept := matches[:0]
		for _, m := range matches {
			if b, err := os.ReadFile(m); err == nil && bytes.Contains(b, []byte(grep)) {
				kept = append(kept, m)
			}
		}
		matches = kept
	}
	sort.Strings(matches)
	n := 0
	if len(args) == 4 {
		n, err = strconv.Atoi(args[3])
		ts.Check(err)
	}
	if n >= len(matches) {
		if neg {
			return
		}
		ts.Fatalf("no file %d matching %s in %s (have %s)", n, args[2], args[1], strings.Join(matches, " "))
	}
	if neg {
		ts.Fatalf("unexpected file %s", matches[n])
	}
	ts.Setenv(args[0], matches[n])
}
