package ipc

import "encoding/json"

// ServerHello is the first frame the daemon sends on every connection.
type ServerHello struct {
	V       int    `json:"v"`
	Version string `json:"version"`
	// Role is what the peer's credentials alone allow: operator (root),
	// owner (the vault owner's uid: operator once it proves the key), or
	// agent. Refused peers get an error frame instead and are closed.
	Role string `json:"role"`
	// Challenge is a fresh random nonce for the key-possession proof.
	Challenge []byte `json:"challenge"`
	Provider  string `json:"provider,omitempty"`
}

// Call is one request from a client.
type Call struct {
	V  int    `json:"v"`
	Op string `json:"op"`
	// Proof is HMAC(KEK-derived key, Challenge): it makes the vault owner an
	// operator without the key crossing the socket.
	Proof []byte          `json:"proof,omitempty"`
	Args  json.RawMessage `json:"args,omitempty"`
}

// Reply answers a Call. For an invoke, a successful Reply is followed by the
// worker's Result frames (head, chunks, end).
type Reply struct {
	OK     bool            `json:"ok"`
	Class  string          `json:"class,omitempty"`
	Error  string          `json:"error,omitempty"`
	Hint   string          `json:"hint,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// Peer roles.
const (
	RoleOperator = "operator"
	RoleOwner    = "owner"
	RoleAgent    = "agent"
	RoleRefused  = "refused"
)
