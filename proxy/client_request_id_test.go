package proxy

import (
	"net/http"
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
)

// Review (from the reviews of the field): the trace.span and tool.call
// events of a call carried pamctl's request_id but not the client's
// X-Request-Id its proxy.call event keeps (client_request_id), so an agent
// run's own id found the call and none of its spans or tool verdicts.
// Every event the proxy writes for a call now carries it, escaped and
// bounded the same way (one source: the call's clientID), and none does
// when the client sent none.
func TestEveryEventOfACallCarriesTheClientRequestID(t *testing.T) {
	const sent, kept = "agent run\t42%", "agent%20run%0942%25"
	batch := `{"data":[{"object":"trace","id":"trace_1","workflow_name":"refunds"},{"object":"trace.span","id":"span_1","trace_id":"trace_1","span_data":{"type":"function","name":"lookup"}}]}`
	for _, clientID := range []string{sent, ""} {
		var hdr []string
		if clientID != "" {
			hdr = []string{"X-Request-Id", clientID}
		}
		want := map[string]string{sent: kept}[clientID]
		h := newHarness(t, withRules(t, toolRules))
		h.up.set(func(w http.ResponseWriter, r *http.Request) { writeJSON(w, chatToolAnswer) })
		chat := h.mint(grant{scope: "model:gpt-4o"})
		traces := h.mint(grant{scope: "traces:write"})
		if res, b := h.do("POST", "/v1/chat/completions", chat, chatBody, hdr...); res.StatusCode != http.StatusOK {
			t.Fatalf("chat: %d %s", res.StatusCode, b)
		}
		if res, b := h.do("POST", "/v1/traces/ingest", traces, batch, hdr...); res.StatusCode != http.StatusNoContent {
			t.Fatalf("traces: %d %s", res.StatusCode, b)
		}
		for _, typ := range []audit.Type{audit.TypeProxyCall, audit.TypeToolCall, audit.TypeTraceSpan} {
			evs := h.sink.ofType(typ)
			if len(evs) == 0 {
				t.Fatalf("no %s events", typ)
			}
			for _, ev := range evs {
				got, ok := ev.Details["client_request_id"]
				if got != want || ok != (want != "") || ev.Details["request_id"] == "" {
					t.Errorf("client id %q: %s has client_request_id %q (set %v), request_id %q; want %q", clientID, typ, got, ok, ev.Details["request_id"], want)
				}
			}
		}
	}
}
