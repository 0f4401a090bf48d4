package store

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/pamctl/pamctl/broker"

	bolt "go.etcd.io/bbolt"
)

// Request indexes (schema 2). Every key ends with the request id and every
// value is empty; putRequest and deleteRequest keep them in the same
// transaction as the record, and migrate rebuilds them from the records.
//
//	req_state    state 0x00 id                      every request, by state
//	req_owner    principal state 0x00 id            every request, by requester and state
//	req_party    principal id                       requester, each reviewer and whoever ended it
//	req_due      time(deadline) id                  pending (PendingUntil) and approved (ExpiresAt)
//	req_grant    time(ExpiresAt) id                 every request ever approved
//	req_settled  time(max(EndedAt, ExpiresAt)) id   every request that is over: what retention prunes
//
// principal is uvarint(len(issuer)) issuer uvarint(len(subject)) subject
// (Identity.Same compares exactly these); time is 12 bytes that sort like
// the instant (see timePrefix).
var (
	bucketReqState   = []byte("req_state")
	bucketReqOwner   = []byte("req_owner")
	bucketReqParty   = []byte("req_party")
	bucketReqDue     = []byte("req_due")
	bucketReqGrant   = []byte("req_grant")
	bucketReqSettled = []byte("req_settled")

	requestIndexes = [][]byte{bucketReqState, bucketReqOwner, bucketReqParty, bucketReqDue, bucketReqGrant, bucketReqSettled}
)

// timeLen is the length of a time prefix.
const timeLen = 12

// timePrefix encodes t so that byte order is time order: seconds since
// 1970 with the sign bit flipped (so times before 1970, like the zero
// time, sort first), then nanoseconds, both big-endian.
func timePrefix(t time.Time) []byte {
	b := make([]byte, timeLen, timeLen+32)
	binary.BigEndian.PutUint64(b, uint64(t.Unix())^(1<<63))
	binary.BigEndian.PutUint32(b[8:], uint32(t.Nanosecond()))
	return b
}

func timeKey(t time.Time, id string) []byte { return append(timePrefix(t), id...) }

func principalKey(i broker.Identity) []byte {
	b := make([]byte, 0, 2*binary.MaxVarintLen64+len(i.Issuer)+len(i.Subject))
	b = binary.AppendUvarint(b, uint64(len(i.Issuer)))
	b = append(b, i.Issuer...)
	b = binary.AppendUvarint(b, uint64(len(i.Subject)))
	return append(b, i.Subject...)
}

func stateKey(s broker.State, id string) []byte {
	b := make([]byte, 0, len(s)+1+len(id))
	b = append(b, s...)
	b = append(b, 0)
	return append(b, id...)
}

func ownerKey(i broker.Identity, s broker.State, id string) []byte {
	return append(principalKey(i), stateKey(s, id)...)
}

type indexEntry struct{ bucket, key []byte }

// requestIndexEntries lists the index keys of r.
func requestIndexEntries(r *broker.Request) []indexEntry {
	es := []indexEntry{
		{bucketReqState, stateKey(r.State, r.ID)},
		{bucketReqOwner, ownerKey(r.Requester, r.State, r.ID)},
	}
	parties := []broker.Identity{r.Requester}
	for _, rv := range r.Reviews {
		parties = append(parties, rv.Reviewer)
	}
	if r.EndedBy != nil {
		parties = append(parties, *r.EndedBy)
	}
	seen := map[string]bool{}
	for _, p := range parties {
		k := append(principalKey(p), r.ID...)
		if !seen[string(k)] {
			seen[string(k)] = true
			es = append(es, indexEntry{bucketReqParty, k})
		}
	}
	if r.ApprovedAt != nil && r.ExpiresAt != nil {
		es = append(es, indexEntry{bucketReqGrant, timeKey(*r.ExpiresAt, r.ID)})
	}
	switch {
	case r.State == broker.StatePending:
		es = append(es, indexEntry{bucketReqDue, timeKey(r.PendingUntil, r.ID)})
	case r.State == broker.StateApproved:
		// An approved request always has ExpiresAt; without one it can
		// never come due, so it waits at the end of time rather than
		// being lost to the sweep.
		deadline := time.Unix(math.MaxInt64>>1, 0)
		if r.ExpiresAt != nil {
			deadline = *r.ExpiresAt
		}
		es = append(es, indexEntry{bucketReqDue, timeKey(deadline, r.ID)})
	default:
		es = append(es, indexEntry{bucketReqSettled, timeKey(settledAt(r), r.ID)})
	}
	return es
}

// settledAt is when a request that is over stops mattering: when it ended,
// or, for a grant that ended early, when its tokens would have expired
// anyway (until then the broker refuses them by its id).
func settledAt(r *broker.Request) time.Time {
	t := r.CreatedAt
	if r.EndedAt != nil {
		t = *r.EndedAt
	}
	if r.ExpiresAt != nil && r.ExpiresAt.After(t) {
		t = *r.ExpiresAt
	}
	return t
}

// putRequest writes r (encoded as raw) and moves its index entries from
// those of old (nil for a new request).
func putRequest(tx *bolt.Tx, old, r *broker.Request, raw []byte) error {
	if old != nil {
		if err := deleteIndexEntries(tx, old); err != nil {
			return err
		}
	}
	for _, e := range requestIndexEntries(r) {
		if err := tx.Bucket(e.bucket).Put(e.key, []byte{}); err != nil {
			return fmt.Errorf("store: index %s: %w", e.bucket, err)
		}
	}
	return tx.Bucket(bucketRequests).Put([]byte(r.ID), raw)
}

// deleteRequest removes r and its index entries.
func deleteRequest(tx *bolt.Tx, r *broker.Request) error {
	if err := deleteIndexEntries(tx, r); err != nil {
		return err
	}
	return tx.Bucket(bucketRequests).Delete([]byte(r.ID))
}

func deleteIndexEntries(tx *bolt.Tx, r *broker.Request) error {
	for _, e := range requestIndexEntries(r) {
		if err := tx.Bucket(e.bucket).Delete(e.key); err != nil {
			return fmt.Errorf("store: index %s: %w", e.bucket, err)
		}
	}
	return nil
}

// rebuildRequestIndexes empties the request indexes and indexes every
// stored request again (the schema 1 -> 2 migration).
func rebuildRequestIndexes(tx *bolt.Tx) error {
	for _, name := range requestIndexes {
		if tx.Bucket(name) != nil {
			if err := tx.DeleteBucket(name); err != nil {
				return fmt.Errorf("store: reset index %s: %w", name, err)
			}
		}
		if _, err := tx.CreateBucket(name); err != nil {
			return fmt.Errorf("store: create index %s: %w", name, err)
		}
	}
	// It runs as the file is opened, before the record key is known, so it
	// reads the records unchecked: index entries only point at records,
	// and every reader of a request checks the record itself.
	var failed error
	err := each(tx, bucketRequests, func(r *broker.Request) bool {
		for _, e := range requestIndexEntries(r) {
			if err := tx.Bucket(e.bucket).Put(e.key, []byte{}); err != nil {
				failed = fmt.Errorf("store: index %s: %w", e.bucket, err)
				return false
			}
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("store: rebuild request indexes: %w", err)
	}
	return failed
}

// IndexEntry is one request index key, for backends that keep the same
// indexes in another key space (store/etcdstore): Index is the index's
// name without its "req_" (state, owner, party, due, grant, settled), Key
// the key within it, ending with the request id.
type IndexEntry struct {
	Index string
	Key   []byte
}

// Index names, as in IndexEntry.Index.
const (
	IndexState   = "state"
	IndexOwner   = "owner"
	IndexParty   = "party"
	IndexDue     = "due"
	IndexGrant   = "grant"
	IndexSettled = "settled"
)

// TimePrefixLen is the length of the time prefix of the due, grant and
// settled index keys.
const TimePrefixLen = timeLen

// RequestIndexEntries lists the index keys of r, as bbolt stores them.
func RequestIndexEntries(r *broker.Request) []IndexEntry {
	es := requestIndexEntries(r)
	out := make([]IndexEntry, len(es))
	for i, e := range es {
		out[i] = IndexEntry{Index: string(e.bucket[len("req_"):]), Key: e.key}
	}
	return out
}

// HasIndexEntry reports whether r has key in request index index (named
// as in RequestIndexEntries). Every read through an index asks it of the
// record the entry names: the indexes carry no authenticator, the
// records do, and a record is written with its entries in one
// transaction, so a mismatch is an entry someone else wrote.
func HasIndexEntry(r *broker.Request, index string, key []byte) bool {
	for _, e := range requestIndexEntries(r) {
		if string(e.bucket[len("req_"):]) == index && string(e.key) == string(key) {
			return true
		}
	}
	return false
}

// ForgedIndexEntry is the error of an index entry r does not have (see
// HasIndexEntry).
func ForgedIndexEntry(r *broker.Request, index string) error {
	return forged(RecordName(KindRequests, r.ID), fmt.Sprintf("is named by an entry of index %s it does not have (the record is %s)", index, r.State))
}

// StateIndexPrefix is the prefix of state's keys in the state index.
func StateIndexPrefix(s broker.State) []byte { return stateKey(s, "") }

// OwnerIndexPrefix is the prefix of who's requests in state s in the owner index.
func OwnerIndexPrefix(who broker.Identity, s broker.State) []byte { return ownerKey(who, s, "") }

// PartyIndexPrefix is the prefix of who's keys in the party index.
func PartyIndexPrefix(who broker.Identity) []byte { return principalKey(who) }

// TimeIndexPrefix is t as the due, grant and settled indexes encode it.
func TimeIndexPrefix(t time.Time) []byte { return timePrefix(t) }
