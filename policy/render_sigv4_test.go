package policy

import (
	"testing"
	"time"
)

// TestSigV4RefusesSemicolonQuery: the signer would drop a ';'-separated
// pair from the query it signs and sends; the request is refused instead.
func TestSigV4RefusesSemicolonQuery(t *testing.T) {
	a := Auth{AWSSigV4: &AuthSigV4{Service: "s3", Region: "us-east-1"}}
	vals := map[string][]byte{PlaceholderSecret: []byte(`{"accessKeyId":"AKIDEXAMPLE","secretAccessKey":"wJalrXUtnFEMI"}`)}
	out := &Outgoing{Method: "GET", Path: "/b/k", RawQuery: "a=1;b=2", Host: "s3.example.com"}
	if _, err := RenderAuth(a, vals, out, time.Unix(1700000000, 0)); err == nil || err.(*Error).Class != ClassInvalidRequest {
		t.Fatalf("want InvalidRequest, got %v", err)
	}
	if out.RawQuery != "a=1;b=2" || len(out.Headers) != 0 {
		t.Fatalf("out changed on error: %+v", out)
	}
	out = &Outgoing{Method: "GET", Path: "/b/k", RawQuery: "b=2&a=1", Host: "s3.example.com"}
	if _, err := RenderAuth(a, vals, out, time.Unix(1700000000, 0)); err != nil {
		t.Fatal(err)
	}
	if out.RawQuery != "a=1&b=2" {
		t.Fatalf("signed query %q, want the canonical a=1&b=2", out.RawQuery)
	}
}
