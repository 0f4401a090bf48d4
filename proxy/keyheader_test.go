package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/token"
)

// Gateways that take the provider's key in another header than
// Authorization (Azure OpenAI: api-key; Azure API Management:
// Ocp-Apim-Subscription-Key; Portkey: x-portkey-api-key), and a second
// vaulted key beside it (upstreams[].key_header, extra_key).

const (
	extraVaulted = "gw-VAULTED-extra-4f1e9a7c3b5d2e8f"
	agentValue   = "agent-chosen-value"
)

// headerGateway is a mock gateway that records every request's headers
// and answers only when exactly the headers it wants carry the vaulted
// keys.
type headerGateway struct {
	srv  *httptest.Server
	want map[string]string // header -> exact value required

	mu   sync.Mutex
	seen []http.Header
}

func newHeaderGateway(t *testing.T, want map[string]string, echo bool) *headerGateway {
	g := &headerGateway{want: want}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		g.mu.Lock()
		g.seen = append(g.seen, r.Header.Clone())
		g.mu.Unlock()
		for k, v := range want {
			if got := r.Header.Values(k); len(got) != 1 || got[0] != v {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = io.WriteString(w, `{"error":{"message":"gateway: bad `+k+`","type":"invalid_request_error","code":"invalid_api_key","param":null}}`)
				return
			}
		}
		if echo { // a gateway that repeats what it got, keys included
			for k, v := range want {
				w.Header().Set("X-Echo-"+k, v)
			}
		}
		if r.URL.Path == "/v1/models" {
			writeJSON(w, `{"object":"list","data":[{"id":"gpt-4o-mini","object":"model","created":1,"owned_by":"gw"}]}`)
			return
		}
		content := "ok"
		if echo {
			var vs []string
			for _, v := range want {
				vs = append(vs, v)
			}
			sort.Strings(vs)
			content = "you sent " + strings.Join(vs, " and ")
		}
		writeJSON(w, `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini",`+
			`"choices":[{"index":0,"message":{"role":"assistant","content":`+strconv.Quote(content)+`},"finish_reason":"stop"}],`+
			`"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}`)
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *headerGateway) last(t *testing.T) http.Header {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.seen) == 0 {
		t.Fatal("the gateway got no request")
	}
	return g.seen[len(g.seen)-1]
}

func (g *headerGateway) count() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.seen)
}

// TestKeyHeaders: the vaulted keys arrive in exactly the headers the
// upstream is configured with, once each, and in no other; no client
// header of those names (in any case, on several lines, named in
// Connection) gets through; the model list carries them too.
func TestKeyHeaders(t *testing.T) {
	for _, tc := range []struct {
		name  string
		up    Upstream
		want  map[string]string
		never []string // headers that must not arrive at all
	}{
		{"azure api-key", Upstream{KeyHeader: "api-key"},
			map[string]string{"Api-Key": vaultedKey}, []string{"Authorization"}},
		{"default Authorization spelled out", Upstream{KeyHeader: "authorization"},
			map[string]string{"Authorization": "Bearer " + vaultedKey}, []string{"Api-Key"}},
		{"apim with the azure key as extra", Upstream{KeyHeader: "Ocp-Apim-Subscription-Key", ExtraKey: &ExtraKey{Header: "api-key", KeyName: "gw"}},
			map[string]string{"Ocp-Apim-Subscription-Key": vaultedKey, "Api-Key": extraVaulted}, []string{"Authorization"}},
		{"portkey", Upstream{KeyHeader: "x-portkey-api-key", ExtraKey: &ExtraKey{Header: "x-portkey-virtual-key", KeyName: "gw"}},
			map[string]string{"X-Portkey-Api-Key": vaultedKey, "X-Portkey-Virtual-Key": extraVaulted}, []string{"Authorization"}},
		{"bearer and a gateway key", Upstream{ExtraKey: &ExtraKey{Header: "X-Gateway-Key", KeyName: "gw"}},
			map[string]string{"Authorization": "Bearer " + vaultedKey, "X-Gateway-Key": extraVaulted}, []string{"Api-Key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gw := newHeaderGateway(t, tc.want, false)
			h := newHarness(t, func(o *Options) {
				o.Keys = keySource{"openai": vaultedKey, "gw": extraVaulted}
				u := tc.up
				u.Name, u.URL, u.KeyName, u.Timeout = "openai", gw.srv.URL+"/v1", "openai", time.Minute
				o.Upstreams = []Upstream{u}
			})
			tok := h.mint(grant{scope: "model:gpt-4o-mini"})
			body := `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
			// The client's values under the key headers' names, as an
			// agent would try them; the pamctl token goes as api-key in
			// one call (as Azure clients send it) and as Authorization in
			// the other.
			var hostile []string
			for k := range tc.want {
				hostile = append(hostile, k+": "+agentValue, strings.ToLower(k)+": "+agentValue, strings.ToUpper(k)+": Bearer "+agentValue)
			}
			for _, auth := range []string{"Authorization: Bearer " + tok, "api-key: " + tok} {
				if _, ok := tc.want["Authorization"]; ok && strings.HasPrefix(auth, "api-key") {
					continue // the client's Authorization lines would be read as its token
				}
				lines := append([]string{auth, "Content-Type: application/json", "Content-Length: " + strconv.Itoa(len(body)), "Connection: close"}, hostile...)
				if !strings.HasPrefix(auth, "api-key") {
					lines = append(lines, "api-key: "+agentValue)
				}
				code, b := rawCall(t, h, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"+strings.Join(lines, "\r\n")+"\r\n\r\n"+body)
				if code != http.StatusOK {
					t.Fatalf("%s: %d %s", auth[:13], code, b)
				}
				checkKeyHeaders(t, gw.last(t), tc.want, tc.never)
			}
			// Connection naming the key headers changes nothing.
			var names []string
			for k := range tc.want {
				names = append(names, k)
			}
			if res, b := h.do("POST", "/v1/chat/completions", tok, body, "Connection", strings.Join(names, ", ")); res.StatusCode != http.StatusOK {
				t.Fatalf("Connection: %d %s", res.StatusCode, b)
			}
			checkKeyHeaders(t, gw.last(t), tc.want, tc.never)
			// The model list asks the upstream with the same headers.
			if res, b := h.do("GET", "/v1/models", tok, ""); res.StatusCode != http.StatusOK {
				t.Fatalf("models: %d %s", res.StatusCode, b)
			}
			checkKeyHeaders(t, gw.last(t), tc.want, tc.never)
			if strings.Contains(h.logs.String(), vaultedKey) || strings.Contains(h.logs.String(), extraVaulted) {
				t.Error("a vaulted key is in the log")
			}
		})
	}
}

func checkKeyHeaders(t *testing.T, got http.Header, want map[string]string, never []string) {
	t.Helper()
	for k, v := range want {
		if vs := got.Values(k); len(vs) != 1 || vs[0] != v {
			t.Errorf("upstream %s: %d values, want the vaulted one alone", k, len(vs))
		}
	}
	for _, k := range never {
		if len(got.Values(k)) > 0 {
			t.Errorf("upstream got %s (%d values), which this upstream does not take", k, len(got.Values(k)))
		}
	}
	for k, vs := range got {
		for _, v := range vs {
			if strings.Contains(v, agentValue) {
				t.Errorf("the client's %s reached the upstream", k)
			}
			if _, ok := want[k]; !ok && (strings.Contains(v, vaultedKey) || strings.Contains(v, extraVaulted)) {
				t.Errorf("a vaulted key went in %s too", k)
			}
		}
	}
}

// TestExtraKeyEchoScrubbed: an upstream that repeats the extra key (in a
// header, in the answer) has it removed as the provider key is.
func TestExtraKeyEchoScrubbed(t *testing.T) {
	want := map[string]string{"Api-Key": vaultedKey, "X-Gateway-Key": extraVaulted}
	gw := newHeaderGateway(t, want, true)
	h := newHarness(t, func(o *Options) {
		o.Keys = keySource{"openai": vaultedKey, "gw": extraVaulted}
		o.Upstreams = []Upstream{{Name: "openai", URL: gw.srv.URL + "/v1", KeyName: "openai", Timeout: time.Minute,
			KeyHeader: "api-key", ExtraKey: &ExtraKey{Header: "X-Gateway-Key", KeyName: "gw"}}}
		o.ResponseMask = nil
	})
	tok := h.mint(grant{scope: "model:gpt-4o-mini"})
	res, b := h.do("POST", "/v1/chat/completions", tok, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	if strings.Contains(string(b), extraVaulted) || strings.Contains(fmt.Sprint(res.Header), extraVaulted) {
		t.Fatalf("the extra key reached the client: %s %v", b, res.Header)
	}
	var ans struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(b, &ans); err != nil || len(ans.Choices) != 1 || !strings.Contains(ans.Choices[0].Message.Content, "[redacted]") {
		t.Fatalf("answer %s (%v): want the keys [redacted]", b, err)
	}
	if ev := h.sink.last(t); strings.Contains(fmt.Sprint(ev), extraVaulted) {
		t.Fatal("the extra key is in the trail")
	}
}

// TestMissingExtraKey: an extra key not in the vault fails the call
// before the upstream is asked, naming the vault entry to set, as a
// missing provider key does; a store that cannot answer is 503.
func TestMissingExtraKey(t *testing.T) {
	gw := newHeaderGateway(t, map[string]string{"Authorization": "Bearer " + vaultedKey}, false)
	h := newHarness(t, func(o *Options) {
		o.Upstreams = []Upstream{{Name: "openai", URL: gw.srv.URL + "/v1", KeyName: "openai", Timeout: time.Minute,
			ExtraKey: &ExtraKey{Header: "X-Gateway-Key", KeyName: "gateway-key"}}}
	})
	tok := h.mint(grant{scope: "model:gpt-4o-mini"})
	for _, path := range []string{"/v1/chat/completions", "/v1/models"} {
		res, b := chatOrModels(h, path, tok)
		if res.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), CodeProviderKey) || !strings.Contains(string(b), "pamctl vault set gateway-key") {
			t.Fatalf("%s: %d %s", path, res.StatusCode, b)
		}
	}
	if gw.count() != 0 {
		t.Fatalf("the upstream was asked %d times without its extra key", gw.count())
	}
}

// TestKeyHeadersValidated: a key header that a proxy on the way would
// drop or read, that pamctl sets, that clients send, or that is not one
// header name is refused; so are an extra key without its header or
// entry, one in the provider key's header, and forward_headers naming a
// key header. The errors name headers and entries, never a key.
func TestKeyHeadersValidated(t *testing.T) {
	for _, tc := range []struct {
		up   Upstream
		want string
	}{
		{Upstream{KeyHeader: "Host"}, `key_header: "Host" cannot carry the key: it is hop-by-hop`},
		{Upstream{KeyHeader: "Connection"}, "hop-by-hop"},
		{Upstream{KeyHeader: "Transfer-Encoding"}, "hop-by-hop"},
		{Upstream{KeyHeader: "Proxy-Authorization"}, "hop-by-hop"},
		{Upstream{KeyHeader: "Content-Length"}, "hop-by-hop"},
		{Upstream{KeyHeader: "api_key"}, "letters, digits and '-'"},
		{Upstream{KeyHeader: "api key"}, "letters, digits and '-'"},
		{Upstream{KeyHeader: "api-key:"}, "letters, digits and '-'"},
		{Upstream{KeyHeader: "X-Request-Id"}, "pamctl sets it"},
		{Upstream{KeyHeader: "OpenAI-Project"}, "pamctl sets it"},
		{Upstream{KeyHeader: "User-Agent"}, "the SDKs send"},
		{Upstream{KeyHeader: "X-Stainless-Key"}, "the SDKs send"},
		{Upstream{ExtraKey: &ExtraKey{KeyName: "gw"}}, "extra_key: header (the header the second key goes in) is required"},
		{Upstream{ExtraKey: &ExtraKey{Header: "X-Gw-Key"}}, "extra_key: key (the vault entry holding the second key) is required"},
		{Upstream{ExtraKey: &ExtraKey{Header: "authorization", KeyName: "gw"}}, "is the header the provider key goes in"},
		{Upstream{KeyHeader: "api-key", ExtraKey: &ExtraKey{Header: "API-KEY", KeyName: "gw"}}, "is the header the provider key goes in"},
		{Upstream{ExtraKey: &ExtraKey{Header: "Upgrade", KeyName: "gw"}}, `extra_key: header "Upgrade" cannot carry a key: it is hop-by-hop`},
		{Upstream{ExtraKey: &ExtraKey{Header: "X-Gateway-Key", KeyName: "gw"}, ForwardHeaders: []string{"X-Gateway-Key"}}, "forward_headers"},
	} {
		t.Run(fmt.Sprintf("%s/%+v", tc.up.KeyHeader, tc.up.ExtraKey), func(t *testing.T) {
			u := tc.up
			u.Name, u.URL = "gw", "https://gw.example/v1"
			if err := u.CheckHeaders(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CheckHeaders: %v, want %q", err, tc.want)
			}
			_, err := New(Options{Verifier: &token.Verifier{}, Keys: keySource{}, Audit: &memSink{}, Upstreams: []Upstream{u}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want %q", err, tc.want)
			}
		})
	}
	for _, ok := range []Upstream{
		{KeyHeader: "api-key"}, {KeyHeader: "Authorization"}, {KeyHeader: "Ocp-Apim-Subscription-Key", ExtraKey: &ExtraKey{Header: "Authorization", KeyName: "gw"}},
		{ExtraKey: &ExtraKey{Header: "X-Portkey-Virtual-Key", KeyName: "gw"}},
	} {
		ok.Name, ok.URL = "gw", "https://gw.example/v1"
		if err := ok.CheckHeaders(); err != nil {
			t.Errorf("%+v: %v", ok, err)
		}
	}
}

// chatOrModels calls path, a chat completion (a small one for
// gpt-4o-mini) or the model list, with tok.
func chatOrModels(h *harness, path, tok string) (*http.Response, []byte) {
	if path == "/v1/models" {
		return h.do("GET", path, tok, "")
	}
	return h.do("POST", path, tok, `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`)
}
