package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/token"
)

// collectRefusals runs fn against a fresh aggregator and returns what one flush wrote.
func collectRefusals(t *testing.T, fn func(r *refusals)) []*audit.Event {
	t.Helper()
	now := time.Date(2025, 5, 14, 9, 51, 0, 0, time.UTC)
	var got []*audit.Event
	r := &refusals{window: time.Hour, now: func() time.Time { return now }, flushF: func(e []*audit.Event) { got = append(got, e...) }}
	fn(r)
	r.close()
	return got
}

func refusedCall(remote string) *call {
	return &call{remote: remote, method: "POST", path: "/v1/chat/completions", userAgent: "flood/1.0", err: errUnauthorized("no", nil)}
}

func total(t *testing.T, events []*audit.Event) int {
	t.Helper()
	n := 0
	for _, e := range events {
		c, err := strconv.Atoi(e.Details["count"])
		if err != nil {
			t.Fatalf("count %q", e.Details["count"])
		}
		n += c
	}
	return n
}

// TestRefusalsAreCountedPerNetwork: bad-token calls from 300 addresses of
// 127/8 (what curl --interface 127.1.x.y does), through the handler, are
// one event per /24, not one per address; an IPv6 /64 is one network, and
// an IPv4-mapped address counts as IPv4.
func TestRefusalsAreCountedPerNetwork(t *testing.T) {
	h := newHarness(t)
	for i := range 300 {
		req := httptest.NewRequest("POST", "http://127.0.0.1/v1/chat/completions", strings.NewReader(chatBody))
		req.RemoteAddr = fmt.Sprintf("127.1.%d.%d:40000", i%2, 1+i/2)
		req.Header.Set("Authorization", "Bearer bogus")
		rec := httptest.NewRecorder()
		h.proxy.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Fatalf("status %d", rec.Code)
		}
	}
	h.proxy.refused.flush()
	ev := h.sink.ofType(audit.TypeProxyRefused)
	if len(ev) != 2 || ev[0].Client.RemoteAddr != "127.1.0.0/24" || ev[1].Client.RemoteAddr != "127.1.1.0/24" ||
		ev[0].Details["count"] != "150" || ev[1].Details["count"] != "150" || !strings.HasPrefix(ev[0].Details["last_address"], "127.1.0.") {
		for _, e := range ev {
			t.Logf("%s %v", e.Client.RemoteAddr, e.Details)
		}
		t.Fatalf("%d events for 300 addresses in 2 networks", len(ev))
	}

	got := collectRefusals(t, func(r *refusals) {
		for i := range 500 {
			r.note(refusedCall(fmt.Sprintf("[2001:db8:0:7:%x:%x::1]:443", i, i*7)))
		}
		r.note(refusedCall("[::ffff:198.51.100.9]:1"))
		r.note(refusedCall("198.51.100.200:2"))
		r.note(refusedCall("[fe80::1%eth0]:3"))
		r.note(refusedCall("@"))
	})
	want := map[string]string{"2001:db8:0:7::/64": "500", "198.51.100.0/24": "2", "fe80::/64": "1", "@": "1"}
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d", len(got), len(want))
	}
	for _, e := range got {
		if want[e.Client.RemoteAddr] != e.Details["count"] {
			t.Errorf("%s: count %s, want %s", e.Client.RemoteAddr, e.Details["count"], want[e.Client.RemoteAddr])
		}
	}
}

// TestRefusalEventsAreBoundedPerWindow: however many networks a flood
// comes from, a window writes at most maxRefusalEvents events: the
// busiest networks by name, every other one summed into "other" with how
// many networks and calls it stands for. No call goes uncounted.
func TestRefusalEventsAreBoundedPerWindow(t *testing.T) {
	for _, sources := range []int{maxRefusalEvents, maxRefusalEvents + 1, 300, maxRefusalNetworks + 700, 5000} {
		t.Run(strconv.Itoa(sources), func(t *testing.T) {
			got := collectRefusals(t, func(r *refusals) {
				r.note(refusedCall("203.0.113.7:1"))
				for i := range sources {
					r.note(refusedCall(fmt.Sprintf("10.%d.%d.1:5000", i/256, i%256)))
					if i%2 == 0 { // as many IPv6 /64s
						r.note(refusedCall(fmt.Sprintf("[2001:db8:%x:%x::9]:1", i/65536, i%65536)))
					}
				}
				// The loudest network is named first, though most of
				// its calls came last.
				for range 49 {
					r.note(refusedCall("203.0.113.7:1"))
				}
			})
			nets := sources + (sources+1)/2 + 1
			calls := nets - 1 + 50
			if len(got) > maxRefusalEvents {
				t.Fatalf("%d events, the bound is %d", len(got), maxRefusalEvents)
			}
			if n := total(t, got); n != calls {
				t.Fatalf("events count %d calls, want %d", n, calls)
			}
			if got[0].Client.RemoteAddr != "203.0.113.0/24" || got[0].Details["count"] != "50" {
				t.Fatalf("first event %s %v, want the busiest network", got[0].Client.RemoteAddr, got[0].Details)
			}
			last := got[len(got)-1]
			if nets <= maxRefusalEvents {
				if len(got) != nets || last.Client.RemoteAddr == otherSource {
					t.Fatalf("%d events for %d networks", len(got), nets)
				}
				return
			}
			named := len(got) - 1
			if last.Client.RemoteAddr != otherSource || last.Details["networks"] != strconv.Itoa(nets-named) ||
				!strings.Contains(last.Error, "from "+strconv.Itoa(nets-named)+" other networks") {
				t.Fatalf("other: %s %v", last.Error, last.Details)
			}
		})
	}
}

// TestRefusalOverflowCountsNetworksBounded: past maxOtherNetworks distinct
// networks the "other" count is a marked lower bound, and memory stays
// bounded.
func TestRefusalOverflowCountsNetworksBounded(t *testing.T) {
	n := maxRefusalNetworks + maxOtherNetworks + 10
	got := collectRefusals(t, func(rr *refusals) {
		for i := range n {
			rr.note(refusedCall(fmt.Sprintf("[2001:db8:%x:%x::1]:1", i/65536, i%65536)))
		}
		if len(rr.networks) != maxRefusalNetworks || len(rr.overflowNet) != maxOtherNetworks {
			t.Fatalf("tracked %d networks and %d overflow keys", len(rr.networks), len(rr.overflowNet))
		}
	})
	last := got[len(got)-1]
	if len(got) != maxRefusalEvents || last.Details["networks_capped"] != "true" || total(t, got) != n {
		t.Fatalf("%d events, other %v", len(got), last.Details)
	}
}

// TestRefusalWorstCaseSize: the largest proxy.refused event a client can
// cause, stored, stays under maxRefusalEventBytes, so a window costs the
// trail at most maxRefusalEvents of them (docs/audit.md quotes the bound).
func TestRefusalWorstCaseSize(t *testing.T) {
	const maxRefusalEventBytes = 1536
	long := strings.Repeat("\u2028", 1000) // escapes to 6 bytes each in JSON
	codes := []string{CodeInvalidAPIKey, CodeHostNotAllowed}
	got := collectRefusals(t, func(r *refusals) {
		for i := range maxRefusalNetworks + 200 {
			for j, code := range codes {
				c := refusedCall(fmt.Sprintf("[2001:db8:ffff:%x:ffff:ffff:ffff:ffff]:65535", i))
				c.userAgent, c.path = long, "/"+long
				c.err = &apiError{Status: 401, Code: code}
				// Grant ids come from tokens the broker signed: req_ + 20.
				c.claims = &token.Claims{Req: fmt.Sprintf("req_%020d", i*8+j)}
				r.note(c)
			}
		}
	})
	biggest := 0
	defer func() { t.Logf("largest proxy.refused event: %d bytes", biggest) }()
	for _, e := range got {
		capEvent(e)
		e.Seq, e.Time, e.Code, e.PrevHash, e.Hash = 1<<62, time.Now(), "PAM-P006", strings.Repeat("a", 64), strings.Repeat("b", 64)
		j, _ := json.Marshal(e)
		biggest = max(biggest, len(j))
		if len(j) > maxRefusalEventBytes {
			t.Fatalf("a %d-byte proxy.refused event (%s): %.400s", len(j), e.Client.RemoteAddr, j)
		}
	}
}
