package sandbox

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"time"
)

// TLS roots travel to a worker as concatenated DER certificates (the monitor
// decodes the PEM bundle once per pool, not once per worker), and the worker
// parses only the roots a handshake can use: those whose subject is the
// issuer (or the subject) of a certificate the server sent. Parsing the whole
// system bundle (~150 certificates) in every single-use worker was a quarter
// of its CPU time.

// rootsDER converts a PEM bundle to concatenated DER certificates; blocks
// of other types are skipped, like x509.CertPool.AppendCertsFromPEM does.
func rootsDER(pemBytes []byte) []byte {
	var out []byte
	for len(pemBytes) > 0 {
		var b *pem.Block
		b, pemBytes = pem.Decode(pemBytes)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" || len(b.Headers) != 0 {
			continue
		}
		out = append(out, b.Bytes...)
	}
	return out
}

// rootSet is the worker's view of its trusted roots: concatenated DER
// certificates (mapped read-only from the monitor's sealed memfd), searched
// by raw subject and parsed on demand. Nothing is copied or indexed up
// front: a single-use worker looks up a handful of subjects once.
type rootSet struct {
	der []byte
}

// newRootSet checks concatenated DER certificates. A certificate whose
// subject cannot be read is skipped (as AppendCertsFromPEM skips what it
// cannot parse); trailing garbage ends the list. It fails when no
// certificate is usable.
func newRootSet(der []byte) (*rootSet, error) {
	rs := &rootSet{der: der}
	n := 0
	rs.each(func([]byte, []byte) { n++ })
	if n == 0 {
		return nil, errors.New("no TLS root certificates were handed to the worker")
	}
	return rs, nil
}

// each calls fn with the subject and DER of every usable certificate.
func (rs *rootSet) each(fn func(subject, cert []byte)) {
	der := rs.der
	for len(der) > 0 {
		tag, cert, _, rest, ok := derElement(der)
		if !ok || tag != derSequence {
			return
		}
		der = rest
		if subj, ok := rawSubject(cert); ok {
			fn(subj, cert)
		}
	}
}

// withSubject returns the certificates whose raw subject is subject.
func (rs *rootSet) withSubject(subject []byte) [][]byte {
	var out [][]byte
	rs.each(func(subj, cert []byte) {
		if bytes.Equal(subj, subject) {
			out = append(out, cert)
		}
	})
	return out
}

// DER tags used below.
const (
	derInteger  = 0x02
	derSequence = 0x30
	derVersion  = 0xa0 // [0] EXPLICIT, constructed
)

// derElement splits one DER element off b: its tag, the whole element, its
// contents and the rest. Only definite lengths up to 4 bytes are accepted.
func derElement(b []byte) (tag byte, elem, content, rest []byte, ok bool) {
	if len(b) < 2 {
		return 0, nil, nil, nil, false
	}
	tag = b[0]
	n, hdr := int(b[1]), 2
	if n&0x80 != 0 {
		k := n & 0x7f
		if k == 0 || k > 4 || len(b) < 2+k {
			return 0, nil, nil, nil, false
		}
		n = 0
		for _, c := range b[2 : 2+k] {
			n = n<<8 | int(c)
		}
		hdr += k
	}
	if n < 0 || len(b)-hdr < n {
		return 0, nil, nil, nil, false
	}
	return tag, b[:hdr+n], b[hdr : hdr+n], b[hdr+n:], true
}

// rawSubject returns the DER subject Name of a certificate without parsing
// the rest: Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version
// OPTIONAL, serialNumber, signature, issuer, validity, subject, … } … }.
// A malformed certificate is caught later by x509.ParseCertificate.
func rawSubject(cert []byte) ([]byte, bool) {
	tag, _, c, _, ok := derElement(cert)
	if !ok || tag != derSequence {
		return nil, false
	}
	tag, _, tbs, _, ok := derElement(c)
	if !ok || tag != derSequence {
		return nil, false
	}
	if len(tbs) > 0 && tbs[0] == derVersion {
		if _, _, _, tbs, ok = derElement(tbs); !ok {
			return nil, false
		}
	}
	for _, want := range []byte{derInteger, derSequence, derSequence, derSequence} { // serial, signature, issuer, validity
		if tag, _, _, tbs, ok = derElement(tbs); !ok || tag != want {
			return nil, false
		}
	}
	tag, subj, _, _, ok := derElement(tbs)
	if !ok || tag != derSequence {
		return nil, false
	}
	return subj, true
}

// poolFor returns a pool of the roots that can end a chain for the server's
// certificates: chain building only ever uses a root whose subject is the
// issuer of the leaf or of a presented intermediate, or the leaf itself.
func (rs *rootSet) poolFor(peer []*x509.Certificate) *x509.CertPool {
	pool := x509.NewCertPool()
	var want [][]byte
	for _, c := range peer {
		want = append(want, c.RawIssuer, c.RawSubject)
	}
	rs.each(func(subj, cert []byte) {
		for _, w := range want {
			if bytes.Equal(subj, w) {
				if c, err := x509.ParseCertificate(cert); err == nil {
					pool.AddCert(c)
				}
				return
			}
		}
	})
	return pool
}

// configure makes cfg verify the server against rs, for serverName, exactly
// as crypto/tls would with RootCAs set (same options, same error type):
// crypto/tls's own verification is replaced by VerifyConnection because the
// pool is only known once the server's certificates are.
// InsecureSkipVerify only turns off that built-in step; the handshake
// signature, key-type and size checks still run, and VerifyConnection runs
// on every full handshake (workers have no session cache).
func (rs *rootSet) configure(cfg *tls.Config, serverName string, now func() time.Time) {
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("tls: the server sent no certificate")
		}
		opts := x509.VerifyOptions{
			Roots:         rs.poolFor(cs.PeerCertificates),
			CurrentTime:   now(),
			DNSName:       serverName,
			Intermediates: x509.NewCertPool(),
		}
		for _, c := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(c)
		}
		if _, err := cs.PeerCertificates[0].Verify(opts); err != nil {
			return &tls.CertificateVerificationError{UnverifiedCertificates: cs.PeerCertificates, Err: err}
		}
		return nil
	}
}
