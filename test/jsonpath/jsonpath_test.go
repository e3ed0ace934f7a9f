package jsonpath

import (
	"errors"
	"reflect"
	"testing"
)

func TestParse(t *testing.T) {
	cases := []struct {
		path string
		want []Step
		bad  bool
	}{
		{path: ".", want: nil},
		{path: ".a", want: []Step{{Key: "a"}}},
		{path: ".a.b", want: []Step{{Key: "a"}, {Key: "b"}}},
		{path: ".a[2].b", want: []Step{{Key: "a"}, {Index: 2, IsIndex: true}, {Key: "b"}}},
		{path: "[0]", want: []Step{{Index: 0, IsIndex: true}}},
		{path: `.["x.y"].z`, want: []Step{{Key: "x.y"}, {Key: "z"}}},
		{path: `.a.["q]"]`, want: []Step{{Key: "a"}, {Key: "q]"}}},
		{path: "", bad: true},
		{path: "a", bad: true},
		{path: ".a.", bad: true},
		{path: "..a", bad: true},
		{path: ".a[", bad: true},
		{path: ".a[-1]", bad: true},
		{path: ".a[01]", bad: true},
		{path: ".a[x]", bad: true},
		{path: `.["x"`, bad: true},
	}
	for _, c := range cases {
		got, err := Parse(c.path)
		if c.bad {
			if err == nil {
				t.Errorf("Parse(%q) = %v, want error", c.path, got)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("Parse(%q) = %v, %v; want %v", c.path, got, err, c.want)
		}
	}
}

func TestGet(t *testing.T) {
	doc := []byte(`{"a":{"b":"str","n":42,"f":1.5,"t":true,"z":null},"items":[{"id":"x"},{"id":"y"}],"x.y":{"z":"dot"}}`)
	cases := []struct {
		path, want string
		missing    bool
	}{
		{path: ".a.b", want: "str"},
		{path: ".a.n", want: "42"},
		{path: ".a.f", want: "1.5"},
		{path: ".a.t", want: "true"},
		{path: ".a.z", want: "null"},
		{path: ".items[1].id", want: "y"},
		{path: ".items.0.id", want: "x"},
		{path: `.["x.y"].z`, want: "dot"},
		{path: ".items", want: `[{"id":"x"},{"id":"y"}]`},
		{path: ".a.nope", missing: true},
		{path: ".items[2]", missing: true},
		{path: ".items.k", missing: true},
		{path: ".a.b.c", missing: true},
		{path: ".a[0]", missing: true},
	}
	for _, c := range cases {
		v, err := Get(doc, c.path)
		if c.missing {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("Get(%q) err = %v, want ErrNotFound", c.path, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Get(%q): %v", c.path, err)
			continue
		}
		if got := Format(v); got != c.want {
			t.Errorf("Get(%q) = %s, want %s", c.path, got, c.want)
		}
	}
	if _, err := Get([]byte("{"), ".a"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("bad document: err = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{".", ".a.b", ".a[0]", `.["k"].x`, "[3].y", ".a["} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		steps, err := Parse(path)
		if err != nil {
			return
		}
		for _, s := range steps {
			if s.IsIndex && s.Index < 0 {
				t.Fatalf("negative index from %q", path)
			}
		}
		// Any parsed path is usable against any document without panicking.
		_, _ = Get([]byte(`{"a":[1,{"b":2}]}`), path)
	})
}

func TestValues(t *testing.T) {
	vs, err := Values([]byte("{\"a\":1}\n{\"a\":2}\n\n[3]\n"))
	if err != nil || len(vs) != 3 || string(vs[1]) != `{"a":2}` {
		t.Fatalf("Values = %q, %v", vs, err)
	}
	if vs, err := Values(nil); err != nil || len(vs) != 0 {
		t.Fatalf("empty: %q, %v", vs, err)
	}
	if _, err := Values([]byte(`{"a":1} {`)); err == nil {
		t.Fatal("truncated stream accepted")
	}
}
