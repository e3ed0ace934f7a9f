package fakeupstream

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// authority is a freshly generated, in-memory certificate authority.
type authority struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

func serialNumber() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("fakeupstream: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

// newAuthority creates a self-signed ECDSA P-256 CA valid for a day.
func newAuthority(commonName string) (*authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("fakeupstream: CA key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("%s %x", commonName, serial.Bytes()[:4]), Organization: []string{"aivault tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("fakeupstream: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("fakeupstream: parse CA certificate: %w", err)
	}
	return &authority{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// issue signs a leaf certificate for the given DNS names and IP addresses.
func (a *authority) issue(commonName string, dnsNames []string, ips []net.IP, usage x509.ExtKeyUsage) (tls.Certificate, []byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("fakeupstream: leaf key: %w", err)
	}
	serial, err := serialNumber()
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: commonName, Organization: []string{"aivault tests"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, &key.PublicKey, a.key)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("fakeupstream: sign leaf: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("fakeupstream: marshal leaf key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, nil, nil, fmt.Errorf("fakeupstream: load leaf pair: %w", err)
	}
	return pair, certPEM, keyPEM, nil
}

// ClientBundle names the files written by WriteClientBundle.
type ClientBundle struct {
	// CAPath is the PEM certificate of the CA that signed the client
	// certificate (give it to an upstream as its client CA).
	CAPath string
	// CertPath is the PEM client certificate.
	CertPath string
	// KeyPath is the PEM (PKCS#8) private key of the client certificate.
	KeyPath string
	// Subject is the client certificate's subject as the upstream records it.
	Subject string
}

// WriteClientBundle generates a fresh client CA and a client certificate with
// the given common name, for mTLS tests, and writes <cn>-ca.pem, <cn>.pem and
// <cn>-key.pem (0600) into dir.
func WriteClientBundle(dir, commonName string) (ClientBundle, error) {
	if commonName == "" || filepath.Base(commonName) != commonName {
		return ClientBundle{}, fmt.Errorf("fakeupstream: client common name %q must be a plain file name", commonName)
	}
	ca, err := newAuthority("aivault fakeupstream client CA")
	if err != nil {
		return ClientBundle{}, err
	}
	pair, certPEM, keyPEM, err := ca.issue(commonName, nil, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return ClientBundle{}, err
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return ClientBundle{}, fmt.Errorf("fakeupstream: parse client certificate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ClientBundle{}, fmt.Errorf("fakeupstream: %w", err)
	}
	b := ClientBundle{
		CAPath:   filepath.Join(dir, commonName+"-ca.pem"),
		CertPath: filepath.Join(dir, commonName+".pem"),
		KeyPath:  filepath.Join(dir, commonName+"-key.pem"),
		Subject:  leaf.Subject.String(),
	}
	for _, f := range []struct {
		path string
		data []byte
		perm os.FileMode
	}{{b.CAPath, ca.certPEM, 0o644}, {b.CertPath, certPEM, 0o644}, {b.KeyPath, keyPEM, 0o600}} {
		if err := writeFileAtomic(f.path, f.data, f.perm); err != nil {
			return ClientBundle{}, err
		}
	}
	return b, nil
}

// writeFileAtomic writes data to a temporary file next to path and renames it
// into place, so a poller never sees a partial file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("fakeupstream: write %s: %w", path, err)
	}
	name := tmp.Name()
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(name, perm)
	}
	if werr == nil {
		werr = os.Rename(name, path)
	}
	if werr != nil {
		os.Remove(name)
		return fmt.Errorf("fakeupstream: write %s: %w", path, werr)
	}
	return nil
}
