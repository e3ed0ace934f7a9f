package test

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"hash"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/aivault/aivault/test/fakeupstream"
	"github.com/aivault/aivault/test/jsonpath"
	"github.com/rogpeppe/go-internal/testscript"
)

// The signature checkers recompute, independently of the product (no AWS
// SDK here), the signature a recorded upstream request carries, from the
// request as the upstream saw it and the known test secret. Failure
// messages never include the secret or a signature.

// recordedRequest returns the Nth (1-based; negative counts from the end)
// request of an upstream log file.
func recordedRequest(ts *testscript.TestScript, cmd string, file string, n int) (fakeupstream.Request, []byte) {
	vals, err := jsonpath.Values([]byte(ts.ReadFile(file)))
	if err != nil {
		ts.Fatalf("%s: %s: %v", cmd, file, err)
	}
	i := n - 1
	if n < 0 {
		i = len(vals) + n
	}
	if i < 0 || i >= len(vals) {
		ts.Fatalf("%s: %s holds %d requests; no request %d", cmd, file, len(vals), n)
	}
	var r fakeupstream.Request
	if err := json.Unmarshal(vals[i], &r); err != nil {
		ts.Fatalf("%s: request %d: %v", cmd, n, err)
	}
	if r.BodyTruncated {
		ts.Fatalf("%s: request %d: the recorded body is truncated", cmd, n)
	}
	body := []byte(r.Body)
	if r.BodyBase64 != "" {
		if body, err = base64.StdEncoding.DecodeString(r.BodyBase64); err != nil {
			ts.Fatalf("%s: request %d: body_b64: %v", cmd, n, err)
		}
	}
	return r, body
}

// takeN pops a leading "-n N" (default -1, the last request).
func takeN(ts *testscript.TestScript, cmd string, args []string) (int, []string) {
	if len(args) >= 2 && args[0] == "-n" {
		n, err := strconv.Atoi(args[1])
		if err != nil || n == 0 {
			ts.Fatalf("%s: -n wants a non-zero integer", cmd)
		}
		return n, args[2:]
	}
	return -1, args
}

// cmdSigV4Check verifies an AWS Signature Version 4 Authorization header:
//
//	sigv4check [-n N] LOGFILE ACCESS_KEY_ID SECRET_ACCESS_KEY REGION SERVICE
//
// It checks the AWS4-HMAC-SHA256 Credential=<akid>/<date>/<region>/<service>/aws4_request
// form, that X-Amz-Date matches the credential date, that
// X-Amz-Content-Sha256 is the SHA-256 of the body received, that host is
// signed, and that the signature is the one recomputed from the canonical
// request. Prints "sigv4 ok" on success.
func cmdSigV4Check(ts *testscript.TestScript, neg bool, args []string) {
	n, args := takeN(ts, "sigv4check", args)
	if len(args) != 5 {
		ts.Fatalf("usage: sigv4check [-n N] LOGFILE ACCESS_KEY_ID SECRET_ACCESS_KEY REGION SERVICE")
	}
	r, body := recordedRequest(ts, "sigv4check", args[0], n)
	err := sigV4Verify(r, body, args[1], args[2], args[3], args[4])
	switch {
	case err != "" && !neg:
		ts.Fatalf("sigv4check: request %d: %s", n, err)
	case err == "" && neg:
		ts.Fatalf("sigv4check: request %d has a valid signature", n)
	case err == "":
		ts.Logf("sigv4check: request %d: signature verified", n)
		ts.Stdout().Write([]byte("sigv4 ok\n"))
	default:
		ts.Logf("sigv4check: request %d: %s (as expected)", n, err)
	}
}

func sigV4Verify(r fakeupstream.Request, body []byte, akid, secret, region, service string) string {
	authz := r.Headers.Get("Authorization")
	rest, ok := strings.CutPrefix(authz, "AWS4-HMAC-SHA256 ")
	if !ok {
		return "Authorization does not start with AWS4-HMAC-SHA256"
	}
	fields := map[string]string{}
	for _, f := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(f), "=")
		if !ok {
			return "malformed Authorization field"
		}
		fields[k] = v
	}
	cred := strings.Split(fields["Credential"], "/")
	if len(cred) != 5 || cred[4] != "aws4_request" {
		return "Credential is not <akid>/<date>/<region>/<service>/aws4_request"
	}
	if cred[0] != akid {
		return "Credential names another access key id"
	}
	if cred[2] != region || cred[3] != service {
		return "Credential scope is " + cred[2] + "/" + cred[3] + ", want " + region + "/" + service
	}
	amzDate := r.Headers.Get("X-Amz-Date")
	if len(amzDate) != 16 || amzDate[8] != 'T' || amzDate[15] != 'Z' || amzDate[:8] != cred[1] {
		return "X-Amz-Date " + amzDate + " does not match the credential date " + cred[1]
	}
	sum := sha256.Sum256(body)
	payload := hex.EncodeToString(sum[:])
	if got := r.Headers.Get("X-Amz-Content-Sha256"); got != payload {
		return "X-Amz-Content-Sha256 is not the SHA-256 of the body the upstream received"
	}
	signed := strings.Split(fields["SignedHeaders"], ";")
	if !sort.StringsAreSorted(signed) || !containsStr(signed, "host") || !containsStr(signed, "x-amz-date") {
		return "SignedHeaders " + fields["SignedHeaders"] + " is not sorted or lacks host/x-amz-date"
	}
	// Canonical request.
	path, rawQuery, _ := strings.Cut(r.Target, "?")
	uri := path
	if service != "s3" {
		uri = sigV4Escape(path, false)
	}
	var canon strings.Builder
	canon.WriteString(r.Method + "\n" + uri + "\n" + sigV4Query(rawQuery) + "\n")
	for _, h := range signed {
		var v string
		if h == "host" {
			v = r.Host
		} else {
			vs := r.Headers.Values(h)
			if len(vs) == 0 {
				return "signed header " + h + " did not reach the upstream"
			}
			for i := range vs {
				vs[i] = strings.Join(strings.Fields(vs[i]), " ")
			}
			v = strings.Join(vs, ",")
		}
		canon.WriteString(h + ":" + v + "\n")
	}
	canon.WriteString("\n" + fields["SignedHeaders"] + "\n" + payload)
	ch := sha256.Sum256([]byte(canon.String()))
	scope := strings.Join(cred[1:], "/")
	toSign := "AWS4-HMAC-SHA256\n" + amzDate + "\n" + scope + "\n" + hex.EncodeToString(ch[:])
	k := hmacSum(sha256.New, []byte("AWS4"+secret), []byte(cred[1]))
	k = hmacSum(sha256.New, k, []byte(region))
	k = hmacSum(sha256.New, k, []byte(service))
	k = hmacSum(sha256.New, k, []byte("aws4_request"))
	want := hex.EncodeToString(hmacSum(sha256.New, k, []byte(toSign)))
	if !hmac.Equal([]byte(want), []byte(fields["Signature"])) {
		return "the signature does not match the one recomputed from the request as received"
	}
	return ""
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func hmacSum(h func() hash.Hash, key, data []byte) []byte {
	m := hmac.New(h, key)
	m.Write(data)
	return m.Sum(nil)
}

// sigV4Escape is SigV4's URI encoding: every byte but A-Z a-z 0-9 - _ . ~
// (and '/' unless encodeSlash) as %XX, upper-case hex.
func sigV4Escape(s string, encodeSlash bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' || (c == '/' && !encodeSlash) {
			b.WriteByte(c)
			continue
		}
		b.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{c})))
	}
	return b.String()
}

// sigV4Query is the canonical query string: decoded pairs re-encoded,
// sorted by name then value.
func sigV4Query(raw string) string {
	if raw == "" {
		return ""
	}
	type kv struct{ k, v string }
	var pairs []kv
	for _, p := range strings.Split(raw, "&") {
		if p == "" {
			continue
		}
		k, v, _ := strings.Cut(p, "=")
		dk, err1 := url.QueryUnescape(k)
		dv, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			dk, dv = k, v
		}
		pairs = append(pairs, kv{sigV4Escape(dk, true), sigV4Escape(dv, true)})
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].k != pairs[j].k {
			return pairs[i].k < pairs[j].k
		}
		return pairs[i].v < pairs[j].v
	})
	out := make([]string, len(pairs))
	for i, p := range pairs {
		out[i] = p.k + "=" + p.v
	}
	return strings.Join(out, "&")
}

// cmdHMACCheck verifies an HMAC request signature over the exact body the
// upstream received:
//
//	hmaccheck [-n N] [-algo sha256|sha512] LOGFILE KEY HEADER TEMPLATE
//
// TEMPLATE is the header's expected value with {{signature}} standing for
// the lower-case hex HMAC of the body under KEY. Prints "hmac ok".
func cmdHMACCheck(ts *testscript.TestScript, neg bool, args []string) {
	n, args := takeN(ts, "hmaccheck", args)
	newHash := sha256.New
	if len(args) >= 2 && args[0] == "-algo" {
		switch args[1] {
		case "sha256":
		case "sha512":
			newHash = sha512.New
		default:
			ts.Fatalf("hmaccheck: -algo sha256 or sha512")
		}
		args = args[2:]
	}
	if len(args) != 4 {
		ts.Fatalf("usage: hmaccheck [-n N] [-algo sha256|sha512] LOGFILE KEY HEADER TEMPLATE")
	}
	r, body := recordedRequest(ts, "hmaccheck", args[0], n)
	vs := r.Headers.Values(args[2])
	if len(vs) != 1 {
		ts.Fatalf("hmaccheck: request %d has %d %s headers, want 1", n, len(vs), args[2])
	}
	want := strings.ReplaceAll(args[3], "{{signature}}", hex.EncodeToString(hmacSum(newHash, []byte(args[1]), body)))
	ok := hmac.Equal([]byte(want), []byte(vs[0]))
	switch {
	case !ok && !neg:
		ts.Fatalf("hmaccheck: request %d: %s is not the HMAC of the %d-byte body the upstream received", n, args[2], len(body))
	case ok && neg:
		ts.Fatalf("hmaccheck: request %d: %s matches", n, args[2])
	case ok:
		ts.Stdout().Write([]byte("hmac ok\n"))
	}
}
