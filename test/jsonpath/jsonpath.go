// Package jsonpath implements the tiny path language of the end-to-end
// harness's jsonget command: ".a.b", ".items[0].id", ".items.0.id", "." for
// the whole document, and quoted keys (.["odd.key"]) for keys containing dots
// or brackets.
package jsonpath

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ErrNotFound reports a path that does not exist in the document.
var ErrNotFound = errors.New("jsonpath: not found")

// Step is one path element: an object key, or an index when IsIndex is set.
type Step struct {
	// Key is the object member name (used when IsIndex is false). A purely
	// numeric dotted segment (".0") is also tried as an array index.
	Key string
	// Index is the array index (used when IsIndex is true).
	Index int
	// IsIndex marks a bracketed numeric step ("[3]").
	IsIndex bool
}

// Parse splits a path into steps. The path must start with '.'.
func Parse(path string) ([]Step, error) {
	if path == "" || path[0] != '.' && path[0] != '[' {
		return nil, fmt.Errorf("jsonpath: %q must start with '.'", path)
	}
	var steps []Step
	i := 0
	for i < len(path) {
		switch path[i] {
		case '.':
			i++
			if i == len(path) {
				if len(steps) == 0 {
					return nil, nil // "." alone: the whole document
				}
				return nil, fmt.Errorf("jsonpath: %q ends with '.'", path)
			}
			if path[i] == '[' {
				continue
			}
			j := i
			for j < len(path) && path[j] != '.' && path[j] != '[' {
				j++
			}
			if j == i {
				return nil, fmt.Errorf("jsonpath: empty key in %q", path)
			}
			steps = append(steps, Step{Key: path[i:j]})
			i = j
		case '[':
			end := strings.IndexByte(path[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("jsonpath: unclosed '[' in %q", path)
			}
			inner := path[i+1 : i+end]
			if strings.HasPrefix(inner, `"`) {
				// Quoted key: find the closing quote honouring escapes.
				var key string
				dec := json.NewDecoder(strings.NewReader(path[i+1:]))
				if err := dec.Decode(&key); err != nil {
					return nil, fmt.Errorf("jsonpath: bad quoted key in %q: %w", path, err)
				}
				after := i + 1 + int(dec.InputOffset())
				if after >= len(path) || path[after] != ']' {
					return nil, fmt.Errorf("jsonpath: expected ']' after quoted key in %q", path)
				}
				steps = append(steps, Step{Key: key})
				i = after + 1
				continue
			}
			n, err := strconv.Atoi(inner)
			if err != nil || n < 0 || strconv.Itoa(n) != inner {
				return nil, fmt.Errorf("jsonpath: bad index %q in %q", inner, path)
			}
			steps = append(steps, Step{Index: n, IsIndex: true})
			i += end + 1
		default:
			return nil, fmt.Errorf("jsonpath: unexpected %q at offset %d in %q", path[i], i, path)
		}
	}
	return steps, nil
}

// Get decodes doc and returns the value at path.
func Get(doc []byte, path string) (any, error) {
	steps, err := Parse(path)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("jsonpath: decode document: %w", err)
	}
	for _, s := range steps {
		switch cur := v.(type) {
		case map[string]any:
			if s.IsIndex {
				return nil, fmt.Errorf("%w: index [%d] on an object", ErrNotFound, s.Index)
			}
			next, ok := cur[s.Key]
			if !ok {
				return nil, fmt.Errorf("%w: key %q", ErrNotFound, s.Key)
			}
			v = next
		case []any:
			idx := s.Index
			if !s.IsIndex {
				n, err := strconv.Atoi(s.Key)
				if err != nil {
					return nil, fmt.Errorf("%w: key %q on an array", ErrNotFound, s.Key)
				}
				idx = n
			}
			if idx < 0 || idx >= len(cur) {
				return nil, fmt.Errorf("%w: index %d out of range (len %d)", ErrNotFound, idx, len(cur))
			}
			v = cur[idx]
		default:
			return nil, fmt.Errorf("%w: cannot descend into %T", ErrNotFound, v)
		}
	}
	return v, nil
}

// Format renders a value for printing: strings bare, null as "null",
// everything else as compact JSON.
func Format(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

// Values splits a stream of JSON values (a JSON-lines file, or a single
// document) into its values.
func Values(doc []byte) ([]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	var out []json.RawMessage
	for {
		var v json.RawMessage
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("jsonpath: decode value %d: %w", len(out)+1, err)
		}
		out = append(out, v)
	}
}
