package leakscan

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

const secret = "sk-test-SECRET/value+with=odd&chars"

func variantBytes(t testing.TB, s string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, v := range Variants([]byte(s)) {
		out = append(out, v.Bytes)
	}
	return out
}

func TestVariantsCatchEncodings(t *testing.T) {
	needles := variantBytes(t, secret)
	cases := []struct {
		name string
		hay  string
	}{
		{"raw", "token=" + secret + "\n"},
		{"std base64 standalone", base64.StdEncoding.EncodeToString([]byte(secret))},
		{"url base64 unpadded", base64.RawURLEncoding.EncodeToString([]byte(secret))},
		{"basic auth offset 1", "Basic " + base64.StdEncoding.EncodeToString([]byte("u:"+secret))},
		{"basic auth offset 2", "Basic " + base64.StdEncoding.EncodeToString([]byte("us:"+secret))},
		{"basic auth offset 0 with suffix", base64.StdEncoding.EncodeToString([]byte("abc" + secret + "xyz"))},
		{"query escape", "?key=" + url.QueryEscape(secret)},
		{"path escape", "/v1/" + url.PathEscape(secret)},
		{"lower-case percent", regexp.MustCompile("%[0-9A-F]{2}").ReplaceAllStringFunc(url.QueryEscape(secret), strings.ToLower)},
		{"hex", fmt.Sprintf("%x", secret)},
		{"HEX", fmt.Sprintf("%X", secret)},
		{"json", `{"v":"sk-\u0026` + `"}`}, // control: must NOT match (different value)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := ScanBytes(needles, "hay", []byte(c.hay))
			if c.name == "json" {
				if len(got) != 0 {
					t.Fatalf("false positive: %v", got)
				}
				return
			}
			if len(got) == 0 {
				t.Fatalf("encoding %q of the secret not found", c.name)
			}
		})
	}
}

func TestVariantsJSONEscaping(t *testing.T) {
	s := "a<b>&c\"d\\e-long-enough"
	needles := variantBytes(t, s)
	hay := []byte(`{"x":"a\u003cb\u003e\u0026c\"d\\e-long-enough"}`)
	if len(ScanBytes(needles, "j", hay)) == 0 {
		t.Fatal("JSON-escaped form not found")
	}
}

func TestVariantsShortSecretAndEmpty(t *testing.T) {
	if v := Variants(nil); v != nil {
		t.Fatalf("Variants(nil) = %v", v)
	}
	v := Variants([]byte("abc"))
	names := map[string]bool{}
	for _, x := range v {
		names[x.Name] = true
		if len(x.Bytes) == 0 {
			t.Fatalf("empty variant %q", x.Name)
		}
	}
	for _, want := range []string{"raw", "base64", "hex"} {
		if !names[want] {
			t.Errorf("short secret: missing variant %q (have %v)", want, names)
		}
	}
	if len(ScanBytes(variantBytes(t, "abc"), "x", []byte("YWJj"))) == 0 {
		t.Fatal("standalone base64 of short secret not found")
	}
}

func TestScanFilesAndDirs(t *testing.T) {
	dir := t.TempDir()
	write := func(rel, content string) string {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	leak := write("a/b/leak.log", "prefix "+secret+" suffix")
	write("a/clean.txt", "nothing to see")
	excl := write("excluded/leak", secret)
	if err := os.Symlink(leak, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	needles := [][]byte{nil, []byte(secret)}

	res, err := ScanWithOptions(Options{
		Needles: needles,
		Paths:   []string{dir, filepath.Join(dir, "does-not-exist")},
		Exclude: []string{filepath.Dir(excl)},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Finding{{Path: leak, Offset: int64(len("prefix ")), Needle: 1}}
	if !reflect.DeepEqual(res.Findings, want) {
		t.Fatalf("findings = %v, want %v", res.Findings, want)
	}
	if res.Files != 2 {
		t.Errorf("files = %d, want 2 (symlink and excluded dir skipped)", res.Files)
	}
	if len(res.Missing) != 1 {
		t.Errorf("missing = %v", res.Missing)
	}
	// Plain Scan without exclusions sees both files, each once.
	got, err := Scan(needles, dir, leak)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("Scan found %d, want 2: %v", len(got), got)
	}
	// Findings never print the needle.
	for _, f := range got {
		if strings.Contains(f.String(), secret) {
			t.Fatal("Finding.String reveals the needle")
		}
	}
}

// unreadableChildEnv names the directory a re-executed, unprivileged copy of
// this test scans (root reads everything, so root checks through a child).
const unreadableChildEnv = "LEAKSCAN_UNREADABLE_DIR"

func TestScanUnreadableIsError(t *testing.T) {
	if dir := os.Getenv(unreadableChildEnv); dir != "" {
		if _, err := Scan([][]byte{[]byte("x")}, dir); err == nil {
			t.Fatal("unreadable file did not produce an error")
		}
		return
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("x"), 0o000); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		if _, err := Scan([][]byte{[]byte("x")}, dir); err == nil {
			t.Fatal("unreadable file did not produce an error")
		}
		return
	}
	// As root: run this test again as nobody, from a copy of the test binary
	// in a directory nobody may enter, scanning a 0755 directory that holds
	// the 0000 file.
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	binDir, err := os.MkdirTemp("", "leakscan-bin")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(binDir)
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(binDir, "leakscan.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestScanUnreadableIsError$", "-test.count=1")
	cmd.Env = []string{unreadableChildEnv + "=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
}

func TestScanReaderChunkBoundaries(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 50)
	needle := []byte("78901234")
	want := ScanBytes([][]byte{needle}, "d", data)
	for chunk := 1; chunk < 40; chunk++ {
		n, got, err := scanReader([][]byte{needle}, "d", bytes.NewReader(data), chunk)
		if err != nil {
			t.Fatal(err)
		}
		if n != int64(len(data)) {
			t.Fatalf("chunk %d: read %d bytes", chunk, n)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("chunk %d: got %d findings, want %d", chunk, len(got), len(want))
		}
	}
}

func FuzzScanReader(f *testing.F) {
	f.Add([]byte("hello world hello"), []byte("lo"), 3)
	f.Add([]byte("aaaaaaa"), []byte("aa"), 1)
	f.Add([]byte(""), []byte("x"), 5)
	f.Fuzz(func(t *testing.T, data, needle []byte, chunk int) {
		if len(needle) == 0 || chunk <= 0 || chunk > 1<<16 {
			return
		}
		want := ScanBytes([][]byte{needle}, "d", data)
		_, got, err := scanReader([][]byte{needle}, "d", bytes.NewReader(data), chunk)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) || (len(got) > 0 && !reflect.DeepEqual(got, want)) {
			t.Fatalf("chunk %d: got %v, want %v", chunk, got, want)
		}
		if (len(want) > 0) != bytes.Contains(data, needle) {
			t.Fatal("ScanBytes disagrees with bytes.Contains")
		}
	})
}

// FuzzVariantsBase64 checks the alignment property: whatever bytes surround a
// secret, the base64 encoding of the whole contains one of its variants.
func FuzzVariantsBase64(f *testing.F) {
	f.Add([]byte("sk-0123456789abcdef"), []byte("u:"), []byte(""))
	f.Add([]byte("\x00\xff\x10secretsecret"), []byte("a"), []byte("zz"))
	f.Fuzz(func(t *testing.T, secret, prefix, suffix []byte) {
		if len(secret) < 12 {
			return
		}
		var needles [][]byte
		for _, v := range Variants(secret) {
			needles = append(needles, v.Bytes)
		}
		whole := append(append(append([]byte(nil), prefix...), secret...), suffix...)
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding} {
			s := enc.EncodeToString(whole)
			if len(ScanBytes(needles, "b", []byte(s))) == 0 {
				t.Fatalf("no variant found in base64 of prefix(%d)+secret(%d)+suffix(%d)", len(prefix), len(secret), len(suffix))
			}
		}
	})
}
