package sandbox

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/aivault/aivault/ipc"
)

// TestRemoteSignerHandshake runs real TLS handshakes in which the client's
// private-key operation goes through the sign/signed exchange (answerSign
// standing in for the monitor), for each key type and TLS version.
func TestRemoteSignerHandshake(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	for _, k := range []struct {
		name string
		key  crypto.Signer
	}{{"rsa", rsaKey}, {"ecdsa", ecKey}, {"ed25519", edKey}} {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "client-" + k.name},
				NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
			der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.key.Public(), k.key)
			if err != nil {
				t.Fatal(err)
			}
			signs := 0
			sign := func(digest []byte, hash string) ([]byte, error) {
				signs++
				r := answerSign(k.key, ipc.Result{Kind: ipc.ResultSign, Digest: digest, Hash: hash})
				return r.Data, nil
			}
			cert, e := clientCertificate(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), sign)
			if e != nil {
				t.Fatal(e)
			}
			if _, ok := cert.PrivateKey.(remoteSigner); !ok {
				t.Fatal("the worker's certificate holds a private key")
			}
			srvCert := selfSigned(t)
			cc, sc := net.Pipe()
			done := make(chan string, 1)
			go func() {
				s := tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientAuth: tls.RequireAnyClientCert, MinVersion: v, MaxVersion: v})
				if err := s.Handshake(); err != nil {
					done <- "server: " + err.Error()
					return
				}
				done <- s.ConnectionState().PeerCertificates[0].Subject.CommonName
				s.Close()
			}()
			c := tls.Client(cc, &tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{cert}, MinVersion: v, MaxVersion: v})
			if err := c.Handshake(); err != nil {
				t.Fatalf("%s/%x: client handshake: %v", k.name, v, err)
			}
			if got := <-done; got != "client-"+k.name || signs != 1 {
				t.Fatalf("%s/%x: server saw %q after %d signatures", k.name, v, got, signs)
			}
			c.Close()
		}
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"server"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestAnswerSignRefuses: the monitor signs nothing for a bad request.
func TestAnswerSignRefuses(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, r := range []ipc.Result{
		{Hash: "SHA256", Digest: make([]byte, 31)},
		{Hash: "MD5", Digest: make([]byte, 16)},
		{Hash: "", Digest: make([]byte, 32)},
		{Hash: "PSS-", Digest: make([]byte, 32)},
		{Hash: "Ed25519", Digest: nil},
	} {
		if got := answerSign(key, r); len(got.Data) != 0 || got.Kind != ipc.ResultSigned {
			t.Errorf("%q/%d: signed", r.Hash, len(r.Digest))
		}
	}
	if got := answerSign(nil, ipc.Result{Hash: "SHA256", Digest: make([]byte, 32)}); len(got.Data) != 0 {
		t.Error("signed without a signer")
	}
	if _, e := clientCertificate([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), nil); e == nil || e.Class != ClassNotImplemented {
		t.Errorf("no sign func: %v", e)
	}
}
