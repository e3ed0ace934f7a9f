package sandbox

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"testing"
	"time"
)

// testCA is a throwaway CA that issues server certificates.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t testing.TB, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

func (ca *testCA) issue(t testing.TB, host string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// The subject read by the DER walker is x509's RawSubject, for every root
// of the system bundle (when there is one) and for generated ones.
func TestRootSubjects(t *testing.T) {
	bundle := newTestCA(t, "one").pem
	if b, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		bundle = append(bundle, b...)
	}
	bundle = append(bundle, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")...)
	der := rootsDER(bundle)
	rs, err := newRootSet(der)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rest := bundle; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			continue
		}
		n++
		found := false
		for _, d := range rs.withSubject(c.RawSubject) {
			found = found || bytes.Equal(d, b.Bytes)
		}
		if !found {
			t.Errorf("root %q not indexed under its subject", c.Subject)
		}
	}
	if n == 0 {
		t.Fatal("no certificates parsed")
	}
	t.Logf("%d roots indexed", n)
}

func TestRootSetRefusesEmpty(t *testing.T) {
	for _, in := range [][]byte{nil, []byte("\n"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")} {
		if _, err := newRootSet(rootsDER(in)); err == nil {
			t.Errorf("%q: accepted", in)
		}
	}
	if _, err := newRootSet([]byte{0x30, 0x85, 1, 2, 3, 4, 5}); err == nil {
		t.Error("malformed DER accepted")
	}
}

// handshake runs a TLS handshake against a server with cert, verifying
// with roots for name.
func handshake(t *testing.T, rs *rootSet, cert tls.Certificate, name string) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		_ = s.SetDeadline(time.Now().Add(10 * time.Second))
		_ = s.Handshake()
		s.Close()
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	cfg := &tls.Config{ServerName: name, MinVersion: tls.VersionTLS12}
	rs.configure(cfg, name, time.Now)
	return tls.Client(c, cfg).Handshake()
}

// Verification against a root set behaves like RootCAs: the right CA and
// name pass; an unknown CA, a wrong name or an expired certificate fail
// with a *tls.CertificateVerificationError.
func TestRootSetVerify(t *testing.T) {
	good, other := newTestCA(t, "good CA"), newTestCA(t, "other CA")
	bundle := append(append([]byte{}, other.pem...), good.pem...)
	rs, err := newRootSet(rootsDER(bundle))
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(t, rs, good.issue(t, "api.example.com"), "api.example.com"); err != nil {
		t.Fatalf("good certificate refused: %v", err)
	}
	stranger := newTestCA(t, "stranger CA")
	for name, tc := range map[string]struct {
		cert tls.Certificate
		host string
		want any
	}{
		"unknown CA": {stranger.issue(t, "api.example.com"), "api.example.com", &x509.UnknownAuthorityError{}},
		"wrong host": {good.issue(t, "api.example.com"), "evil.example.com", &x509.HostnameError{}},
	} {
		err := handshake(t, rs, tc.cert, tc.host)
		var ve *tls.CertificateVerificationError
		if !errors.As(err, &ve) {
			t.Errorf("%s: got %v, want a CertificateVerificationError", name, err)
			continue
		}
		switch tc.want.(type) {
		case *x509.UnknownAuthorityError:
			var e x509.UnknownAuthorityError
			if !errors.As(err, &e) {
				t.Errorf("%s: got %v", name, err)
			}
		case *x509.HostnameError:
			var e x509.HostnameError
			if !errors.As(err, &e) {
				t.Errorf("%s: got %v", name, err)
			}
		}
	}
	// A root set of only the other CA does not trust the good one's leaf,
	// even though a CA with that subject exists elsewhere.
	only, _ := newRootSet(rootsDER(other.pem))
	if err := handshake(t, only, good.issue(t, "api.example.com"), "api.example.com"); err == nil {
		t.Error("a certificate from a CA outside the set was accepted")
	}
	// A CA with the same subject but another key is not a match.
	twin := newTestCA(t, "good CA")
	twinSet, _ := newRootSet(rootsDER(twin.pem))
	if err := handshake(t, twinSet, good.issue(t, "api.example.com"), "api.example.com"); err == nil {
		t.Error("a CA with the same name but another key was trusted")
	}
}

func BenchmarkRootSetIndex(b *testing.B) {
	bundle, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		b.Skip("no system bundle")
	}
	der := rootsDER(bundle)
	b.Run("index-der", func(b *testing.B) {
		for b.Loop() {
			if _, err := newRootSet(der); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parse-pem", func(b *testing.B) {
		for b.Loop() {
			x509.NewCertPool().AppendCertsFromPEM(bundle)
		}
	})
}
