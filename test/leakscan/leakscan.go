// Package leakscan finds secret values in files and buffers. It is the
// scanner behind the end-to-end harness's noleak command: every script that
// handles a secret asserts that neither the secret nor a common encoding of it
// (see Variants) appears in any output, log, audit record or file.
//
// Findings never carry the needle itself, so a failing test does not print the
// secret it was protecting.
package leakscan

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// chunkSize is how much of a file is held in memory at once while scanning.
const chunkSize = 1 << 20

// minCoreLen is the shortest unaligned base64 core Variants emits; shorter
// cores would match unrelated base64 text by chance.
const minCoreLen = 8

// Finding is one occurrence of a needle. It deliberately holds the needle's
// index rather than its bytes.
type Finding struct {
	// Path is the file (or the name given to ScanBytes) the needle was found in.
	Path string
	// Offset is the byte offset of the first byte of the match.
	Offset int64
	// Needle is the index of the matching needle in the slice passed to Scan.
	Needle int
}

// String describes the finding without revealing the needle.
func (f Finding) String() string {
	return fmt.Sprintf("%s: needle #%d at byte %d", f.Path, f.Needle, f.Offset)
}

// Variant is one searchable encoding of a secret.
type Variant struct {
	// Name says which encoding this is ("raw", "base64", "url-query", …).
	Name string
	// Bytes is the encoded form to search for.
	Bytes []byte
}

// Variants returns the forms of secret worth searching for: the raw bytes, the
// base64 alphabets (std and URL, at each of the three alignments the value can
// have inside a longer base64 stream, so "user:secret" in a Basic header is
// caught too), URL query and path escaping (upper- and lower-case hex), hex,
// and the JSON string escaping. Duplicates are dropped. An empty secret yields
// no variants.
func Variants(secret []byte) []Variant {
	if len(secret) == 0 {
		return nil
	}
	var out []Variant
	seen := map[string]bool{}
	add := func(name string, b []byte) {
		if len(b) == 0 || seen[string(b)] {
			return
		}
		seen[string(b)] = true
		out = append(out, Variant{Name: name, Bytes: b})
	}
	add("raw", append([]byte(nil), secret...))
	for _, alpha := range []struct {
		name string
		enc  *base64.Encoding
	}{{"base64", base64.StdEncoding}, {"base64url", base64.URLEncoding}} {
		for k := 0; k < 3; k++ {
			core := base64Core(alpha.enc, secret, k)
			if len(core) >= minCoreLen {
				add(fmt.Sprintf("%s@%d", alpha.name, k), core)
			} else if k == 0 {
				// Too short for a core to be meaningful: search the
				// standalone encodings instead.
				add(alpha.name, []byte(alpha.enc.EncodeToString(secret)))
				add(alpha.name+"-unpadded", []byte(alpha.enc.WithPadding(base64.NoPadding).EncodeToString(secret)))
			}
		}
	}
	q := url.QueryEscape(string(secret))
	add("url-query", []byte(q))
	add("url-query-lower", []byte(lowerPercent(q)))
	p := url.PathEscape(string(secret))
	add("url-path", []byte(p))
	add("url-path-lower", []byte(lowerPercent(p)))
	add("hex", []byte(hex.EncodeToString(secret)))
	add("HEX", []byte(strings.ToUpper(hex.EncodeToString(secret))))
	if js, err := json.Marshal(string(secret)); err == nil && len(js) >= 2 {
		add("json", js[1:len(js)-1])
	}
	return out
}

// base64Core returns the base64 characters that depend only on secret when
// secret starts k bytes (mod 3) into a longer base64-encoded stream: the
// characters whose six bits all lie within the secret. Those characters appear
// in every encoding of any byte string containing secret at that alignment.
func base64Core(enc *base64.Encoding, secret []byte, k int) []byte {
	buf := make([]byte, k+len(secret))
	copy(buf[k:], secret)
	s := enc.EncodeToString(buf)
	startBit, endBit := 8*k, 8*(k+len(secret))
	first := (startBit + 5) / 6 // first char whose bits start at or after startBit
	last := endBit/6 - 1        // last char whose bits end at or before endBit
	if last < first || last >= len(s) {
		return nil
	}
	return []byte(s[first : last+1])
}

// lowerPercent lower-cases the two hex digits after every '%'.
func lowerPercent(s string) string {
	b := []byte(s)
	for i := 0; i < len(b); i++ {
		if b[i] == '%' && i+2 < len(b) {
			b[i+1] = toLowerASCII(b[i+1])
			b[i+2] = toLowerASCII(b[i+2])
			i += 2
		}
	}
	return string(b)
}

func toLowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// Options configures ScanWithOptions.
type Options struct {
	// Needles are the byte strings to look for; empty needles are ignored.
	Needles [][]byte
	// Paths are files or directories (walked recursively). Symlinks are not
	// followed; only regular files are read. Paths that do not exist are
	// recorded in Result.Missing rather than treated as errors.
	Paths []string
	// Exclude lists files or directories to skip (compared after
	// filepath.Clean; a directory excludes everything below it).
	Exclude []string
}

// Result summarises a scan.
type Result struct {
	// Findings are all matches, in path then offset order.
	Findings []Finding
	// Files is the number of regular files read.
	Files int
	// Bytes is the number of bytes read.
	Bytes int64
	// Missing lists requested paths that did not exist.
	Missing []string
	// Skipped lists paths that were excluded or were not regular files.
	Skipped []string
}

// Scan looks for every needle in every regular file under paths and returns
// the findings. Paths that do not exist are ignored; an unreadable file is an
// error (a scanner that silently skips what it cannot read proves nothing).
func Scan(needles [][]byte, paths ...string) ([]Finding, error) {
	res, err := ScanWithOptions(Options{Needles: needles, Paths: paths})
	return res.Findings, err
}

// ScanWithOptions is Scan with exclusions and statistics.
func ScanWithOptions(opts Options) (Result, error) {
	var res Result
	needles := nonEmpty(opts.Needles)
	excluded := make(map[string]bool, len(opts.Exclude))
	for _, e := range opts.Exclude {
		excluded[filepath.Clean(e)] = true
	}
	visited := map[string]bool{}
	for _, root := range opts.Paths {
		root = filepath.Clean(root)
		if _, err := os.Lstat(root); errors.Is(err, fs.ErrNotExist) {
			res.Missing = append(res.Missing, root)
			continue
		}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil // removed while walking
				}
				return fmt.Errorf("leakscan: walk %s: %w", p, err)
			}
			if excluded[filepath.Clean(p)] {
				res.Skipped = append(res.Skipped, p)
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() {
				return nil
			}
			if !d.Type().IsRegular() {
				res.Skipped = append(res.Skipped, p)
				return nil
			}
			if visited[p] {
				return nil
			}
			visited[p] = true
			n, found, err := scanFile(needles, p)
			if err != nil {
				return err
			}
			res.Files++
			res.Bytes += n
			res.Findings = append(res.Findings, found...)
			return nil
		})
		if err != nil {
			return res, err
		}
	}
	sortFindings(res.Findings)
	return res, nil
}

// ScanBytes looks for every needle in data, reporting findings under name.
func ScanBytes(needles [][]byte, name string, data []byte) []Finding {
	var out []Finding
	for i, n := range needles {
		if len(n) == 0 {
			continue
		}
		for off := 0; off <= len(data)-len(n); {
			j := bytes.Index(data[off:], n)
			if j < 0 {
				break
			}
			out = append(out, Finding{Path: name, Offset: int64(off + j), Needle: i})
			off += j + 1
		}
	}
	sortFindings(out)
	return out
}

// ScanReader streams r in bounded chunks, so arbitrarily large inputs can be
// scanned; matches spanning chunk boundaries are found.
func ScanReader(needles [][]byte, name string, r io.Reader) (int64, []Finding, error) {
	return scanReader(needles, name, r, chunkSize)
}

func scanReader(needles [][]byte, name string, r io.Reader, chunk int) (int64, []Finding, error) {
	maxLen := 0
	for _, n := range needles {
		maxLen = max(maxLen, len(n))
	}
	overlap := max(maxLen-1, 0)
	buf := make([]byte, 0, chunk+overlap)
	var base, total int64 // base = file offset of buf[0]
	var out []Finding
	seen := map[Finding]bool{}
	for {
		n, err := io.ReadFull(r, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		total += int64(n)
		for _, f := range ScanBytes(needles, name, buf) {
			f.Offset += base
			if !seen[f] {
				seen[f] = true
				out = append(out, f)
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return total, out, fmt.Errorf("leakscan: read %s: %w", name, err)
		}
		// Keep the tail so a match straddling the boundary is seen next time.
		keep := min(overlap, len(buf))
		base += int64(len(buf) - keep)
		copy(buf, buf[len(buf)-keep:])
		buf = buf[:keep]
	}
	sortFindings(out)
	return total, out, nil
}

func scanFile(needles [][]byte, path string) (int64, []Finding, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|noFollow, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil, nil
		}
		return 0, nil, fmt.Errorf("leakscan: open %s: %w", path, err)
	}
	defer f.Close()
	return ScanReader(needles, path, f)
}

func nonEmpty(needles [][]byte) [][]byte {
	// Keep indices stable: replace empty needles by nil (ScanBytes skips them).
	out := make([][]byte, len(needles))
	for i, n := range needles {
		if len(n) > 0 {
			out[i] = n
		}
	}
	return out
}

func sortFindings(fs []Finding) {
	sort.Slice(fs, func(i, j int) bool {
		if fs[i].Path != fs[j].Path {
			return fs[i].Path < fs[j].Path
		}
		if fs[i].Offset != fs[j].Offset {
			return fs[i].Offset < fs[j].Offset
		}
		return fs[i].Needle < fs[j].Needle
	})
}
