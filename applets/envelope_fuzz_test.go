package applets

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// normEnvelope turns empty slices and maps into nil: omitempty drops them on
// encode, so they decode back as nil.
func normEnvelope(e envelope) envelope {
	if len(e.Request.Headers) == 0 {
		e.Request.Headers = nil
	}
	if len(e.Request.Multipart) == 0 {
		e.Request.Multipart = nil
	}
	if len(e.Request.MultipartFiles) == 0 {
		e.Request.MultipartFiles = nil
	}
	return e
}

func TestParseEnvelopeRefusesHostAndURL(t *testing.T) {
	for _, in := range []string{
		`{"capability":"a/b","url":"https://evil.test/","request":{}}`,
		`{"capability":"a/b","host":"evil.test","request":{}}`,
		`{"capability":"a/b","request":{"url":"https://evil.test/x"}}`,
		`{"capability":"a/b","request":{"host":"evil.test"}}`,
		`{"capability":"a/b","request":{}} {"capability":"c/d"}`,
		`{"capability":"a/b","request":{"headers":{"Host":"evil.test"}}}`,
		`{"capability":"a/b","request":{"method":"GET"},"capability":"x"}x`,
	} {
		if _, err := parseEnvelope([]byte(in)); err == nil {
			t.Errorf("parseEnvelope(%s) accepted", in)
		} else if !strings.Contains(err.Error(), "envelope is not valid") {
			t.Errorf("parseEnvelope(%s): %v", in, err)
		}
	}
	e, err := parseEnvelope([]byte(`{"capability":"a/b","request":{"method":"POST","path":"/v1","headers":[{"name":"X-A","value":"1"}],"body":""}}`))
	if err != nil || e.Capability != "a/b" || e.Request.Body == nil || *e.Request.Body != "" || len(e.Request.Headers) != 1 {
		t.Fatalf("valid envelope: %+v, %v", e, err)
	}
}

// FuzzParseEnvelope: hostile --request bytes never panic, and an accepted
// envelope survives encode → decode unchanged (nothing is lost or invented,
// so what the client acts on is exactly what was given).
func FuzzParseEnvelope(f *testing.F) {
	f.Add([]byte(`{"capability":"openai/chat-completions","request":{"method":"POST","path":"/v1/chat/completions","body":"{}"}}`))
	f.Add([]byte(`{"capability":"x/y","credential":"c","request":{"headers":[{"name":"X-Note","value":"a\r\nb"}],"multipart":{"a":"b","n":1.5,"o":{"k":[1,null,true]}},"multipartFiles":{"f":"/etc/shadow"}}}`))
	f.Add([]byte(`{"capability":"x/y","request":{"bodyFilePath":"/proc/self/environ"}}`))
	f.Add([]byte(`{"capability":"x/y","url":"https://evil.test/","request":{}}`))
	f.Add([]byte(`{"request":{"path":"/a\u0000b","headers":[]}}`))
	f.Add([]byte(`{"capability":"\xff","request":{}}trailing`))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := parseEnvelope(data)
		if err != nil {
			return
		}
		raw, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("accepted envelope does not re-encode: %v", err)
		}
		e2, err := parseEnvelope(raw)
		if err != nil {
			t.Fatalf("re-encoded envelope refused: %v\n%s", err, raw)
		}
		if a, b := normEnvelope(e), normEnvelope(e2); !reflect.DeepEqual(a, b) {
			t.Fatalf("round trip changed the envelope:\n%#v\n%#v", a, b)
		}
	})
}
