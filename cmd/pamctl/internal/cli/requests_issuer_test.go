package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/iostreams"
)

// Black-box red team: the requests table had no issuer, so a partner
// IdP's "alice" read as corp's alice. The table gains an ISSUER column as
// soon as one request listed comes from another issuer than the viewer's
// (on a terminal; piped output keeps its columns).
func TestRequestsTableShowsTheIssuerWhenItDiffers(t *testing.T) {
	me := broker.Identity{Subject: "bob", Issuer: "corp"}
	req := func(id, issuer string) *broker.Request {
		return &broker.Request{ID: id, Kind: broker.KindAccess, State: broker.StatePending, Scopes: []string{"model:gpt-4o"},
			TTL: time.Hour, CreatedAt: time.Now(), Requester: broker.Identity{Subject: "alice", Issuer: issuer}}
	}
	for _, tc := range []struct {
		name   string
		rs     []*broker.Request
		column bool
	}{
		{"all from my issuer", []*broker.Request{req("req_a", "corp")}, false},
		{"one from a partner", []*broker.Request{req("req_a", "partner")}, true},
		{"mixed", []*broker.Request{req("req_a", "corp"), req("req_b", "partner")}, true},
	} {
		ios, _, out, _ := iostreams.Test()
		ios.SetTTY(false, true, true)
		o := &RequestsOptions{f: NewFactory(ios)}
		if err := renderRequests(o, tc.rs, me); err != nil {
			t.Fatal(err)
		}
		got := out.String()
		if strings.Contains(got, "ISSUER") != tc.column {
			t.Errorf("%s: ISSUER column %v, want %v:\n%s", tc.name, !tc.column, tc.column, got)
		}
		if tc.column && !strings.Contains(got, "partner") {
			t.Errorf("%s: the partner issuer is not shown:\n%s", tc.name, got)
		}
	}
	// Piped, the columns stay what scripts expect.
	ios, _, out, _ := iostreams.Test()
	if err := renderRequests(&RequestsOptions{f: NewFactory(ios)}, []*broker.Request{req("req_a", "partner")}, me); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out.String(), "\t"); got != 8 {
		t.Errorf("piped table has %d tabs, want 8: %q", got, out.String())
	}
}
