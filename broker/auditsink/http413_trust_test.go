package auditsink

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
)

// A 413 splits the batches that follow without sending them whole, but not
// forever: after refusedTrust splits one goes whole again, so a collector
// whose limit was raised (or whose 413 was passing) gets whole batches
// again without a restart (noted by a review: the split size never rose).
func TestHTTP413IsForgottenAfterItsTrust(t *testing.T) {
	var mu sync.Mutex
	limit := 5000 // the collector's limit, raised below
	var sizes []int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		sizes = append(sizes, len(body))
		if len(body) > limit {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	tg, err := newHTTPTarget(SinkConfig{Type: TypeHTTP, URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	batch := func() []Record {
		var recs []Record
		for i := range 4 {
			recs = append(recs, Record{Event: &audit.Event{Seq: uint64(i + 1), Type: audit.TypeLogin, Error: strings.Repeat("p", 2000)}})
		}
		return recs
	}
	whole := func() (n int) { // POSTs that carried all four events
		mu.Lock()
		defer mu.Unlock()
		for _, s := range sizes {
			if s > 6000 {
				n++
			}
		}
		return n
	}
	ctx := context.Background()
	if err := tg.Deliver(ctx, batch()); err != nil {
		t.Fatal(err)
	}
	if whole() != 1 || tg.refused == 0 {
		t.Fatalf("the first batch: posts of %v bytes, refused %d", sizes, tg.refused)
	}
	mu.Lock()
	limit = 1 << 20 // raised
	mu.Unlock()
	for range refusedTrust { // each splits once: its halves fit
		if err := tg.Deliver(ctx, batch()); err != nil {
			t.Fatal(err)
		}
	}
	if whole() != 1 {
		t.Fatalf("a batch went whole before the 413 was forgotten: %d", whole())
	}
	for range 3 {
		if err := tg.Deliver(ctx, batch()); err != nil {
			t.Fatal(err)
		}
	}
	if whole() != 4 {
		t.Fatalf("after %d splits batches still split: %d whole posts", refusedTrust, whole())
	}
}
