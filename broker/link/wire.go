// Package link is the remote link between a central broker and the local
// proxies of `pamctl serve --role proxy`: the wire types of the broker's
// /v1/proxies API, the sealing of provider keys to a proxy's in-memory key,
// the broker-side Registry of enrolled proxies, and the proxy-side Client
// that enrolls, follows revocations, fetches keys and configuration, and
// ships its audit spool.
//
// The proxy side plugs into package proxy through its small interfaces
// (TokenVerifier, RevocationList, KeySource, KeyLister, Holder, AuditSink);
// link itself imports only the broker's leaf packages token and audit, so
// the data path never depends on the broker's service.
package link

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/token"
)

// ScopeServe is the scope a proxy's workload identity must be granted to
// enroll.
const ScopeServe = "proxy:serve"

// HeaderProxyID names the enrollment a proxy's API call is made for.
const HeaderProxyID = "Pamctl-Proxy-Id"

// EnrollRequest is the body of POST /v1/proxies/enroll.
type EnrollRequest struct {
	// Grant is the approved request that grants the caller proxy:serve.
	Grant string `json:"grant"`
	// PublicKey is the proxy's X25519 key (raw, 32 bytes) that provider
	// keys are sealed to; generated in memory at start.
	PublicKey []byte `json:"public_key"`
	Version   string `json:"version"`
	// Address is where agents reach the proxy (informational).
	Address string `json:"address"`
	// ID, when set, renews that enrollment (same identity) instead of
	// creating a new one, so the spool keeps its per-proxy order.
	ID string `json:"id,omitempty"`
	// SpoolNext is the spool sequence the proxy ships next (its first
	// unacknowledged event). A new enrollment expects shipments from
	// there; a renewal ignores it and keeps the broker's position.
	SpoolNext uint64 `json:"spool_next,omitempty"`
}

// Enrollment is one enrolled proxy, as the broker records it.
type Enrollment struct {
	ID        string    `json:"id"`
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer,omitempty"`
	Grant     string    `json:"grant"`
	Version   string    `json:"version"`
	Address   string    `json:"address"`
	PublicKey []byte    `json:"public_key"`
	Enrolled  time.Time `json:"enrolled"`
	ExpiresAt time.Time `json:"expires_at"`
	// LastContact is the last API call or stream heartbeat from the proxy.
	LastContact time.Time `json:"last_contact"`
	// ConfigVersion is the configuration version the proxy last reported
	// running.
	ConfigVersion string     `json:"config_version,omitempty"`
	RevokedAt     *time.Time `json:"revoked_at,omitempty"`
	// Acked is the highest spool sequence number the broker has recorded;
	// AckedAt is the broker audit seq of that event (where recovery after
	// a broker crash starts scanning).
	Acked   uint64 `json:"acked"`
	AckedAt uint64 `json:"acked_at"`
	// TokenIssuer is the iss of the broker's access tokens, which the
	// proxy checks (the broker's own URL, which may differ from the
	// address the proxy reaches it by).
	TokenIssuer string `json:"token_issuer,omitempty"`
	// EarlierGrants are the grants renewals moved it from (the last
	// maxEarlierGrants): revoking it cuts them off for enrolling too.
	EarlierGrants []string `json:"earlier_grants,omitempty"`
}

// Fingerprint names an enrollment where its id need not be shown, such as
// the broker's unauthenticated /metrics: the first 12 hex digits of the
// SHA-256 of the id, one per enrollment (no two collide in any real
// fleet), from which the id cannot be recovered. `pamctl proxies` shows
// it beside the id. The id is no credential (every link call also needs
// the enrolled identity's session), but it is the handle of a proxy's
// enrollment, renewals and audit shipments, and nobody but the proxy and
// the broker's admins needs it.
func Fingerprint(id string) string {
	sum := sha256.Sum256([]byte("pamctl proxy enrollment " + id))
	return hex.EncodeToString(sum[:6])
}

// grants returns every grant e stood on.
func (e *Enrollment) grants() []string { return append([]string{e.Grant}, e.EarlierGrants...) }

// Active reports whether e may still serve at now.
func (e *Enrollment) Active(now time.Time) bool {
	return e.RevokedAt == nil && now.Before(e.ExpiresAt)
}

// StreamState is one message of GET /v1/proxies/stream (Server-Sent
// Events, event name "state"): the whole revocation set the first time
// and whenever a revocation is dropped, else only the additions (Delta).
type StreamState struct {
	// Delta: Revoked holds only grants revoked since the last message.
	Delta bool `json:"delta,omitempty"`
	// Revoked maps grant ids to when their tokens would expire anyway.
	Revoked       map[string]time.Time `json:"revoked"`
	KeysVersion   string               `json:"keys_version"`
	ConfigVersion string               `json:"config_version"`
	// SigningKeys is the version of the broker's JWKS (token.JWKS.Version):
	// when it changes the proxy refetches the JWKS, so a key withdrawn at
	// once (keys rotate --retire-now) stops verifying there too. Empty
	// from a broker that does not send it.
	SigningKeys string `json:"signing_keys,omitempty"`
	// Time is the broker's clock at the message (also sent as heartbeats).
	Time time.Time `json:"time"`
}

// SealedKeys is the answer of GET /v1/proxies/keys: the vaulted provider
// keys as JSON (name → value), sealed to the proxy's public key.
type SealedKeys struct {
	Version string `json:"version"`
	// Ephemeral is the broker's one-time X25519 public key.
	Ephemeral []byte `json:"ephemeral"`
	Nonce     []byte `json:"nonce"`
	Sealed    []byte `json:"sealed"`
}

// ProxyConfig is the answer of GET /v1/proxies/config: the broker's rules,
// masking, limits and upstreams as a JSON document the proxy decodes like
// its own config, with its version (a hash of the document).
type ProxyConfig struct {
	Version  string          `json:"version"`
	Document json.RawMessage `json:"document"`
}

// SpooledEvent is one event a proxy ships, with its spool sequence
// number (in order, from 1, per enrollment: the idempotency key).
type SpooledEvent struct {
	Seq   uint64      `json:"seq"`
	Event audit.Event `json:"event"`
}

// AuditBatch is the body of POST /v1/proxies/audit.
type AuditBatch struct {
	Events []SpooledEvent `json:"events"`
}

// AuditAck is its answer: every event up to Acked is in the trail.
type AuditAck struct {
	Acked uint64 `json:"acked"`
}

// MaxAuditBatch bounds the events of one shipment.
const MaxAuditBatch = 256

// sealInfo binds the derived key to its use.
var sealInfo = []byte("pamctl proxy keys v1")

// Seal encrypts plain to the X25519 public key pub: an ephemeral key
// agreement, HKDF-SHA256 over the shared secret and both public keys,
// AES-256-GCM. Only the holder of pub's private key can open it, so a
// TLS-terminating middlebox in between never sees what is sealed.
func Seal(pub []byte, plain []byte) (ephemeral, nonce, sealed []byte, err error) {
	peer, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("link: seal: bad public key: %w", err)
	}
	eph, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	shared, err := eph.ECDH(peer)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("link: seal: %w", err)
	}
	aead, err := sealAEAD(shared, eph.PublicKey().Bytes(), pub)
	if err != nil {
		return nil, nil, nil, err
	}
	nonce = make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, nil, err
	}
	return eph.PublicKey().Bytes(), nonce, aead.Seal(nil, nonce, plain, eph.PublicKey().Bytes()), nil
}

// Open reverses Seal with the private key.
func Open(priv *ecdh.PrivateKey, ephemeral, nonce, sealed []byte) ([]byte, error) {
	peer, err := ecdh.X25519().NewPublicKey(ephemeral)
	if err != nil {
		return nil, fmt.Errorf("link: open: bad ephemeral key: %w", err)
	}
	shared, err := priv.ECDH(peer)
	if err != nil {
		return nil, fmt.Errorf("link: open: %w", err)
	}
	aead, err := sealAEAD(shared, ephemeral, priv.PublicKey().Bytes())
	if err != nil {
		return nil, err
	}
	if len(nonce) != aead.NonceSize() {
		return nil, errors.New("link: open: bad nonce")
	}
	plain, err := aead.Open(nil, nonce, sealed, ephemeral)
	if err != nil {
		return nil, errors.New("link: open: sealed keys do not authenticate (not sealed to this proxy's key, or altered in transit)")
	}
	return plain, nil
}

func sealAEAD(shared, ephPub, recipient []byte) (cipher.AEAD, error) {
	salt := append(append([]byte(nil), ephPub...), recipient...)
	key, err := hkdf.Key(sha256.New, shared, salt, string(sealInfo), 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Subjects names approvers (users and groups).
type Subjects struct {
	Users  []string `json:"users,omitempty"`
	Groups []string `json:"groups,omitempty"`
}

// HoldApproval is one require_approval rule that matched a call.
type HoldApproval struct {
	Rule      string   `json:"rule"`
	Approvers Subjects `json:"approvers"`
}

// HoldRequest is the body of POST /v1/proxies/hold: a call a prompt rule
// holds for approval, as the proxy saw it (see proxy.HoldRequest).
//
// Method (the call's HTTP method), Matches and MatchSummary (the pieces of
// the excerpt with the places the rule matched in, see
// proxy.HoldRequest) are newer than the rest: a proxy older than them
// does not send them, and the broker then shows the method as not
// reported (broker.PromptHold.Method) and the excerpt as text; a broker
// older than them refuses a body that has them, and Client.Hold sends the
// hold again without them (the excerpt's text still names the places).
type HoldRequest struct {
	Grant        string         `json:"grant"`
	Claims       token.Claims   `json:"claims"`
	Rule         string         `json:"rule"`
	Approvers    Subjects       `json:"approvers"`
	Approvals    []HoldApproval `json:"approvals,omitempty"`
	Model        string         `json:"model,omitempty"`
	Method       string         `json:"method,omitempty"`
	Endpoint     string         `json:"endpoint,omitempty"`
	Excerpt      string         `json:"excerpt,omitempty"`
	Matches      []HeldMatch    `json:"matches,omitempty"`
	MatchSummary string         `json:"match_summary,omitempty"`
	PromptSHA256 string         `json:"prompt_sha256,omitempty"`
	CallSHA256   string         `json:"call_sha256,omitempty"` // proxy.HoldRequest.CallSHA256
	// Tool and Arguments (masked) are set for a held tool call.
	Tool      string `json:"tool,omitempty"`
	Arguments string `json:"arguments,omitempty"`
}

// HeldMatch is a piece of a held prompt's excerpt and the places in the
// call the rule matched in it (proxy.HeldMatch).
type HeldMatch struct {
	Where []string `json:"where"`
	Text  string   `json:"text"`
}

// HoldDecision is its answer.
type HoldDecision struct {
	Approved bool   `json:"approved"`
	ID       string `json:"id,omitempty"`
	Reason   string `json:"reason,omitempty"`
}
