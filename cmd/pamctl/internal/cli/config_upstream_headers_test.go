package cli

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// upstreams[].forward_headers: a name the proxy may forward is carried to
// the proxy; one it must never forward (a credential, hop-by-hop, an
// address claim, a routing or billing selector, a name a CGI-style server
// folds) is an error of `config check` and `serve` that names the entry
// and says why.
func TestUpstreamForwardHeaders(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, "upstreams: [{ name: o, url: 'https://x/v1', key: o, forward_headers: [X-Agent-Name, x-run-label] }]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Upstreams[0].proxyUpstream().ForwardHeaders; !slices.Equal(got, []string{"X-Agent-Name", "x-run-label"}) {
		t.Fatalf("the proxy gets forward_headers %q", got)
	}
	for name, why := range map[string]string{
		"X-Api-Key":           "named as a credential",
		"Helicone-Auth":       "named as a credential",
		"Connection":          "hop-by-hop",
		"Host":                "hop-by-hop",
		"X-Clientip":          "client address",
		"X-Model":             "model, deployment",
		"X-Goog-User-Project": "organization, project",
		"OpenAI-Organization": "pamctl sets it",
		"X_Trace_Label":       "letters, digits and '-'",
	} {
		cfg, err := LoadConfig(writeConfig(t, "upstreams: [{ name: o, url: 'https://x/v1', key: o, forward_headers: ['"+name+"'] }]\n"), nil)
		if err != nil {
			t.Fatal(err)
		}
		err = cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), "upstreams[0] (o): forward_headers: \""+name+"\"") || !strings.Contains(err.Error(), why) {
			t.Errorf("forward_headers [%s]: %v, want an error saying %q", name, err, why)
		}
	}
}

// upstreams[].key_header and extra_key reach the proxy (in this process
// and, through the broker's document, in a proxy-role process); a key
// header that cannot carry a key, or an extra_key without its header or
// entry, is an error naming the upstream; unknown keys under extra_key
// are errors as everywhere.
func TestUpstreamKeyHeaders(t *testing.T) {
	cfg, err := LoadConfig(writeConfig(t, "upstreams: [{ name: apim, url: 'https://x/v1', key: o, key_header: Ocp-Apim-Subscription-Key, extra_key: { header: api-key, key: azure-backend } }]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	check := func(where string, u UpstreamConfig) {
		t.Helper()
		p := u.proxyUpstream()
		if p.KeyHeader != "Ocp-Apim-Subscription-Key" || p.ExtraKey == nil || p.ExtraKey.Header != "api-key" || p.ExtraKey.KeyName != "azure-backend" {
			t.Fatalf("%s: the proxy gets %+v (extra %+v)", where, p, p.ExtraKey)
		}
	}
	check("serve", cfg.Upstreams[0])
	pc, err := proxyConfigOf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	remote, _, err := decodeProxyDocument(cfg, pc)
	if err != nil {
		t.Fatal(err)
	}
	check("role proxy", remote.Upstreams[0])
	if p := (UpstreamConfig{Name: "o", URL: "https://x/v1", Key: "o"}).proxyUpstream(); p.ExtraKey != nil || p.KeyHeader != "" {
		t.Fatalf("an upstream without key_header or extra_key: %+v", p)
	}

	for body, want := range map[string]string{
		"key_header: Host":                              `upstreams[0] (o): key_header: "Host" cannot carry the key: it is hop-by-hop`,
		"key_header: 'api key'":                         "letters, digits and '-'",
		"key_header: X-Request-Id":                      "pamctl sets it",
		"extra_key: { key: gw }":                        "upstreams[0] (o): extra_key: header (the header the second key goes in) is required",
		"extra_key: { header: X-Gw-Key }":               "extra_key: key (the vault entry holding the second key) is required",
		"extra_key: { header: Authorization, key: gw }": "is the header the provider key goes in",
		"extra_key: { header: X-Gw-Key, key: gw }, forward_headers: [X-Gw-Key]": "forward_headers",
	} {
		cfg, err := LoadConfig(writeConfig(t, "upstreams: [{ name: o, url: 'https://x/v1', key: o, "+body+" }]\n"), nil)
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
	if _, err := LoadConfig(writeConfig(t, "upstreams: [{ name: o, url: 'https://x/v1', key: o, extra_key: { header: X-Gw-Key, key: gw, value: sk-inline } }]\n"), nil); err == nil || !strings.Contains(err.Error(), `unknown key "value"`) || strings.Contains(err.Error(), "sk-inline") {
		t.Errorf("an inline value under extra_key: %v", err)
	}
}

// In dev mode an upstream with key_header still reaches the built-in mock
// while no key is vaulted: the mock key is found in that header and sent
// to the mock as Authorization, which it reads; a real key goes to the
// real upstream in its header, untouched.
func TestDevRouteFollowsKeyHeader(t *testing.T) {
	got, mu, real := devRouteUpstreams(t, "Api-Key")
	rt := devRoute{real: http.DefaultTransport, mock: mu, keyHeader: "api-key"}
	for key, want := range map[string]string{devMockKey: "mock Bearer " + devMockKey + "|", "sk-real": "real |sk-real"} {
		req, _ := http.NewRequest("GET", real+"/v1/models", nil)
		req.Header.Set("Api-Key", key)
		res, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if g := <-got; g != want {
			t.Errorf("key %s: %q, want %q", key, g, want)
		}
	}
}

// In dev mode with a vaulted provider key but no extra key, devKeys gives
// the mock's key for the extra key; the call goes to the real upstream,
// which must not get the mock's key (h3): it goes without the extra
// header. With both the mock's, it goes to the mock, extra header and all.
func TestDevRouteSendsNoMockExtraKeyUpstream(t *testing.T) {
	got, mu, real := devRouteUpstreams(t, "X-Gw-Key")
	rt := devRoute{real: http.DefaultTransport, mock: mu, extraHeader: "X-Gw-Key"}
	for _, c := range []struct{ key, extra, want string }{
		{"sk-real", devMockKey, "real Bearer sk-real|"},
		{"sk-real", "gw-real", "real Bearer sk-real|gw-real"},
		{devMockKey, devMockKey, "mock Bearer " + devMockKey + "|" + devMockKey},
	} {
		req, _ := http.NewRequest("GET", real+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+c.key)
		req.Header.Set("X-Gw-Key", c.extra)
		res, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if g := <-got; g != c.want {
			t.Errorf("key %s, extra %s: %q, want %q", c.key, c.extra, g, c.want)
		}
	}
}

// devRouteUpstreams starts a stand-in for the dev mock and one for a real
// upstream; each reports on got which it is, the Authorization header
// and header it received ("mock Bearer …|…").
func devRouteUpstreams(t *testing.T, header string) (got chan string, mock *url.URL, real string) {
	t.Helper()
	got = make(chan string, 2)
	serve := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got <- name + " " + r.Header.Get("Authorization") + "|" + r.Header.Get(header)
		}))
		t.Cleanup(s.Close)
		return s
	}
	m, r := serve("mock"), serve("real")
	mock, _ = url.Parse(m.URL)
	return got, mock, r.URL
}
