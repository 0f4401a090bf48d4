package cli

import (
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
	cfg, err := LoadConfig(writeConfig(t, "upstreams: [{ name: o, url: 'https://x/v1', key: o, forward_headers: [X-Trace-Label, helicone-property-run] }]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Upstreams[0].proxyUpstream().ForwardHeaders; !slices.Equal(got, []string{"X-Trace-Label", "helicone-property-run"}) {
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
