package applets

import (
	"crypto"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"

	"github.com/aivault/aivault/policy"
)

// mtlsIdentity reads an mtls credential's secret, a JSON object
// {"certPem": chain, "keyPem": private key}. It returns the public chain
// (re-encoded PEM, for the worker) and the private key as a signer that
// stays in this process: the worker asks for the handshake signature over
// the job channel (sandbox.Pool.RunSigned).
func mtlsIdentity(secret []byte) ([]byte, crypto.Signer, error) {
	var v struct {
		CertPem string `json:"certPem"`
		KeyPem  string `json:"keyPem"`
	}
	// json errors can quote input bytes: never wrap them.
	if json.Unmarshal(secret, &v) != nil || v.CertPem == "" || v.KeyPem == "" {
		return nil, nil, policy.Errorf(policy.ClassInvalidRequest, "an mtls credential's secret must be a JSON object with certPem and keyPem").
			WithHint(`store {"certPem":"-----BEGIN CERTIFICATE-----\n…","keyPem":"-----BEGIN PRIVATE KEY-----\n…"} with 'aivault secrets rotate'`)
	}
	pair, err := tls.X509KeyPair([]byte(v.CertPem), []byte(v.KeyPem))
	if err != nil {
		return nil, nil, policy.Errorf(policy.ClassInvalidRequest, "the mtls secret's certPem and keyPem do not parse as a matching certificate and key")
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, nil, policy.Errorf(policy.ClassInvalidRequest, "the mtls secret's key type cannot sign")
	}
	var chain []byte
	for _, der := range pair.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	return chain, signer, nil
}
