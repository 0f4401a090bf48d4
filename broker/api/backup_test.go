package api_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/audit"
)

// halfSnap declares size bytes, writes half of them, then fails (a read
// error in the middle of a copy).
type halfSnap struct{ size int64 }

func (h halfSnap) Snapshot(_ context.Context, open func(int64) (io.Writer, error)) (int64, error) {
	w, err := open(h.size)
	if err != nil {
		return 0, err
	}
	n, _ := w.Write(bytes.Repeat([]byte{1}, int(h.size/2)))
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	return int64(n), errors.New("bolt: read error")
}

type nopSink struct{}

func (nopSink) Append(context.Context, *audit.Event) error { return nil }

// A copy cut short by the server reaches the client as an incomplete
// backup, never as a short file that looks whole; the route exists only
// on the admin socket's handler.
func TestStoreBackupCutShortIsIncomplete(t *testing.T) {
	a := &api.Server{Info: func() api.Info { return api.Info{} },
		AdminService: &broker.Admin{Audit: nopSink{}, Store: halfSnap{size: 1 << 20}, Via: broker.ViaSocket}}
	admin := httptest.NewServer(a.Admin())
	defer admin.Close()
	c := &api.Client{BaseURL: admin.URL}
	var got bytes.Buffer
	n, err := c.StoreBackup(context.Background(), "/backups/x.db", &got)
	if !errors.Is(err, api.ErrIncompleteBackup) {
		t.Fatalf("cut-short copy: n=%d err=%v", n, err)
	}

	public := httptest.NewServer(a.Public())
	defer public.Close()
	resp, err := http.Get(public.URL + "/admin/store/backup")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatal("the public listener serves backups")
	}
}
