package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/token"
)

// Red-team tests of what of a client's request headers reaches the
// upstream: an allowlist (headers.go), so a name no rule of thumb
// foresaw (a gateway's credential, billing selector, address claim or
// routing hint) never goes.

// sdkHeaders are what the OpenAI SDKs send on a model call besides
// Authorization and Content-Type (openai-python 1.x, openai-node 4.x, the
// Agents SDKs' User-Agent), all of which go upstream.
var sdkHeaders = []string{
	"Accept", "application/json",
	"User-Agent", "OpenAI/Python 1.54.0",
	"X-Stainless-Lang", "python",
	"X-Stainless-Package-Version", "1.54.0",
	"X-Stainless-Os", "Linux",
	"X-Stainless-Arch", "x64",
	"X-Stainless-Runtime", "CPython",
	"X-Stainless-Runtime-Version", "3.12.1",
	"X-Stainless-Async", "false",
	"X-Stainless-Retry-Count", "0",
	"X-Stainless-Read-Timeout", "600",
	"X-Stainless-Raw-Response", "true",
	"Openai-Beta", "assistants=v2",
}

// hostileHeaders pass every rule of thumb the proxy had before its
// allowlist, or are what it dropped by name; none may reach the upstream.
var hostileHeaders = []string{
	"Helicone-Auth", "Bearer sk-helicone-agent",
	"X-Auth-Token", "agent-token",
	"X-Goog-User-Project", "agents-own-project",
	"X-Clientip", "10.9.8.7",
	"X-Azure-Clientip", "10.9.8.7",
	"Azureml-Model-Deployment", "gpt-4o-deployment",
	"X-Model", "gpt-4o",
	"X-Portkey-Provider", "openai",
	"X-Portkey-Config", "pc-agent",
	"Helicone-Target-Url", "https://evil.example",
	"Openai-Organization", "org-agent",
	"Openai-Project", "proj_agent",
	"X-Openai-Project", "proj_agent",
	"Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	"Tracestate", "agent=1",
	"Baggage", "agent=1",
	"Cookie", "session=agent",
	"X-Harmless", "dropped too",
	"X-Stainless-Helper-Method", "beta.chat.completions.parse",
	"X-Stainless-Model", "gpt-4o",
	"X-Stainless-Api-Key", "sk-agent",
	"Via", "1.1 agent",
	"Max-Forwards", "3",
	"If-None-Match", `"etag"`,
}

// upstreamGets is the set of header names the upstream may see: the
// forwarded client headers plus what pamctl and Go's transport set.
func upstreamGets(extra ...string) map[string]bool {
	m := map[string]bool{"Authorization": true, "Content-Type": true, "Content-Length": true, "X-Request-Id": true, "Accept-Encoding": true}
	for i := 0; i < len(sdkHeaders); i += 2 {
		m[sdkHeaders[i]] = true
	}
	for _, k := range extra {
		m[k] = true
	}
	return m
}

// TestOnlyKnownClientHeadersForwarded: the SDKs' headers reach the
// upstream unchanged; nothing else of the client's does, whatever its
// name, and pamctl's own (the key, the request id, the configured project)
// are pamctl's values.
func TestOnlyKnownClientHeadersForwarded(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.Upstreams[0].Project = "proj_vaulted" })
	tok := h.mint(grant{scope: "model:gpt-4o-mini"})
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	res, b := h.do("POST", "/v1/chat/completions", tok, body, append(append([]string(nil), sdkHeaders...), hostileHeaders...)...)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	reqs := h.up.requests()
	if len(reqs) != 1 {
		t.Fatalf("upstream got %d requests, want 1", len(reqs))
	}
	got := reqs[0].Header
	want := upstreamGets("Openai-Project")
	for k, v := range got {
		if !want[k] {
			t.Errorf("upstream got client header %s: %q", k, v)
		}
	}
	for i := 0; i < len(sdkHeaders); i += 2 {
		if v := got.Values(sdkHeaders[i]); len(v) != 1 || v[0] != sdkHeaders[i+1] {
			t.Errorf("SDK header %s reached the upstream as %q, want %q", sdkHeaders[i], v, sdkHeaders[i+1])
		}
	}
	if got.Get("Authorization") != "Bearer "+vaultedKey || got.Get("Openai-Project") != "proj_vaulted" || got.Get("X-Request-Id") != res.Header.Get("X-Request-Id") {
		t.Errorf("pamctl's headers: Authorization set %v, project %q, request id %q (answer's %q)",
			got.Get("Authorization") != "", got.Get("Openai-Project"), got.Get("X-Request-Id"), res.Header.Get("X-Request-Id"))
	}
	for _, v := range got {
		for _, s := range v {
			if strings.Contains(s, "agent") && !strings.Contains(s, "Agents/") {
				t.Errorf("a hostile value reached the upstream: %q", s)
			}
		}
	}
}

// TestForwardHeadersPerUpstream: an operator's forward_headers go to that
// upstream only, in any letter case the client writes them.
func TestForwardHeadersPerUpstream(t *testing.T) {
	other := newFakeUpstream(t, "azure")
	h := newHarness(t, func(o *Options) {
		o.Upstreams[0].ForwardHeaders = []string{"x-run-label", "X-Agent-Name"}
		o.Upstreams = append(o.Upstreams, Upstream{Name: "azure", URL: other.srv.URL + "/v1", KeyName: "azure", Timeout: time.Minute})
	})
	tok := h.mint(grant{scope: "model:gpt-4o-mini model:azure/gpt-4o-mini"})
	for _, model := range []string{"gpt-4o-mini", "azure/gpt-4o-mini"} {
		body := `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`
		if res, b := h.do("POST", "/v1/chat/completions", tok, body, "X-RUN-LABEL", "run-7", "x-agent-name", "nightly", "X-Other", "no"); res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", model, res.StatusCode, b)
		}
	}
	first, second := h.up.requests()[0].Header, other.requests()[0].Header
	if first.Get("X-Run-Label") != "run-7" || first.Get("X-Agent-Name") != "nightly" || first.Get("X-Other") != "" {
		t.Errorf("configured upstream got %v", first)
	}
	if second.Get("X-Run-Label") != "" || second.Get("X-Agent-Name") != "" || second.Get("X-Other") != "" {
		t.Errorf("the other upstream got the first one's forward_headers: %v", second)
	}
}

// TestForwardHeadersValidated: a name the proxy must never forward cannot
// be configured either, and the error says why.
func TestForwardHeadersValidated(t *testing.T) {
	for name, why := range map[string]string{
		"X-Api-Key":                "credential",
		"Helicone-Auth":            "credential",
		"X-Auth-Token":             "credential",
		"Cookie":                   "credential",
		"X-Portkey-Virtual-Key":    "credential",
		"Connection":               "hop-by-hop",
		"Transfer-Encoding":        "hop-by-hop",
		"Host":                     "hop-by-hop",
		"Content-Length":           "hop-by-hop",
		"Te":                       "hop-by-hop",
		"X-Real-Ip":                "client address",
		"X-Clientip":               "client address",
		"X-Azure-ClientIP":         "client address",
		"X-Forwarded-For":          "client address",
		"X-Model":                  "model",
		"Azureml-Model-Deployment": "model",
		"X-Http-Method-Override":   "route",
		"X-Original-Url":           "route",
		"X-Provider":               "route",
		"OpenAI-Organization":      "pamctl sets it",
		"X-Goog-User-Project":      "organization, project",
		"X-Billing-Account":        "organization, project",
		"X-Org-Id":                 "organization, project",
		"X-Request-Id":             "pamctl sets it",
		"Traceparent":              "pamctl sets it",
		"Pamctl-Grant":             "pamctl sets it",
		"X_Trace_Label":            "letters, digits and '-'",
		"X-Trace Label":            "letters, digits and '-'",
		"X-Trace-Label:":           "letters, digits and '-'",
		"":                         "letters, digits and '-'",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(Options{Verifier: &token.Verifier{}, Keys: keySource{}, Audit: &memSink{},
				Upstreams: []Upstream{{Name: "openai", URL: "https://api.openai.com/v1", ForwardHeaders: []string{name}}}})
			if err == nil || !strings.Contains(err.Error(), why) || !strings.Contains(err.Error(), "forward_headers") {
				t.Fatalf("forward_headers [%q]: %v, want an error saying %q", name, err, why)
			}
		})
	}
	if _, err := New(Options{Verifier: &token.Verifier{}, Keys: keySource{}, Audit: &memSink{},
		Upstreams: []Upstream{{Name: "openai", URL: "https://api.openai.com/v1", ForwardHeaders: []string{"X-Agent-Name", "x-agent-name"}}}}); err == nil {
		t.Error("a name listed twice was accepted")
	}
}

// TestBuiltinForwardHeadersPassTheirOwnRules: every built-in entry and the
// SDKs' telemetry names pass forwardRefusal (a rule that caught them would
// say the built-in list forwards what the rules refuse: the version and
// retry words must not catch X-Stainless-Package-Version or -Retry-Count),
// and the hostile names do not.
func TestBuiltinForwardHeadersPassTheirOwnRules(t *testing.T) {
	for _, set := range []map[string]bool{builtinForward, stainlessHeaders} {
		for k := range set {
			if why := forwardRefusal(k); why != "" {
				t.Errorf("built-in %s is refused: %s", k, why)
			}
		}
	}
	f, err := newForwardSet(nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(sdkHeaders); i += 2 {
		if !f.allows(sdkHeaders[i]) || !f.allows(strings.ToLower(sdkHeaders[i])) {
			t.Errorf("SDK header %s is not forwarded", sdkHeaders[i])
		}
	}
	for i := 0; i < len(hostileHeaders); i += 2 {
		if f.allows(hostileHeaders[i]) {
			t.Errorf("hostile header %s is forwarded", hostileHeaders[i])
		}
	}
	if f.allows("X-Stainless-") || f.allows("X-Stainless") || f.allows("X-Stainless-Pad") {
		t.Error("the bare telemetry prefix is forwarded")
	}
}

// rawCall sends req (a whole HTTP/1.1 request, CRLF line ends) to the
// proxy and returns the status line's code and the answer.
func rawCall(t *testing.T, h *harness, req string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", h.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	h.remember(b)
	return res.StatusCode, string(b)
}

// TestHostileHeaderFraming: what a client can do to the header lines
// themselves. Duplicate lines of a dropped header go not at all (of
// User-Agent, Go's transport sends the first); letter case does not matter; a
// name with a space or a colon before its colon never reaches the
// handler (Go's server answers 400) or the upstream; a Connection header
// naming an allowed header drops it (it is hop-by-hop then) without
// letting anything else through; a client's header of the vaulted key's
// name never goes.
func TestHostileHeaderFraming(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o-mini"})
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	send := func(lines ...string) (int, string) {
		return rawCall(t, h, "POST /v1/chat/completions HTTP/1.1\r\nHost: "+h.srv.Listener.Addr().String()+"\r\n"+
			"Authorization: Bearer "+tok+"\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n"+
			strings.Join(lines, "\r\n")+"\r\nConnection: close\r\n\r\n"+body)
	}
	last := func() http.Header {
		reqs := h.up.requests()
		return reqs[len(reqs)-1].Header
	}

	if code, b := send("User-Agent: first", "user-agent: second", "X-MODEL: gpt-4o", "x-model: gpt-4o",
		"helicone-auth: one", "HELICONE-AUTH: two", "x-stainless-LANG: python", "Authorization: Bearer sk-second-line", "api-key: sk-agent"); code != http.StatusOK {
		t.Fatalf("duplicates: %d %s", code, b)
	}
	got := last()
	// Go's transport writes one User-Agent line, the first.
	if v := got.Values("User-Agent"); !slices.Equal(v, []string{"first"}) {
		t.Errorf("duplicate User-Agent lines reached the upstream as %q", v)
	}
	if got.Get("X-Stainless-Lang") != "python" {
		t.Errorf("a mixed-case telemetry header was dropped: %v", got)
	}
	for _, k := range []string{"X-Model", "Helicone-Auth", "Api-Key"} {
		if v := got.Values(k); len(v) > 0 {
			t.Errorf("upstream got %s %q", k, v)
		}
	}
	if v := got.Values("Authorization"); len(v) != 1 || v[0] != "Bearer "+vaultedKey {
		t.Errorf("upstream Authorization has %d values, want the vaulted key alone", len(v))
	}

	for _, line := range []string{"X-Model : gpt-4o", "X-Model\t: gpt-4o", "X-Stainless-Lang : python", "X-Model:: gpt-4o", " X-Model: gpt-4o", "X-Mo del: gpt-4o"} {
		code, _ := send(line)
		switch {
		case code == http.StatusBadRequest:
			// Go's server refused the request line before any handler.
		case code == http.StatusOK:
			for k, v := range last() {
				if strings.Contains(strings.Join(v, ","), "gpt-4o") || strings.Contains(strings.ToLower(k), "model") {
					t.Errorf("%q: upstream got %s %q", line, k, v)
				}
			}
		default:
			t.Errorf("%q: status %d", line, code)
		}
	}

	// Connection nominates allowed headers as hop-by-hop: they are
	// dropped, and naming the key's header changes nothing.
	if code, b := send("User-Agent: nominated", "X-Stainless-Lang: python", "Accept: application/json", "Connection: User-Agent, X-Stainless-Lang, Authorization"); code != http.StatusOK {
		t.Fatalf("Connection: %d %s", code, b)
	}
	got = last()
	if got.Get("User-Agent") != "" || got.Get("X-Stainless-Lang") != "" || got.Get("Accept") != "application/json" {
		t.Errorf("Connection-nominated headers: User-Agent %q, X-Stainless-Lang %q, Accept %q", got.Get("User-Agent"), got.Get("X-Stainless-Lang"), got.Get("Accept"))
	}
	if got.Get("Authorization") != "Bearer "+vaultedKey || got.Get("Connection") != "" {
		t.Errorf("Connection naming Authorization: upstream Authorization set %v, Connection %q", got.Get("Authorization") != "", got.Get("Connection"))
	}
}

// TestHugeForwardedHeaderRefused: an allowed header longer than the proxy
// forwards is refused with 431 before the upstream is asked; a dropped
// one of any size changes nothing.
func TestHugeForwardedHeaderRefused(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o-mini"})
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	huge := strings.Repeat("a", maxForwardedHeader+1)
	res, b := h.do("POST", "/v1/chat/completions", tok, body, "X-Stainless-Lang", huge)
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge || !strings.Contains(string(b), CodeHeaderTooLarge) || !strings.Contains(string(b), "X-Stainless-Lang") || h.up.count() != 0 {
		t.Fatalf("huge allowed header: %d %s (upstream asked %d times)", res.StatusCode, b, h.up.count())
	}
	if ev := h.sink.last(t); ev.Status != http.StatusRequestHeaderFieldsTooLarge || strings.Contains(fmt.Sprint(ev), huge[:100]) {
		t.Errorf("audit event: status %d, holds the value %v", ev.Status, strings.Contains(fmt.Sprint(ev), huge[:100]))
	}
	// Two lines, each under the bound, together over it.
	half := strings.Repeat("b", maxForwardedHeader/2+1)
	code, _ := rawCall(t, h, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+tok+"\r\nContent-Type: application/json\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\nAccept: "+half+"\r\nAccept: "+half+"\r\nConnection: close\r\n\r\n"+body)
	if code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("two lines over the bound together: %d", code)
	}
	if res, b := h.do("POST", "/v1/chat/completions", tok, body, "X-Dropped-Anyway", huge, "X-Stainless-Lang", strings.Repeat("c", maxForwardedHeader)); res.StatusCode != http.StatusOK {
		t.Fatalf("a huge dropped header and an allowed one at the bound: %d %s", res.StatusCode, b)
	}
	if got := h.up.requests()[0].Header; got.Get("X-Dropped-Anyway") != "" || len(got.Get("X-Stainless-Lang")) != maxForwardedHeader {
		t.Errorf("upstream got X-Dropped-Anyway %d bytes, X-Stainless-Lang %d", len(got.Get("X-Dropped-Anyway")), len(got.Get("X-Stainless-Lang")))
	}
}

// TestIdempotencyKeyOnlyWhenConfigured: every agent behind pamctl shares
// the upstream's one vaulted key, so a gateway that keeps idempotency
// keys per API key would answer one agent's call with another's answer
// when it names that agent's key. The SDKs generate one but send it
// nowhere; it goes only to an upstream whose forward_headers lists it,
// and then per token.
func TestIdempotencyKeyOnlyWhenConfigured(t *testing.T) {
	other := newFakeUpstream(t, "azure")
	h := newHarness(t, func(o *Options) {
		o.Upstreams = append(o.Upstreams, Upstream{Name: "azure", URL: other.srv.URL + "/v1", KeyName: "azure", Timeout: time.Minute, ForwardHeaders: []string{"idempotency-key"}})
	})
	tok := h.mint(grant{scope: "model:gpt-4o-mini model:azure/gpt-4o-mini"})
	for _, model := range []string{"gpt-4o-mini", "azure/gpt-4o-mini"} {
		body := `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`
		if res, b := h.do("POST", "/v1/chat/completions", tok, body, "Idempotency-Key", "another-agents-key"); res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", model, res.StatusCode, b)
		}
	}
	if got := h.up.requests()[0].Header.Get("Idempotency-Key"); got != "" {
		t.Errorf("the default upstream got Idempotency-Key %q", got)
	}
	if got := other.requests()[0].Header.Get("Idempotency-Key"); got == "" || got == "another-agents-key" {
		t.Errorf("the upstream that lists it got Idempotency-Key %q, want the per-token key (TestIdempotencyKeyPerToken)", got)
	}
}

// TestForwardedHeadersBoundedTogether: each forwarded header is bounded,
// and so are all of them together: the telemetry names alone, 4 KiB each,
// would carry 56 KiB of the agent's text.
func TestForwardedHeadersBoundedTogether(t *testing.T) {
	h := newHarness(t)
	tok := h.mint(grant{scope: "model:gpt-4o-mini"})
	body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	var names []string
	for n := range stainlessHeaders {
		names = append(names, n)
	}
	sort.Strings(names)
	var hdr []string
	for i := range maxForwardedHeaders/4000 + 1 { // 5 names of 4,000 bytes each
		hdr = append(hdr, names[i], strings.Repeat("p", 4000))
	}
	res, b := h.do("POST", "/v1/chat/completions", tok, body, hdr...)
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge || !strings.Contains(string(b), CodeHeaderTooLarge) || h.up.count() != 0 {
		t.Fatalf("%d headers of 4000 bytes: %d %s (upstream asked %d times)", len(hdr)/2, res.StatusCode, b, h.up.count())
	}
	if res, b := h.do("POST", "/v1/chat/completions", tok, body, hdr[:len(hdr)-2]...); res.StatusCode != http.StatusOK {
		t.Fatalf("under the bound: %d %s", res.StatusCode, b)
	}
}
