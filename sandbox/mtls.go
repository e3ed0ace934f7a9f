package sandbox

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"

	"github.com/aivault/aivault/ipc"
)

// mTLS keeps the private key in the monitor. A job carries only the
// certificate chain (ClientCertPEM); during the handshake the worker sends
// one "sign" frame (digest + hash name) and the monitor answers with a
// "signed" frame (the signature in Data), like OpenSSH's privilege-separated
// monitor signing for its unprivileged child. A job may ask for at most
// maxSignsPerJob signatures, and only before the response head.

// maxSignsPerJob bounds the signatures one job may ask for (one handshake
// needs one).
const maxSignsPerJob = 1

// signFunc asks the monitor to sign digest with the named hash.
type signFunc func(digest []byte, hash string) ([]byte, error)

// Hash names on the wire (ipc.Result.Hash).
const (
	hashEd25519 = "Ed25519" // no pre-hash: Digest is the whole message
	pssPrefix   = "PSS-"
)

var hashByName = map[string]crypto.Hash{
	"SHA1": crypto.SHA1, "SHA256": crypto.SHA256, "SHA384": crypto.SHA384, "SHA512": crypto.SHA512,
}

// signOptsName names opts for the wire.
func signOptsName(opts crypto.SignerOpts) (string, error) {
	h := opts.HashFunc()
	if h == 0 {
		return hashEd25519, nil
	}
	name := ""
	for n, v := range hashByName {
		if v == h {
			name = n
		}
	}
	if name == "" {
		return "", errors.New("unsupported signature hash")
	}
	if _, ok := opts.(*rsa.PSSOptions); ok {
		return pssPrefix + name, nil
	}
	return name, nil
}

// signOptsFromName is the monitor's inverse of signOptsName. It also checks
// the digest length.
func signOptsFromName(name string, digest []byte) (crypto.SignerOpts, error) {
	if name == hashEd25519 {
		if len(digest) == 0 || len(digest) > 1024 {
			return nil, errors.New("bad message length")
		}
		return crypto.Hash(0), nil
	}
	pss := false
	if len(name) > len(pssPrefix) && name[:len(pssPrefix)] == pssPrefix {
		pss, name = true, name[len(pssPrefix):]
	}
	h, ok := hashByName[name]
	if !ok {
		return nil, errors.New("unsupported signature hash")
	}
	if len(digest) != h.Size() {
		return nil, errors.New("bad digest length")
	}
	if pss {
		return &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h}, nil
	}
	return h, nil
}

// remoteSigner is the worker's crypto.Signer: the public key from the
// certificate, the private-key operation done by the monitor.
type remoteSigner struct {
	pub  crypto.PublicKey
	sign signFunc
}

func (s remoteSigner) Public() crypto.PublicKey { return s.pub }

func (s remoteSigner) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	name, err := signOptsName(opts)
	if err != nil {
		return nil, err
	}
	return s.sign(digest, name)
}

// clientCertificate builds the worker's tls.Certificate from a PEM chain
// (leaf first) and a signFunc that reaches the monitor.
func clientCertificate(chainPEM []byte, sign signFunc) (tls.Certificate, *Error) {
	if sign == nil {
		return tls.Certificate{}, errorf(ClassNotImplemented, "this worker cannot reach a monitor to sign for a client certificate")
	}
	var cert tls.Certificate
	rest := chainPEM
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			cert.Certificate = append(cert.Certificate, b.Bytes)
		}
	}
	if len(cert.Certificate) == 0 {
		return tls.Certificate{}, errorf(ClassInvalidRequest, "the client certificate chain holds no certificate")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return tls.Certificate{}, errorf(ClassInvalidRequest, "the client certificate does not parse")
	}
	cert.Leaf = leaf
	cert.PrivateKey = remoteSigner{pub: leaf.PublicKey, sign: sign}
	return cert, nil
}

// workerSignFunc is the worker's side of the exchange over the job channel.
func workerSignFunc(emit func(ipc.Result) error, read func(*ipc.Result) error) signFunc {
	return func(digest []byte, hash string) ([]byte, error) {
		if err := emit(ipc.Result{Kind: ipc.ResultSign, Digest: digest, Hash: hash}); err != nil {
			return nil, err
		}
		var r ipc.Result
		if err := read(&r); err != nil {
			return nil, err
		}
		if r.Kind != ipc.ResultSigned || len(r.Data) == 0 {
			return nil, errors.New("the monitor did not sign for the client certificate")
		}
		return r.Data, nil
	}
}

// answerSign is the monitor's side: it signs one request from the worker
// with signer (nil: refuse). The reply carries no data when refused.
func answerSign(signer crypto.Signer, r ipc.Result) ipc.Result {
	reply := ipc.Result{Kind: ipc.ResultSigned}
	if signer == nil {
		return reply
	}
	opts, err := signOptsFromName(r.Hash, r.Digest)
	if err != nil {
		return reply
	}
	sig, err := signer.Sign(rand.Reader, r.Digest, opts)
	if err != nil {
		return reply
	}
	reply.Data = sig
	return reply
}
