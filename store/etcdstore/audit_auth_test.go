package etcdstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/store"
	"github.com/pamctl/pamctl/store/etcdtest"
	"github.com/pamctl/pamctl/store/storetest"
)

var testRecordKey = bytes.Repeat([]byte{7}, 32)

// Records: version 1 (no authenticator), version 2 (with one, sealed in
// the draft's buffer), the same read without the fast path, and what a
// writer might put in the authenticator's place.
func TestEventRecords(t *testing.T) {
	d, err := audit.NewDraft(&audit.Event{Type: audit.TypeProxyCall, Actor: &audit.Actor{Subject: "a"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	mac := store.NewEventMAC(testRecordKey)
	line, hash, err := d.Seal(7, audit.GenesisHash)
	if err != nil {
		t.Fatal(err)
	}
	line = bytes.Clone(line)
	want := bytes.Clone(mac.Of(7, hash))

	rec, h2, err := sealRecord(d, 7, audit.GenesisHash, mac)
	if err != nil || h2 != hash {
		t.Fatal(err)
	}
	if !bytes.Equal(rec, authRecord(line, want)) {
		t.Fatalf("sealed record %s differs from %s", rec, authRecord(line, want))
	}
	var env struct {
		V int             `json:"v"`
		D json.RawMessage `json:"d"`
		A string          `json:"a"`
	}
	if err := json.Unmarshal(rec, &env); err != nil || env.V != 2 || !bytes.Equal(env.D, line) || len(env.A) != 22 {
		t.Fatalf("record %s: %+v, %v", rec, env, err)
	}
	for name, tc := range map[string]struct {
		raw  string
		auth []byte // nil: none; empty: present but never valid
	}{
		"v1":              {`{"v":1,"d":` + string(line) + `}`, nil},
		"v2":              {string(rec), want},
		"v2, spaced":      {`{ "v": 2, "a": "` + env.A + `", "d": ` + string(line) + ` }`, want},
		"v2, short":       {`{"v":2,"d":` + string(line) + `,"a":"AAAA"}`, []byte{}},
		"v2, not base64":  {`{"v":2,"d":` + string(line) + `,"a":"!!!!!!!!!!!!!!!!!!!!!!"}`, []byte{}},
		"v2, long":        {`{"v":2,"d":` + string(line) + `,"a":"` + env.A + env.A + `"}`, []byte{}},
		"v2, no auth":     {`{"v":2,"d":` + string(line) + `}`, nil},
		"v1 with an auth": {`{"v":1,"a":"` + env.A + `","d":` + string(line) + `}`, want},
	} {
		gotLine, gotAuth, err := parseRecord([]byte(tc.raw))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(bytes.TrimSpace(gotLine), line) {
			t.Fatalf("%s: line %s", name, gotLine)
		}
		if (gotAuth == nil) != (tc.auth == nil) || !bytes.Equal(gotAuth, tc.auth) {
			t.Fatalf("%s: auth %x (nil %v), want %x (nil %v)", name, gotAuth, gotAuth == nil, tc.auth, tc.auth == nil)
		}
	}
	if _, _, err := parseRecord([]byte(`{"v":3,"d":` + string(line) + `}`)); !errors.Is(err, store.ErrSchemaTooNew) {
		t.Fatalf("a newer record: %v", err)
	}
}

// authTrail opens logs on one trail of a one-member cluster.
func authTrail(t *testing.T) (*clientv3.Client, string, func(AuditOptions) (*AuditLog, error)) {
	t.Helper()
	cli := etcdtest.Start(t, 1).Client()
	prefix := "/auth" + t.Name() + "/"
	return cli, prefix, func(o AuditOptions) (*AuditLog, error) {
		return OpenAuditLog(context.Background(), cli, prefix, o)
	}
}

func appendEvents(t *testing.T, l *AuditLog, n int) *audit.Event {
	t.Helper()
	var e *audit.Event
	for i := 0; i < n; i++ {
		e = &audit.Event{Type: audit.TypeProxyCall, Actor: &audit.Actor{Subject: "agent"}, Status: 200}
		if err := l.Append(context.Background(), e); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// The tip record names what the next head is signed over: a writer who
// points it at a hash of their choosing, with no event stored there yet,
// would have a head signed over an event they add later.
func TestARewrittenTipIsNeverSigned(t *testing.T) {
	cli, prefix, open := authTrail(t)
	opts := AuditOptions{Signer: storetest.SuiteSigner, RecordKey: testRecordKey}
	l, err := open(opts)
	if err != nil {
		t.Fatal(err)
	}
	appendEvents(t, l, 3)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	tb, _ := json.Marshal(audit.Link{Seq: 4, Hash: strings.Repeat("ab", 32)})
	if _, err := cli.Put(context.Background(), prefix+auditTipKey, string(tb)); err != nil {
		t.Fatal(err)
	}
	if _, err := open(opts); !errors.Is(err, store.ErrUnauthenticated) || !strings.Contains(err.Error(), "tip record") {
		t.Fatalf("open = %v", err)
	}
	var reported error
	l, err = open(AuditOptions{Signer: storetest.SuiteSigner, RecordKey: testRecordKey, Inspect: true, OnError: func(err error) { reported = err }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if !errors.Is(reported, store.ErrUnauthenticated) {
		t.Fatalf("inspect reported %v", reported)
	}
	if st, err := l.Head(context.Background()); err != nil || st.Head == nil || st.Head.Seq != 3 {
		t.Fatalf("head = %+v, %v", st.Head, err)
	}
}

// Upgrading: a trail an earlier version (no authenticators) left with
// events past its last signed head is refused, saying how to go on; after
// that version has signed them (started once and stopped cleanly), it
// opens, and what this version writes from then on is authenticated.
func TestAnUnsignedTailWithoutAuthenticatorsIsRefused(t *testing.T) {
	_, _, open := authTrail(t)
	earlier := AuditOptions{Signer: storetest.SuiteSigner} // no RecordKey: an earlier version
	l, err := open(earlier)
	if err != nil {
		t.Fatal(err)
	}
	appendEvents(t, l, 3)
	if err := l.Close(); err != nil { // head at 3
		t.Fatal(err)
	}
	// A replica of the earlier version that stopped without signing (a
	// crash; here: no signer).
	l, err = open(AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	appendEvents(t, l, 2)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	now := AuditOptions{Signer: storetest.SuiteSigner, RecordKey: testRecordKey}
	_, err = open(now)
	if !errors.Is(err, store.ErrUnauthenticated) || !strings.Contains(err.Error(), "seq 4") || !strings.Contains(err.Error(), "has no authenticator") ||
		!strings.Contains(err.Error(), "start that earlier version once") {
		t.Fatalf("open = %v", err)
	}
	// The earlier version, started once and stopped cleanly, signs them.
	l, err = open(earlier)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = open(now)
	if err != nil {
		t.Fatalf("open after the earlier version signed its events: %v", err)
	}
	defer l.Close()
	appendEvents(t, l, 2)
	h, err := l.SignHead(context.Background())
	if err != nil || h == nil || h.Seq != 7 {
		t.Fatalf("SignHead = %+v, %v", h, err)
	}
	rep, err := l.Verify(context.Background(), storetest.SuiteKeys)
	if err != nil || rep.Events != 7 || !rep.Signed {
		t.Fatalf("verify = %+v, %v", rep, err)
	}
}

// The replica's own background signing (every HeadEvery events, and the
// HeadInterval timer) refuses a forged event and reports it through
// OnError (the server's /readyz), never signing over it.
func TestBackgroundSigningReportsAForgedEvent(t *testing.T) {
	cli, prefix, open := authTrail(t)
	tick := make(chan time.Time)
	errs := make(chan error, 16)
	var signed []uint64
	l, err := open(AuditOptions{Signer: storetest.SuiteSigner, RecordKey: testRecordKey, HeadEvery: 2,
		OnError: func(err error) {
			select {
			case errs <- err:
			default:
			}
		},
		newTicker:  func(time.Duration) (<-chan time.Time, func()) { return tick, func() {} },
		headSigned: func(h audit.SignedHead) { signed = append(signed, h.Seq) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	last := appendEvents(t, l, 1) // head at 1, with the event
	forgeEtcd(t, cli, prefix, 2, forgedLine(t, 2, last.Hash), 0)
	appendEvents(t, l, 1) // seq 3, after the forged one: HeadEvery kicks the signer
	wait := func(what string) {
		t.Helper()
		select {
		case err := <-errs:
			if !errors.Is(err, store.ErrUnauthenticated) {
				t.Fatalf("%s: reported %v", what, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: nothing reported", what)
		}
	}
	wait("every HeadEvery events")
	tick <- time.Now()
	wait("on the timer")
	if st, err := l.Head(context.Background()); err != nil || st.Head == nil || st.Head.Seq != 1 {
		t.Fatalf("head = %+v, %v", st.Head, err)
	}
	if len(signed) != 1 {
		t.Fatalf("heads signed at %v; want only the first", signed)
	}
}

func forgedLine(t *testing.T, seq uint64, prev string) []byte {
	t.Helper()
	d, err := audit.NewDraft(&audit.Event{Type: audit.TypeRequestApproved, Actor: &audit.Actor{Subject: "mallory"}, Decision: "approved"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	line, _, err := d.Seal(seq, prev)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(line)
}

// forgeEtcd writes an event record under prefix as a writer of etcd
// without the master key would: line at seq (nil: the stored line, only
// its authenticator changes), with the authenticator stored for seq
// authFrom (0: none), and, when seq is at or past the tip, the tip record
// (a head is signed over the tip). See storetest.Forgery.
func forgeEtcd(t *testing.T, cli *clientv3.Client, prefix string, seq uint64, line []byte, authFrom uint64) {
	t.Helper()
	ctx := context.Background()
	l := &AuditLog{prefix: prefix}
	stored := func(at uint64) (line, auth []byte) {
		t.Helper()
		resp, err := cli.Get(ctx, l.eventKey(at))
		if err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("read seq %d: %v", at, err)
		}
		line, auth, err = parseRecord(resp.Kvs[0].Value)
		if err != nil {
			t.Fatal(err)
		}
		return bytes.Clone(line), auth
	}
	if line == nil {
		line, _ = stored(seq)
	}
	rec := wrapLine(line) // no authenticator
	if authFrom != 0 {
		_, auth := stored(authFrom)
		if auth == nil {
			t.Fatalf("no authenticator stored for seq %d", authFrom)
		}
		rec = authRecord(line, auth)
	}
	ops := []clientv3.Op{clientv3.OpPut(l.eventKey(seq), string(rec))}
	resp, err := cli.Get(ctx, l.key(auditTipKey))
	if err != nil {
		t.Fatal(err)
	}
	var tip audit.Link
	if len(resp.Kvs) == 1 {
		if err := json.Unmarshal(resp.Kvs[0].Value, &tip); err != nil {
			t.Fatal(err)
		}
	}
	if seq >= tip.Seq {
		b, _ := json.Marshal(audit.Link{Seq: seq, Hash: audit.StoredHash(line)})
		ops = append(ops, clientv3.OpPut(l.key(auditTipKey), string(b)))
	}
	if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
		t.Fatal(err)
	}
}
