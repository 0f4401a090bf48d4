package store

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/pamctl/pamctl/broker"
)

// RecordKeyPurpose is the purpose of the vault-derived key (see
// vault.DerivedKey) that authenticates the store's records: requests,
// sessions (CLI and web) and proxy enrollments.
const RecordKeyPurpose = "store record authenticator"

// Record kinds: the first part of a record's logical name, the same in
// every backend (bbolt: the bucket holding it; etcd: the key under the
// prefix, "requests/"+id). A record's authenticator covers its name, so
// a sealed record moved to another id or another kind is refused.
const (
	KindRequests = "requests"
	KindSessions = "sessions"
	KindProxies  = "proxies"
	// KindOther is what OnForged reports for any other name.
	KindOther = "other"
)

// RecordKinds are the kinds OnForged reports: a bounded set, fit for a
// metric's label.
func RecordKinds() []string { return []string{KindRequests, KindSessions, KindProxies, KindOther} }

// RecordName is the logical name of the record of kind at key.
func RecordName(kind, key string) string { return kind + "/" + key }

// ErrRecordForged means a record failed its authenticator: it has none,
// or one that is not this deployment's for this record's name and
// content. Someone wrote the store without the master key.
var ErrRecordForged = errors.New("store: a record failed its authenticator")

// ErrNoRecordKey means a record was read or written before the store was
// given its record key (see RecordKey): a bug, never a property of the
// data.
var ErrNoRecordKey = errors.New("store: records are read and written only once the master key is known (no record key set)")

// recordMACDomain separates record authenticators from every other use
// of the derived key.
const recordMACDomain = "pamctl-store-record-v1\n"

// recordMACLen is the authenticator's length: HMAC-SHA256 cut to 128 bits.
const recordMACLen = 16

// RecordKey authenticates records: every record written carries "m", an
// HMAC-SHA256 (cut to 16 bytes, base64) under a key derived from the
// master key, over a domain string, the record's logical name and the
// exact bytes of its "d". A writer of the store (the bbolt file, the etcd
// prefix) without the master key can neither make one nor move one to
// another name.
//
// What it does not stop: putting back an earlier sealed version of the
// same record (for instance a grant as it was approved, before it was
// revoked), or deleting a record.
type RecordKey struct {
	k        []byte
	onForged func(kind string, err error)
}

// NewRecordKey wraps a 32-byte key derived for RecordKeyPurpose.
func NewRecordKey(k []byte) (*RecordKey, error) {
	if len(k) != 32 {
		return nil, fmt.Errorf("store: a record key is 32 bytes, got %d", len(k))
	}
	return &RecordKey{k: append([]byte(nil), k...)}, nil
}

// OnForged returns rk that also tells fn of every record it refuses
// because its authenticator is missing or wrong (ErrRecordForged), on
// any backend: kind is the record's kind (KindRequests, KindSessions,
// KindProxies; "other" for any other name), never its id, and err is
// the refusal. fn runs on the reading goroutine and must not block.
func (rk *RecordKey) OnForged(fn func(kind string, err error)) *RecordKey {
	return &RecordKey{k: rk.k, onForged: fn}
}

// recordKind is the kind of the record named name, from a fixed set.
func recordKind(name string) string {
	kind, _, _ := strings.Cut(name, "/")
	switch kind {
	case KindRequests, KindSessions, KindProxies:
		return kind
	}
	return KindOther
}

func (rk *RecordKey) mac(name string, d []byte) []byte {
	h := hmac.New(sha256.New, rk.k)
	h.Write([]byte(recordMACDomain))
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(name)))
	h.Write(n[:])
	h.Write([]byte(name))
	h.Write(d)
	return h.Sum(nil)[:recordMACLen]
}

// sealedEnvelope is envelope with its authenticator. "v" stays 1: builds
// from before authenticators decode these records (they ignore "m").
type sealedEnvelope struct {
	V int             `json:"v"`
	D json.RawMessage `json:"d"`
	M string          `json:"m,omitempty"`
}

// Encode encodes v as the record named name, sealed.
func (rk *RecordKey) Encode(name string, v any) ([]byte, error) {
	if rk == nil {
		return nil, fmt.Errorf("%w (writing %s)", ErrNoRecordKey, name)
	}
	d, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("store: encode: %w", err)
	}
	return json.Marshal(sealedEnvelope{V: recordVersion, D: d, M: base64.RawStdEncoding.EncodeToString(rk.mac(name, d))})
}

// forged is the error of a record that fails its authenticator.
func forged(name, why string) error {
	return unreadable{fmt.Errorf("%w: record %s %s: someone wrote the store without the master key. "+
		"Stop pamctl, restore the store from a backup (bbolt: a copy of pamctl.db; etcd: an etcd snapshot), "+
		"and run `pamctl audit verify`", ErrRecordForged, name, why)}
}

// unreadable is err, the error of a record the store holds but can never
// read (forged, or not a record), also matching
// broker.ErrRecordUnreadable; its text is err's.
type unreadable struct{ err error }

func (u unreadable) Error() string   { return u.err.Error() }
func (u unreadable) Unwrap() []error { return []error{u.err, broker.ErrRecordUnreadable} }

// undecodable is the error of the record named name ("" when unknown)
// that does not decode. It is unreadable (broker.ErrRecordUnreadable)
// only when it is not a record of its kind for any build: not JSON, or
// content that is not a JSON object. A field of another JSON type
// (json.UnmarshalTypeError naming a field) or a value a field's type
// refuses (a time that does not parse) is what a build that changed the
// field without a new record version wrote: a version skew in a rolling
// upgrade, which the build that wrote it reads. It is not taken for a
// record no one can read (a held call on such a grant stays held); its
// error says to run one pamctl version.
func undecodable(name string, err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	if errors.As(err, &syn) || errors.As(err, &typ) && typ.Field == "" {
		return notARecord(name, err)
	}
	return fmt.Errorf("%s: %w: another pamctl build may have written it with a field of another type; run the same pamctl version on every node, then retry", decodeWhat(name), err)
}

// notARecord is the error of the record named name ("" when unknown)
// that is no build's record: its envelope ({"v":N,"d":…}) or its content
// does not decode at all. It is unreadable (broker.ErrRecordUnreadable).
func notARecord(name string, err error) error {
	return unreadable{fmt.Errorf("%s: %w", decodeWhat(name), err)}
}

func decodeWhat(name string) string {
	if name == "" {
		return "store: decode record"
	}
	return "store: decode record " + name
}

// parse reads raw as the envelope of the record named name.
func parse(name string, raw []byte) (sealedEnvelope, error) {
	var env sealedEnvelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return env, notARecord(name, err)
	}
	if env.V > recordVersion {
		return env, fmt.Errorf("%w (record version %d, this build reads up to %d): upgrade pamctl", ErrSchemaTooNew, env.V, recordVersion)
	}
	return env, nil
}

// check checks the authenticator of env, the record named name.
func (rk *RecordKey) check(name string, env sealedEnvelope) error {
	var err error
	if env.M == "" {
		err = forged(name, "has no authenticator")
	} else if m, derr := base64.RawStdEncoding.DecodeString(env.M); derr != nil || !hmac.Equal(m, rk.mac(name, env.D)) {
		err = forged(name, "has an authenticator that does not match its name and content")
	}
	if err != nil && rk.onForged != nil {
		rk.onForged(recordKind(name), err)
	}
	return err
}

// open parses raw as the record named name and checks its authenticator.
func (rk *RecordKey) open(name string, raw []byte) (sealedEnvelope, error) {
	if rk == nil {
		return sealedEnvelope{}, fmt.Errorf("%w (reading %s)", ErrNoRecordKey, name)
	}
	env, err := parse(name, raw)
	if err != nil {
		return env, err
	}
	return env, rk.check(name, env)
}

// Decode checks raw as the record named name and decodes it into v: a
// record without a valid authenticator is refused (ErrRecordForged).
func (rk *RecordKey) Decode(name string, raw []byte, v any) error {
	env, err := rk.open(name, raw)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(env.D, v); err != nil {
		return undecodable(name, err)
	}
	return nil
}

// Seal is the upgrade of a record written before authenticators: it
// returns raw with an authenticator over its exact "d" and true, or raw
// and false when it already carries a valid one. A record whose
// authenticator is present but wrong is refused (ErrRecordForged): no
// build ever wrote one.
func (rk *RecordKey) Seal(name string, raw []byte) ([]byte, bool, error) {
	if rk == nil {
		return nil, false, fmt.Errorf("%w (sealing %s)", ErrNoRecordKey, name)
	}
	env, err := parse(name, raw)
	if err != nil {
		return nil, false, err
	}
	if env.M != "" {
		if err := rk.check(name, env); err != nil {
			return nil, false, err
		}
		return raw, false, nil
	}
	env.M = base64.RawStdEncoding.EncodeToString(rk.mac(name, env.D))
	out, err := json.Marshal(env)
	if err != nil {
		return nil, false, fmt.Errorf("store: encode record %s: %w", name, err)
	}
	return out, true, nil
}

// Records that are not sealed with the record key, and why:
//   - vault entries and the master-key check: sealed under the master key
//     themselves, and read by vault.Open, which checks the master key
//     before anything else can be derived from it;
//   - signing-key records (token.SealedKey): their own tag under the
//     master key (broker/token/keys.go), read before the record key is set;
//   - audit events, heads and anchors: their own authenticators and
//     signatures (audit_auth.go);
//   - audit sink cursors: their own authenticator under a key derived
//     from the master key (auditsink.CursorKeyPurpose), and a designed
//     answer to a forged one (the sink starts over from the first event,
//     visibly) rather than a refused start;
//   - limit counters: read and written on every proxied call; a writer
//     who can delete or reset a counter (which no authenticator stops)
//     gets all a forged one would give, and a raised one only refuses
//     calls, as deleting any record does;
//   - redeemed logins: a marker whose forgery only refuses that ID token
//     (deleting one, which no authenticator stops, re-allows it);
//   - the request indexes (req_*): they only point at records, and every
//     read through one checks that the (authenticated) record has the
//     entry that led to it (loadIndexed; etcdstore's hasIndexEntry), so an
//     added entry is refused like a forged record, not taken for what the
//     record says; a deleted one can only hide a request from a listing or
//     a sweep, and GrantsExpiringAfter, which the broker's revocation set
//     is built from, reads every record rather than an index;
//   - meta (schema version, probe) and a proxy's spool (on a proxy host,
//     which holds no master key).

// SetRecordKey gives the store its record key: from then on every record
// of the kinds above is sealed when written and checked when read. It is
// set once, after the vault has checked the master key and the keyring
// has said the deployment's records are sealed (see SealRecords).
func (db *DB) SetRecordKey(rk *RecordKey) { db.rk.Store(rk) }

// sealedBuckets are the buckets of authenticated records, by kind.
var sealedBuckets = []struct {
	kind   string
	bucket []byte
}{{KindRequests, bucketRequests}, {KindSessions, bucketSessions}, {KindProxies, bucketProxies}}

func (db *DB) recordKey() *RecordKey { return db.rk.Load() }

// putRec writes v as the record kind/key in bucket.
func (db *DB) putRec(tx *bolt.Tx, kind string, bucket, key []byte, v any) error {
	raw, err := db.recordKey().Encode(RecordName(kind, string(key)), v)
	if err != nil {
		return err
	}
	return tx.Bucket(bucket).Put(key, raw)
}

// getRec reads and checks the record kind/key of bucket.
func (db *DB) getRec(tx *bolt.Tx, kind string, bucket, key []byte, v any) error {
	raw := tx.Bucket(bucket).Get(key)
	if raw == nil {
		return ErrNotFound
	}
	return db.recordKey().Decode(RecordName(kind, string(key)), raw, v)
}

// eachRec is each for authenticated records.
func eachRec[T any](db *DB, tx *bolt.Tx, kind string, bucket []byte, fn func(*T) bool) error {
	rk := db.recordKey()
	c := tx.Bucket(bucket).Cursor()
	for k, raw := c.First(); k != nil; k, raw = c.Next() {
		var v T
		if err := rk.Decode(RecordName(kind, string(k)), raw, &v); err != nil {
			return err
		}
		if !fn(&v) {
			return nil
		}
	}
	return nil
}

// SealRecords is the upgrade to authenticated records: it seals every
// record written without an authenticator, in one transaction, and
// returns how many it sealed. Run it only while the keyring says this
// deployment's records are not sealed yet (token.Keyring.RecordsSealed),
// then mark them sealed (token.Keyring.MarkRecordsSealed): a later start
// refuses an unsealed record instead of sealing it. A record carrying a
// wrong authenticator fails it (ErrRecordForged).
func (db *DB) SealRecords(_ context.Context, rk *RecordKey) (int, error) {
	n := 0
	err := db.update(func(tx *bolt.Tx) error {
		n = 0
		for _, s := range sealedBuckets {
			b := tx.Bucket(s.bucket)
			if b == nil {
				continue
			}
			type kv struct{ k, v []byte }
			var redo []kv
			err := b.ForEach(func(k, v []byte) error {
				out, changed, err := rk.Seal(RecordName(s.kind, string(k)), v)
				if err != nil {
					return err
				}
				if changed {
					redo = append(redo, kv{append([]byte(nil), k...), out})
				}
				return nil
			})
			if err != nil {
				return err
			}
			for _, r := range redo {
				if err := b.Put(r.k, r.v); err != nil {
					return err
				}
			}
			n += len(redo)
		}
		return nil
	})
	return n, err
}
