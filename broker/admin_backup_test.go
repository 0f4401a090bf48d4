package broker_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
)

// fakeSnap records whether a copy was made.
type fakeSnap struct {
	called bool
	err    error
}

func (f *fakeSnap) Snapshot(_ context.Context, open func(int64) (io.Writer, error)) (int64, error) {
	f.called = true
	w, err := open(4)
	if err != nil {
		return 0, err
	}
	n, _ := w.Write([]byte("copy"))
	return int64(n), f.err
}

type recordingSink struct{ events []audit.Event }

func (r *recordingSink) Append(_ context.Context, e *audit.Event) error {
	r.events = append(r.events, *e)
	return nil
}

// A backup is recorded before it is made; a trail that refuses the event
// means no copy; a failed copy is reported as unusable; no store, no copy.
func TestAdminBackupIsAuditedFirst(t *testing.T) {
	ctx := context.Background()
	sink, snap := &recordingSink{}, &fakeSnap{}
	adm := &broker.Admin{Audit: sink, Store: snap, Via: broker.ViaSocket}
	var buf bytes.Buffer
	n, err := adm.Backup(ctx, "/backups/a.db", func(size int64) (io.Writer, error) {
		if len(sink.events) != 1 {
			t.Fatal("the copy started before the store.backup event was recorded")
		}
		return &buf, nil
	})
	if err != nil || n != 4 || buf.String() != "copy" {
		t.Fatalf("backup: %d %q %v", n, buf.String(), err)
	}
	e := sink.events[0]
	if e.Type != audit.TypeStoreBackup || e.Target != "/backups/a.db" || e.Details["via"] != broker.ViaSocket || e.Actor == nil || e.Actor.Subject != "local-admin" {
		t.Fatalf("event: %+v", e)
	}

	refused := &fakeSnap{}
	adm = &broker.Admin{Audit: failingSink{}, Store: refused, Via: broker.ViaSocket}
	if _, err := adm.Backup(ctx, "x", func(int64) (io.Writer, error) { return io.Discard, nil }); err == nil || refused.called {
		t.Fatalf("trail refused: err %v, copied %v", err, refused.called)
	} else if be := (*broker.Error)(nil); !errors.As(err, &be) || !strings.Contains(be.Message, "no backup was made") {
		t.Fatalf("trail refused: %v", err)
	}

	broken := &fakeSnap{err: errors.New("bolt: read error")}
	adm = &broker.Admin{Audit: &recordingSink{}, Store: broken, Via: broker.ViaDataDir}
	if _, err := adm.Backup(ctx, "x", func(int64) (io.Writer, error) { return io.Discard, nil }); err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Fatalf("failed copy: %v", err)
	}

	adm = &broker.Admin{Audit: &recordingSink{}, Via: broker.ViaSocket}
	if _, err := adm.Backup(ctx, "x", func(int64) (io.Writer, error) { return io.Discard, nil }); broker.ErrorCode(err) != broker.CodeInternal {
		t.Fatalf("no store: %v", err)
	}
}
