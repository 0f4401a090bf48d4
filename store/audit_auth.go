package store

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker/audit"
)

// Event authenticators. The chain's hashes take no key, so whoever can
// write the data file can chain events of their own after the tail; the
// head pamctl signed next would cover them. With AuditOptions.RecordKey
// (derived from the master key) every event the log writes carries an
// authenticator, HMAC-SHA256 over its seq and hash cut to authLen bytes:
// in the audit_auth bucket beside it, and in its segment record. No head
// is signed over an event past the last head whose authenticator is
// missing or wrong, and start refuses a trail that holds one; a segment
// record whose authenticator is wrong does not verify.
var bucketAuditAuth = []byte("audit_auth")

const (
	authLen = 16
	// AuditRecordKeyPurpose is what the record key is derived for
	// (vault.DerivedKey).
	AuditRecordKeyPurpose = "audit event authenticator"
)

// ErrTampered is what every error meaning the stored audit trail was
// changed by something other than pamctl Is (errors.Is), on either
// backend: an event this deployment did not write (ErrUnauthenticated), a
// deleted head (ErrHeadMissing), a trail below its high-water mark
// (ErrBelowHighWater). A server keeps such a trail unready until it
// restarts.
var ErrTampered = errors.New("store: audit trail changed by something other than pamctl")

// TrailTampered is an error that Is ErrTampered: the sentinels above, on
// both backends, are of this type.
type TrailTampered string

func (e TrailTampered) Error() string        { return string(e) }
func (e TrailTampered) Is(target error) bool { return target == ErrTampered }

// ErrUnauthenticated means the trail holds an event past its last signed
// head that this deployment did not write: its authenticator is missing
// or wrong.
var ErrUnauthenticated error = TrailTampered("store: audit event not written by this deployment")

// AuthenticatorLen is the length of an event's authenticator.
const AuthenticatorLen = authLen

// EventMAC computes event authenticators under a record key exactly as
// this store does, for the etcd backend (store/etcdstore), which stores
// the same ones: a trail moved between the two keeps them. Not safe for
// concurrent use.
type EventMAC struct{ m *authMAC }

// NewEventMAC returns the authenticator of key; nil for a nil key.
func NewEventMAC(key []byte) *EventMAC {
	if key == nil {
		return nil
	}
	return &EventMAC{newAuthMAC(key)}
}

// Of returns the authenticator (AuthenticatorLen bytes) of the event at
// seq whose hash is hash; it is valid until the next call.
func (e *EventMAC) Of(seq uint64, hash string) []byte { return e.m.of(seq, hash) }

// authMAC computes authenticators with one keyed HMAC, reset for each:
// the appender and the indexer each keep one (not safe for concurrent
// use; what of returns is valid until the next call).
type authMAC struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

func newAuthMAC(key []byte) *authMAC {
	if key == nil {
		return nil
	}
	return &authMAC{h: hmac.New(sha256.New, key)}
}

func (m *authMAC) of(seq uint64, hash string) []byte {
	m.h.Reset()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	m.h.Write([]byte("pamctl audit event v1\x00"))
	m.h.Write(b[:])
	m.h.Write([]byte(hash))
	return m.h.Sum(m.sum[:0])[:authLen]
}

// authBucket is where tx stores authenticators; nil without a RecordKey.
func (l *AuditLog) authBucket(tx *bolt.Tx) (*bolt.Bucket, error) {
	if l.opts.RecordKey == nil {
		return nil, nil
	}
	b, err := tx.CreateBucketIfNotExists(bucketAuditAuth)
	if err != nil {
		return nil, fmt.Errorf("store: create bucket audit_auth: %w", err)
	}
	b.FillPercent = 1 // keys only ever append
	return b, nil
}

// putAuth stores the authenticator of the event at seq in tx.
func (l *AuditLog) putAuth(tx *bolt.Tx, seq uint64, hash string) error {
	b, err := l.authBucket(tx)
	if b == nil || err != nil {
		return err
	}
	// bbolt runs one write transaction at a time: one MAC serves them.
	// The value is copied: bbolt keeps it until the transaction ends.
	if l.txMAC == nil {
		l.txMAC = newAuthMAC(l.opts.RecordKey)
	}
	return putMAC(b, seq, bytes.Clone(l.txMAC.of(seq, hash)))
}

func putMAC(b *bolt.Bucket, seq uint64, mac []byte) error {
	if err := b.Put(u64(seq), mac); err != nil {
		return fmt.Errorf("store: audit authenticator put: %w", err)
	}
	return nil
}

// checkAuthenticated checks that every stored event after seq from
// carries its authenticator (nothing without a RecordKey).
func (l *AuditLog) checkAuthenticated(tx *bolt.Tx, from uint64) error {
	if l.opts.RecordKey == nil {
		return nil
	}
	auth, m := tx.Bucket(bucketAuditAuth), newAuthMAC(l.opts.RecordKey)
	c := tx.Bucket(bucketAudit).Cursor()
	for k, v := c.Seek(u64(from + 1)); k != nil; k, v = c.Next() {
		seq := binary.BigEndian.Uint64(k)
		line, err := recordLine(v)
		if err != nil {
			return err
		}
		var got []byte
		if auth != nil {
			got = auth.Get(k)
		}
		if !hmac.Equal(got, m.of(seq, audit.StoredHash(line))) {
			what := "its authenticator is wrong"
			if got == nil {
				what = "it has no authenticator"
			}
			return fmt.Errorf("%w: %s holds event seq %d after the last signed head (seq %d), and %s: it was added by a writer of the data file, not by pamctl. Run `pamctl audit verify` to see the events after the last signed head. If they are pamctl's (the data dir was written by an earlier version that stopped without signing them: a crash just before an upgrade, or a backup it took, restored) and your sinks or off-host anchors show the same events, start that earlier version once and stop it cleanly, which signs them, then start this one; otherwise restore the data dir from a backup", ErrUnauthenticated, l.db.path(), seq, from, what)
		}
	}
	return nil
}

// AuthCheck checks the events' authenticators while a trail is verified
// (AuditLog.Verify, here and in store/etcdstore), so that verify fails on
// what start and head signing refuse: an event after the signed head
// without a valid authenticator, and an event anywhere with a wrong one
// (no build writes a wrong one). Events at or before the signed head may
// carry none: earlier versions wrote none, and the head's signature
// covers them. Without a head, a missing authenticator is left to the
// verifier, which fails such a trail for its missing head (pamctl signs
// the first head with the first event). Not safe for concurrent use.
type AuthCheck struct {
	m     *authMAC
	head  uint64 // the signed head's seq
	noHd  bool   // there is no signed head
	where string // the store, in a break's words
}

// NewAuthCheck returns the check of a trail whose signed head is head
// (nil: none) under key, kept in where ("pamctl.db", "etcd under
// /pamctl/"); nil without a key, and a nil AuthCheck checks nothing.
func NewAuthCheck(key []byte, head *audit.SignedHead, where string) *AuthCheck {
	if key == nil {
		return nil
	}
	c := &AuthCheck{m: newAuthMAC(key), where: where}
	if head != nil {
		c.head = head.Seq
	} else {
		c.noHd = true
	}
	return c
}

// Check returns the break of the event at seq with line whose stored
// authenticator is got (nil: it has none), or nil when it passes.
func (c *AuthCheck) Check(seq uint64, line, got []byte) *audit.BreakError {
	if c == nil {
		return nil
	}
	if got == nil && (c.noHd || seq <= c.head) {
		return nil
	}
	if got != nil && hmac.Equal(got, c.m.of(seq, audit.StoredHash(line))) {
		return nil
	}
	found := "none"
	if got != nil {
		found = "a wrong one (another event's, or one made without the master key)"
	}
	what := "this event was not written by this deployment: a writer of " + c.where + " without the master key added it"
	if got != nil && seq <= c.head {
		what = "this event's authenticator was not written by this deployment: a writer of " + c.where + " without the master key changed it"
	}
	return &audit.BreakError{Seq: seq, Kind: audit.BreakUnauthenticated,
		Expected: "the event's authenticator under this deployment's master key",
		Found:    found + "; " + what + ". Restore the store from a backup taken before it (see docs/audit.md, Storage)"}
}
