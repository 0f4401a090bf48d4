package etcdstore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/store"
)

// MigrateReport says what Migrate copied.
type MigrateReport struct {
	Keys         int               `json:"keys"`
	VaultEntries int               `json:"vault_entries"`
	Sessions     int               `json:"sessions"`
	Logins       int               `json:"redeemed_logins"`
	Requests     int               `json:"requests"`
	Enrollments  int               `json:"enrollments"`
	SinkCursors  int               `json:"sink_cursors"`
	Counters     int               `json:"counters"`
	Events       uint64            `json:"events"`
	Last         audit.Link        `json:"last"`
	Anchor       *audit.Anchor     `json:"anchor,omitempty"`
	Head         *audit.SignedHead `json:"head,omitempty"`
}

// ErrTargetNotEmpty means the etcd prefix already holds pamctl state.
var ErrTargetNotEmpty = errors.New("etcdstore: the target prefix is not empty")

// MigrateReplica names the token records Migrate writes for the counters it
// copies (see counters.go).
const MigrateReplica = "migrated-from-bbolt"

// migrateStates are every request state: the bbolt store is read through
// its state index.
var migrateStates = []broker.State{broker.StatePending, broker.StateApproved, broker.StateDenied, broker.StateExpired, broker.StateRevoked}

// Migrate copies a bbolt store (its server stopped: the caller holds the
// data dir's lock) into dst: signing keys, the vault and its master-key
// check, sessions and the ID tokens that opened them, requests (their indexes rebuilt by CreateRequest),
// proxy enrollments, audit sink cursors, the grants' token counters, and
// the whole audit chain byte for byte with its retention anchor and signed
// head, so the chain verifies in etcd exactly as it did in bbolt (and
// against the high-water mark in the copied keys). With recordKey (the
// deployment's store.AuditRecordKeyPurpose key) every copied event carries
// its authenticator, as the replicas' own do, and a source trail holding
// an event past its last signed head without a valid one is refused
// (store.ErrUnauthenticated), as bbolt's start refuses it. dst's prefix
// must be empty unless replace is set, which first deletes everything
// under it.
func Migrate(ctx context.Context, src *store.DB, dst *DB, replace bool, recordKey []byte) (MigrateReport, error) {
	var rep MigrateReport
	if err := dst.checkEmpty(ctx, replace); err != nil {
		return rep, err
	}
	// The trail first: a run cut short leaves a non-empty prefix, which
	// the next run refuses without --replace.
	if err := dst.copyTrail(ctx, src, recordKey, &rep); err != nil {
		return rep, err
	}
	keys, err := src.Keys(ctx)
	if err != nil {
		return rep, err
	}
	if len(keys) > 0 {
		if err := dst.SaveKeys(ctx, keys...); err != nil {
			return rep, err
		}
	}
	rep.Keys = len(keys)
	if check, err := src.MasterCheck(ctx); err == nil && len(check) > 0 {
		if err := dst.SetMasterCheck(ctx, check); err != nil {
			return rep, err
		}
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return rep, err
	}
	entries, err := src.ListEntries(ctx)
	if err != nil {
		return rep, err
	}
	for _, e := range entries {
		if err := dst.PutEntry(ctx, e); err != nil {
			return rep, err
		}
	}
	rep.VaultEntries = len(entries)
	sessions, err := src.ListSessions(ctx, func(*broker.SessionRecord) bool { return true })
	if err != nil {
		return rep, err
	}
	for _, s := range sessions {
		if err := dst.CreateSession(ctx, s); err != nil {
			return rep, err
		}
	}
	rep.Sessions = len(sessions)
	// The ID tokens that opened a session, so none opens another here.
	now := time.Now()
	logins, err := src.RedeemedLogins(ctx, now)
	if err != nil {
		return rep, err
	}
	for k, exp := range logins {
		if _, err := dst.RedeemLogin(ctx, k, now, exp); err != nil {
			return rep, err
		}
	}
	rep.Logins = len(logins)
	var grants []string
	for _, st := range migrateStates {
		rs, err := src.RequestsInState(ctx, st, nil)
		if err != nil {
			return rep, err
		}
		for _, r := range rs {
			if err := dst.CreateRequest(ctx, r); err != nil {
				return rep, fmt.Errorf("etcdstore: migrate request %s: %w", r.ID, err)
			}
			if r.Kind != broker.KindPrompt {
				grants = append(grants, r.ID)
			}
		}
		rep.Requests += len(rs)
	}
	enr, err := src.ListEnrollments(ctx)
	if err != nil {
		return rep, err
	}
	for _, e := range enr {
		if err := dst.PutEnrollment(ctx, e); err != nil {
			return rep, err
		}
	}
	rep.Enrollments = len(enr)
	cursors, err := src.SinkCursors(ctx)
	if err != nil {
		return rep, err
	}
	for name, c := range cursors {
		if err := dst.SaveSinkCursor(ctx, name, c); err != nil {
			return rep, err
		}
	}
	rep.SinkCursors = len(cursors)
	n, err := dst.copyCounters(ctx, src, grants)
	rep.Counters = n
	return rep, err
}

// checkEmpty refuses a prefix holding anything but the schema version
// (which Open writes), or clears it when replace is set.
func (db *DB) checkEmpty(ctx context.Context, replace bool) error {
	ver := db.key("meta/version")
	cctx, cancel := db.op(ctx)
	defer cancel()
	resp, err := db.cli.Get(cctx, db.prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithLimit(3))
	if err != nil {
		return db.wrap("migrate: read the target", err)
	}
	var other []string
	for _, kv := range resp.Kvs {
		if string(kv.Key) != ver {
			other = append(other, string(kv.Key))
		}
	}
	if len(other) == 0 {
		return nil
	}
	if !replace {
		return fmt.Errorf("%w: %s holds %s…: another deployment or an earlier migration. Pick another store.etcd.prefix, or pass --replace to delete everything under it first", ErrTargetNotEmpty, db.prefix, other[0])
	}
	_, err = db.cli.Txn(cctx).Then(
		clientv3.OpDelete(db.prefix, clientv3.WithRange(ver)),
		clientv3.OpDelete(ver+"\x00", clientv3.WithRange(clientv3.GetPrefixRangeEnd(db.prefix))),
	).Commit()
	return db.wrap("migrate: clear the target", err)
}

// copyTrail copies the audit chain from src's export: event lines as they
// are stored (with their authenticators under recordKey), then the tip,
// anchor and head.
func (db *DB) copyTrail(ctx context.Context, src *store.DB, recordKey []byte, rep *MigrateReport) error {
	var reported error
	lg, err := src.AuditLog(store.AuditOptions{Inspect: true, RecordKey: recordKey, OnError: func(err error) { reported = errors.Join(reported, err) }})
	if err != nil {
		return err
	}
	defer lg.Close()
	if reported != nil {
		// Events only in the segment (a crash left them there) would not
		// be copied: the trail moves whole or not at all. Nor is an event
		// past the last signed head that this deployment did not write
		// given an authenticator here.
		return fmt.Errorf("etcdstore: migrate: the trail is not all in the database: %w. Start `pamctl serve` on the old data dir once and stop it cleanly, then migrate", reported)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(lg.Export(ctx, pw)) }()
	defer pr.Close()
	l := &AuditLog{prefix: db.prefix}
	mac := store.NewEventMAC(recordKey)
	br := bufio.NewReaderSize(pr, 1<<20)
	var ops []clientv3.Op
	size := 0
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		cctx, cancel := db.op(ctx)
		defer cancel()
		_, err := db.cli.Txn(cctx).Then(ops...).Commit()
		ops, size = ops[:0], 0
		return db.wrap("migrate: write audit events", err)
	}
	rep.Last = audit.Link{Hash: audit.GenesisHash}
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			line = bytes.TrimSuffix(line, []byte("\n"))
			switch {
			case bytes.HasPrefix(line, []byte(`{"seq":`)):
				var at struct {
					Seq uint64 `json:"seq"`
				}
				if err := json.Unmarshal(line, &at); err != nil {
					return fmt.Errorf("etcdstore: migrate: audit line: %w", err)
				}
				var rec []byte
				if mac != nil {
					rec = authRecord(line, mac.Of(at.Seq, audit.StoredHash(line)))
				} else {
					rec = wrapLine(line)
				}
				ops = append(ops, clientv3.OpPut(l.eventKey(at.Seq), string(rec)))
				size += len(rec)
				rep.Events++
				rep.Last = audit.Link{Seq: at.Seq, Hash: audit.StoredHash(line)}
				if len(ops) >= DefaultMaxBatch || size >= maxBatchBytes {
					if err := flush(); err != nil {
						return err
					}
				}
			case bytes.HasPrefix(line, []byte(`{"anchor":`)):
				var a struct{ Anchor *audit.Anchor }
				if err := json.Unmarshal(line, &a); err != nil {
					return fmt.Errorf("etcdstore: migrate: anchor line: %w", err)
				}
				rep.Anchor = a.Anchor
			case bytes.HasPrefix(line, []byte(`{"head":`)):
				var h struct{ Head *audit.SignedHead }
				if err := json.Unmarshal(line, &h); err != nil {
					return fmt.Errorf("etcdstore: migrate: head line: %w", err)
				}
				rep.Head = h.Head
			default:
				return fmt.Errorf("etcdstore: migrate: unexpected export line %.40q", line)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("etcdstore: migrate: read the trail: %w", err)
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if rep.Events == 0 && rep.Anchor != nil {
		rep.Last = audit.Link{Seq: rep.Anchor.Seq, Hash: rep.Anchor.Hash}
	}
	if rep.Last.Seq > 0 {
		tb, _ := json.Marshal(rep.Last)
		ops = append(ops, clientv3.OpPut(db.key(auditTipKey), string(tb)))
	}
	if rep.Anchor != nil {
		ab, _ := json.Marshal(rep.Anchor)
		ops = append(ops, clientv3.OpPut(db.key(auditAnchorKey), string(ab)))
	}
	if rep.Head != nil {
		hb, _ := json.Marshal(rep.Head)
		ops = append(ops, clientv3.OpPut(db.key(auditHeadKey), string(hb)))
	}
	return flush()
}

// copyCounters copies the token budgets grants have spent.
func (db *DB) copyCounters(ctx context.Context, src *store.DB, grants []string) (int, error) {
	if len(grants) == 0 {
		return 0, nil
	}
	c, err := src.Counters(store.CounterOptions{})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	dst := &Counters{prefix: db.prefix}
	n := 0
	var ops []clientv3.Op
	for _, g := range grants {
		u, err := c.Load(ctx, g)
		if err != nil {
			return n, err
		}
		if u.Tokens == 0 {
			continue
		}
		r, err := src.GetRequest(ctx, g)
		if err != nil {
			return n, err
		}
		rec := tokensRecord{Tokens: u.Tokens}
		if r.ExpiresAt != nil {
			rec.Expires = *r.ExpiresAt
		}
		b, _ := json.Marshal(rec)
		ops = append(ops, clientv3.OpPut(dst.tokensKey(g, MigrateReplica), string(b)))
		n++
	}
	for len(ops) > 0 {
		k := min(len(ops), DefaultMaxBatch)
		cctx, cancel := db.op(ctx)
		_, err := db.cli.Txn(cctx).Then(ops[:k]...).Commit()
		cancel()
		if err != nil {
			return n, db.wrap("migrate: write counters", err)
		}
		ops = ops[k:]
	}
	return n, nil
}
