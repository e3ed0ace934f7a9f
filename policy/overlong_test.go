package policy

import "testing"

// Overlong and otherwise invalid UTF-8 escapes are refused: a lax upstream
// decoder may turn %c0%ae into '.' and %c0%af into '/'.
func TestCheckPathOverlongUTF8(t *testing.T) {
	allow := rqtAllow()
	for _, p := range []string{
		"/v0/%c0%ae%c0%ae/x", "/v0/%C0%AE./x", "/v0/%e0%80%ae%e0%80%ae/x", "/v0/a%c0%afb",
		"/v0/%f0%80%80%ae", "/v0/%ff", "/v0/%c3",
	} {
		if _, err := CheckRequest(allow, nil, nil, CapPolicy{}, Request{Method: "GET", Path: p}); err == nil {
			t.Errorf("%s accepted", p)
		}
	}
	for _, p := range []string{"/v0/%C3%A9t%c3%a9", "/v0/%ef%bc%8e%ef%bc%8e/x", "/v0/%E2%9C%93"} {
		if _, err := CheckRequest(allow, nil, nil, CapPolicy{}, Request{Method: "GET", Path: p}); err != nil {
			t.Errorf("%s refused: %v", p, err)
		}
	}
}
