package api_test

import (
	"net/url"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/audit"
)

// The audit filter travels whole between the CLI and the broker, the
// actor's issuer included (--issuer: one IdP's alice, not every alice).
func TestFilterQueryRoundTrip(t *testing.T) {
	f := audit.Filter{Types: []audit.Type{"request.*", audit.TypeLogin}, Actor: "alice", Issuer: "corp", Grant: "g1", Request: "r1",
		Since: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}
	q := url.Values{}
	for k, v := range api.FilterQuery(f) {
		q.Set(k, v)
	}
	got, err := api.ParseFilter(q)
	if err != nil {
		t.Fatal(err)
	}
	if got.Actor != f.Actor || got.Issuer != f.Issuer || got.Grant != f.Grant || got.Request != f.Request || !got.Since.Equal(f.Since) || len(got.Types) != 2 {
		t.Fatalf("round trip: %+v, want %+v", got, f)
	}
}
