package policy

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"testing"
)

// TestEncodeMultipartDisposition checks the Content-Disposition form of file
// parts: name first, both quoted, never RFC 2231 filename*= (RFC 7578 §4.2),
// and that a standard reader gets the names back.
func TestEncodeMultipartDisposition(t *testing.T) {
	for _, tc := range []struct{ field, filename, want string }{
		{"file", "notes.txt", `form-data; name="file"; filename="notes.txt"`},
		{"file", "résumé 1.pdf", `form-data; name="file"; filename="résumé 1.pdf"`},
		{"a\"b", `c\d"e.txt`, `form-data; name="a\"b"; filename="c\\d\"e.txt"`},
	} {
		body, ct, err := EncodeMultipart(&Multipart{Files: []MultipartFile{{Field: tc.field, Filename: tc.filename, Data: []byte("x")}}})
		if err != nil {
			t.Fatalf("%q: %v", tc.filename, err)
		}
		if !bytes.Contains(body, []byte("Content-Disposition: "+tc.want+"\r\n")) {
			t.Errorf("%q: body lacks %s:\n%s", tc.filename, tc.want, body)
		}
		_, params, _ := mime.ParseMediaType(ct)
		r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		p, err := r.NextPart()
		if err != nil {
			t.Fatalf("%q: %v", tc.filename, err)
		}
		if p.FormName() != tc.field || p.FileName() != tc.filename {
			t.Errorf("%q: read back name=%q filename=%q", tc.filename, p.FormName(), p.FileName())
		}
		if b, _ := io.ReadAll(p); string(b) != "x" {
			t.Errorf("%q: data %q", tc.filename, b)
		}
	}
}
