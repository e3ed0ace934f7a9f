package sandbox

import (
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

// rootSet is the worker's view of its trusted roots: DER certificates
// indexed by raw subject, parsed on demand.
type rootSet struct {
	bySubject map[string][][]byte
}

// newRootSet indexes concatenated DER certificates. A certificate whose
// subject cannot be read is skipped (as AppendCertsFromPEM skips what it
// cannot parse); trailing garbage ends the list. It fails when no
// certificate is usable.
func newRootSet(der []byte) (*rootSet, error) {
	rs := &rootSet{bySubject: map[string][][]byte{}}
	n := 0
	for len(der) > 0 {
		tag, cert, _, rest, ok := derElement(der)
		if !ok || tag != derSequence {
			break
		}
		der = rest
		subj, ok := rawSubject(cert)
		if !ok {
			continue
		}
		rs.bySubject[string(subj)] = append(rs.bySubject[string(subj)], cert)
		n++
	}
	if n == 0 {
		return nil, errors.New("no TLS root certificates were handed to the worker")
	}
	return rs, nil
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
	seen := map[string]bool{}
	add := func(subject []byte) {
		if seen[string(subject)] {
			return
		}
		seen[string(subject)] = true
		for _, der := range rs.bySubject[string(subject)] {
			if c, err := x509.ParseCertificate(der); err == nil {
				pool.AddCert(c)
			}
		}
	}
	for _, c := range peer {
		add(c.RawIssuer)
		add(c.RawSubject)
	}
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
