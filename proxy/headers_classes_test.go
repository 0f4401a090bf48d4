package proxy

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/token"
)

// The phrases each refusal class's message holds.
const (
	classCredential = "named as a credential"
	classIdentity   = "asserts an identity"
	classAddress    = "claims a client address"
	classRouting    = "may select another route"
	classAccount    = "selects an organization, project"
	classCache      = "steers a gateway's cache"
	classLogging    = "turns a gateway's logging"
	classFraming    = "hop-by-hop or framing"
	classVendor     = "control namespace of a gateway"
	classTrace      = "trace context or a tracing decision"
	classTimeout    = "sets a timeout or deadline"
	classSec        = "only browsers and handshakes set"
)

// TestForwardHeaderClasses: the names an external red team got through
// forward_headers to the upstream (identity assertions gateways trust,
// address claims, route and API-version selectors, credentials under
// other names, gateway cache controls) are refused, each with its class
// in the message, by `config check` (CheckHeaders) and by serve (New);
// names that label a call stay allowed.
func TestForwardHeaderClasses(t *testing.T) {
	for name, class := range map[string]string{
		// what only browsers and handshakes set (h6 noticed them passing)
		"Sec-Fetch-Site":           classSec,
		"Sec-Fetch-Mode":           classSec,
		"Sec-Websocket-Protocol":   classSec,
		"Sec-Websocket-Extensions": classSec,
		"Sec-Ch-Ua":                classSec,
		// identity and impersonation assertions
		"Impersonate-User":                classIdentity,
		"Impersonate-Group":               classIdentity,
		"Impersonate-Uid":                 classIdentity,
		"X-Ms-Client-Principal":           classIdentity,
		"X-Ms-Client-Principal-Name":      classIdentity,
		"X-Ms-Client-Principal-Id":        classIdentity,
		"X-Remote-User":                   classIdentity,
		"Remote-User":                     classIdentity,
		"X-Amzn-Oidc-Identity":            classIdentity,
		"X-Kong-Consumer":                 classIdentity,
		"X-Consumer-Id":                   classIdentity,
		"X-Consumer-Username":             classIdentity,
		"X-Consumer-Groups":               classIdentity,
		"X-User":                          classIdentity,
		"X-User-Id":                       classIdentity,
		"X-Userid":                        classIdentity,
		"X-Roles":                         classIdentity,
		"X-Role":                          classIdentity,
		"X-Groups":                        classIdentity,
		"X-Forwarded-User":                classIdentity,
		"X-Forwarded-Email":               classIdentity,
		"X-Forwarded-Preferred-Username":  classIdentity,
		"X-Auth-Request-User":             classIdentity,
		"X-Auth-Request-Email":            classIdentity,
		"X-Goog-Authenticated-User-Email": classIdentity,
		"X-On-Behalf-Of":                  classIdentity,
		"X-Actor":                         classIdentity,
		"X-Caller":                        classIdentity,
		"X-Run-As":                        classIdentity,
		"X-As-User":                       classIdentity,
		"X-Subject":                       classIdentity,
		"X-Jwt-Sub":                       classIdentity,
		"X-Claims":                        classIdentity,
		"X-Scopes":                        classIdentity,
		"X-Permissions":                   classIdentity,
		"X-Admin":                         classIdentity,
		"Helicone-User-Id":                classIdentity,
		"X-Login":                         classIdentity,
		// address claims
		"X-Envoy-External-Address": classAddress,
		"X-Peer-Addr":              classAddress,
		"X-Peer":                   classAddress,
		"X-Address":                classAddress,
		"X-Client-Address":         classAddress,
		"X-Source-Ip":              classAddress,
		"X-Ip":                     classAddress,
		"Forwarded":                classAddress,
		"X-Original-Forwarded-For": classAddress,
		"Cf-Connecting-Ip":         classAddress,
		"Cf-Connecting-Ipv6":       classAddress,
		"Cf-Ipcountry":             classAddress,
		"True-Client-Ip":           classAddress,
		"X-Cluster-Client-Ip":      classAddress,
		"X-Real-Port":              classAddress,
		"X-Client-Port":            classAddress,
		"Origin":                   classAddress,
		"Referer":                  classAddress,
		"X-Geo-Country":            classAddress,
		// route and API selectors
		"X-Litellm-Api-Base":             classRouting,
		"X-Api-Base":                     classRouting,
		"Api-Version":                    classRouting,
		"X-Api-Version":                  classRouting,
		"X-Ms-Version":                   classRouting,
		"Anthropic-Version":              classRouting,
		"X-Envoy-Retry-On":               classRouting,
		"X-Envoy-Max-Retries":            classRouting,
		"X-Envoy-Upstream-Rq-Timeout-Ms": classRouting,
		"X-Envoy-Force-Trace":            classRouting,
		"X-Original-Url":                 classRouting,
		"X-Rewrite-Url":                  classRouting,
		"X-Original-Host":                classRouting,
		"Helicone-Retry-Enabled":         classRouting,
		"X-Portkey-Retry-Count":          classRouting,
		"X-Retry-Count":                  classRouting,
		"X-Retry-Attempt":                classRouting,
		"X-Max-Retries":                  classRouting,
		"X-Shadow":                       classRouting,
		"X-Mirror-To":                    classRouting,
		"X-Redirect":                     classRouting,
		"X-Canary":                       classRouting,
		// credentials under other names
		"X-Jwt":                  classCredential,
		"X-Jwt-Assertion":        classCredential,
		"X-Bearer":               classCredential,
		"X-Pass":                 classCredential,
		"X-Passcode":             classCredential,
		"X-Hmac":                 classCredential,
		"X-Sig":                  classCredential,
		"X-Signed":               classCredential,
		"X-Csrf-Token":           classCredential,
		"X-Csrf":                 classCredential,
		"X-Xsrf":                 classCredential,
		"X-Nonce":                classCredential,
		"X-Client-Cert":          classCredential,
		"Ssl-Client-Cert":        classCredential,
		"X-Ssl-Client-Verify":    classIdentity, // a TLS-terminating proxy's client certificate verdict
		"X-Amz-Security-Token":   classCredential,
		"X-Amz-Security-Context": classCredential,
		"X-Amz-Date":             classCredential,
		"X-Amz-Content-Sha256":   classCredential,
		"X-Otp":                  classCredential,
		"X-Amzn-Oidc-Data":       classCredential,
		// gateway cache controls
		"Cache-Control":                 classCache,
		"Pragma":                        classCache,
		"Helicone-Cache-Enabled":        classCache,
		"Helicone-Cache-Seed":           classCache,
		"Cf-Aig-Skip-Cache":             classCache,
		"Cf-Aig-Cache-Ttl":              classCache,
		"Cf-Aig-Collect-Log":            classLogging,
		"Cf-Aig-Metadata":               classVendor,
		"X-Portkey-Cache-Force-Refresh": classCache,
		"X-Portkey-Cache-Namespace":     classCache,
		"X-Ttl":                         classCache,
		"X-Dedupe-Id":                   classCache,
		"X-Replay":                      classCache,
		"If-None-Match":                 classCache,
		"If-Modified-Since":             classCache,
		"X-Idempotency":                 classCache,
		"X-Idempotency-Id":              classCache,
		"Idempotent-Replayed":           classCache,
		// a gateway's logging of the call
		"Helicone-Omit-Request":  classLogging,
		"Helicone-Omit-Response": classLogging,
		"X-Portkey-Debug":        classLogging,
		"X-No-Log":               classLogging,
		"X-Log-Level":            classLogging,
		"X-Logging":              classLogging,
		"X-Audit-Skip":           classLogging,
		"X-Redact":               classLogging,
		// framing the proxy sets for the body it checked
		"Content-Md5":    classFraming,
		"Content-Digest": classFraming,
		"Digest":         classFraming,
		// whose limits a call counts against
		"Helicone-Ratelimit-Policy": classAccount,
		"X-Team-Id":                 classAccount, // LiteLLM's teams have budgets
		"X-Team":                    classAccount,
		"X-Litellm-Team-Id":         classAccount,
		// an OAuth client's id: half of a client credential (Cloudflare
		// Access service tokens, MuleSoft's client id enforcement,
		// X-IBM-Client-Id)
		"X-Client-Id":             classCredential,
		"Client-Id":               classCredential,
		"X-Clientid":              classCredential,
		"X-Ibm-Client-Id":         classCredential,
		"Cf-Access-Client-Id":     classCredential,
		"Cf-Access-Client-Secret": classCredential,
		// trace context and sampling: pamctl sets its own (traceparent)
		"X-B3-Sampled":                classTrace,
		"X-B3-Flags":                  classTrace,
		"B3":                          classTrace,
		"X-B3-Traceid":                classTrace,
		"X-B3-Spanid":                 classTrace,
		"X-B3-Parentspanid":           classTrace,
		"X-Datadog-Trace-Id":          classTrace,
		"X-Datadog-Parent-Id":         classTrace,
		"X-Datadog-Tags":              classTrace,
		"X-Amzn-Trace-Id":             classTrace,
		"X-Cloud-Trace-Context":       classTrace,
		"X-Client-Trace-Id":           classTrace, // Envoy forces tracing on it
		"Uber-Trace-Id":               classTrace,
		"Uberctx-Run":                 classTrace,
		"Sentry-Trace":                classTrace,
		"Langfuse-Trace-Id":           classTrace,
		"X-Portkey-Trace-Id":          classTrace,
		"X-Portkey-Span-Id":           classTrace,
		"X-Trace-Id":                  classTrace,
		"X-Trace-Label":               classTrace, // a tracer may read any X-Trace-*: labels go under other names
		"X-Trace-Tag":                 classTrace,
		"Ot-Tracer-Sampled":           classTrace,
		"X-Ot-Span-Context":           classTrace,
		"Elastic-Apm-Traceparent":     classTrace,
		"Sw8":                         classTrace,
		"Newrelic":                    classTrace,
		"X-Instana-L":                 classTrace,
		"X-Sampled":                   classTrace,
		"X-Sampling-Rate":             classTrace,
		"Correlation-Context":         classTrace,
		"Request-Context":             classTrace,
		"X-Datadog-Sampling-Priority": classRouting, // a priority: routing's word comes first
		// timeouts: a gateway's timeout triggers its retry or fallback
		"X-Litellm-Timeout":         classTimeout,
		"X-Portkey-Request-Timeout": classTimeout,
		"Grpc-Timeout":              classTimeout,
		"X-Request-Timeout":         classTimeout,
		"Request-Timeout":           classTimeout,
		"X-Timeout":                 classTimeout,
		"X-Timeout-Ms":              classTimeout,
		"X-Server-Timeout":          classTimeout,
		"X-Deadline":                classTimeout,
		"X-Request-Deadline":        classTimeout,
	} {
		t.Run(name, func(t *testing.T) {
			if why := forwardRefusal(name); !strings.Contains(why, class) {
				t.Fatalf("forwardRefusal(%q) = %q, want the class %q", name, why, class)
			}
			for _, spelled := range []string{name, strings.ToLower(name), strings.ToUpper(name)} {
				u := Upstream{Name: "gw", URL: "https://gw.example/v1", ForwardHeaders: []string{spelled}}
				if err := u.CheckHeaders(); err == nil || !strings.Contains(err.Error(), class) || !strings.Contains(err.Error(), "forward_headers") {
					t.Fatalf("CheckHeaders with forward_headers [%q]: %v, want %q", spelled, err, class)
				}
			}
			_, err := New(Options{Verifier: &token.Verifier{}, Keys: keySource{}, Audit: &memSink{},
				Upstreams: []Upstream{{Name: "openai", URL: "https://api.openai.com/v1", ForwardHeaders: []string{name}}}})
			if err == nil || !strings.Contains(err.Error(), class) {
				t.Fatalf("New with forward_headers [%q]: %v, want %q", name, err, class)
			}
		})
	}
	for _, name := range []string{
		"X-Agent-Name", "X-Agent-Version", "X-Correlation-Id", "X-Conversation-Id", "X-Task-Name",
		"X-Client-Request-Id", "X-Job-Id", "X-Run-Label", "X-Run-Id", "X-Experiment", "X-Client-Version", "X-App-Version",
		"X-Sdk-Version", "X-Feature", "X-Description", "X-Example-Name", "X-Hotel-Name", "X-Spanish-Text",
		"X-Clientele-Label", "X-Teammate-Label", "X-Steps",
		"Idempotency-Key", "X-Stainless-Helper-Name", "X-Catalog", "X-Blog-Post",
		// vendors' words inside a name, not a namespace at its start
		"X-Agent-Portkey-Run", "X-Run-Helicone", "X-Cfg", "X-Msg-Kind", "X-Amazing", "X-Openairun", "X-Title-Case",
	} {
		if why := forwardRefusal(name); why != "" {
			t.Errorf("%s is refused: %s", name, why)
		}
		if _, err := newForwardSet([]string{name}, "Authorization"); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestForwardHeaderVendorNamespaces: a name under the control namespace of
// a gateway, cloud front door, framework or provider API in front of the
// model (X-Portkey-*, X-Litellm-*, Helicone-*, Cf-*, Ocp-Apim-*, X-Ms-*,
// X-Amzn-*, X-Goog-*, Openai-* but OpenAI-Beta, Anthropic-*, ...) is
// refused as a whole, by `config check` and serve: the red team's
// X-Litellm-Tags, X-Portkey-Metadata (user and cost attribution,
// conditional routing), X-Litellm-Disable-Callbacks passed every class by
// word, and pamctl cannot know what a gateway does with its own control
// headers. No built-in name is under one.
func TestForwardHeaderVendorNamespaces(t *testing.T) {
	for _, name := range []string{
		// the red team's
		"X-Litellm-Tags", "X-Litellm-Disable-Callbacks", "X-Portkey-Metadata", "X-Portkey-Azure-Resource-Name",
		"X-Portkey-Sagemaker-Inference-Component", "X-Portkey-Forward-Headers", "X-Portkey-Aws-External-Id",
		"Helicone-Request-Id", "X-Middleware-Subrequest",
		// one per namespace, with the labels the first round allowed
		"X-Portkey-Span-Name", "X-Portkey-Trace-Id", "Litellm-Tags", "Helicone-Property-Run",
		"Helicone-Prompt-Id", "X-Helicone-Property-Run", "Cf-Aig-Metadata", "Cf-Access-Jwt-Assertion-Name", "Cf-Worker",
		"X-Kong-Upstream-Status", "Kong-Debug-Level", "X-Istio-Attributes", "X-Tyk-Flag", "X-Apigee-Flag", "X-Gravitee-Transaction-Id",
		"Ocp-Apim-Trace", "Apim-Flag", "X-Ms-Client-Request-Id", "X-Azure-Fdid", "X-Arr-Ssl", "Azureml-Flag",
		"X-Amzn-Bedrock-Guardrail", "X-Amz-Bedrock-Flag", "X-Aws-Flag", "X-Bedrock-Flag", "X-Goog-Request-Params",
		"X-Google-Flag", "X-Appengine-Flag", "Akamai-Origin-Hop", "X-Akamai-Flag", "Fastly-Flag", "X-Fastly-Flag",
		"X-Vercel-Flag", "X-Nextjs-Data", "X-Invoke-Status", "Openai-Flag", "X-Openai-Flag", "Anthropic-Beta",
		"X-Anthropic-Flag", "X-Openrouter-Flag", "X-Title", "X-Bt-Use-Cache-Name", "Langfuse-Flag", "X-Langfuse-Flag",
		"Langsmith-Flag", "X-Langsmith-Flag", "Grpc-Status-Flag",
	} {
		t.Run(name, func(t *testing.T) {
			why := forwardRefusal(name)
			if why == "" {
				t.Fatalf("forwardRefusal(%q) = \"\": it is under a gateway's control namespace", name)
			}
			for _, spelled := range []string{name, strings.ToLower(name), strings.ToUpper(name)} {
				u := Upstream{Name: "gw", URL: "https://gw.example/v1", ForwardHeaders: []string{spelled}}
				if err := u.CheckHeaders(); err == nil || !strings.Contains(err.Error(), "forward_headers") {
					t.Fatalf("CheckHeaders with forward_headers [%q]: %v", spelled, err)
				}
			}
			_, err := New(Options{Verifier: &token.Verifier{}, Keys: keySource{}, Audit: &memSink{},
				Upstreams: []Upstream{{Name: "openai", URL: "https://api.openai.com/v1", ForwardHeaders: []string{name}}}})
			if err == nil {
				t.Fatalf("New with forward_headers [%q] was accepted", name)
			}
		})
	}
	// Those no other class catches are refused for the namespace, and
	// the message says there is no override.
	for _, name := range []string{"X-Litellm-Tags", "X-Litellm-Disable-Callbacks", "X-Portkey-Metadata", "X-Portkey-Azure-Resource-Name",
		"X-Portkey-Sagemaker-Inference-Component", "X-Portkey-Forward-Headers", "X-Portkey-Aws-External-Id", "Helicone-Property-Run",
		"Helicone-Request-Id", "X-Middleware-Subrequest", "Anthropic-Beta", "X-Title", "Cf-Worker", "X-Ms-Client-Request-Id"} {
		if why := forwardRefusal(name); !strings.Contains(why, classVendor) || !strings.Contains(why, "no override") {
			t.Errorf("forwardRefusal(%q) = %q, want %q and no override", name, why, classVendor)
		}
	}
	for _, set := range []map[string]bool{builtinForward, stainlessHeaders} {
		for k := range set {
			if vendorNamespace(k) {
				t.Errorf("built-in %s is under a vendor namespace", k)
			}
		}
	}
}

// TestKeyHeaderClasses: a vaulted key goes only in a header named as a
// credential (a cookie header excepted), and not in one that a proxy or
// gateway on the way reads as an identity, an address, a route or a cache
// control, or logs as such; the key headers real gateways document stay
// accepted, as key_header and as extra_key.header.
func TestKeyHeaderClasses(t *testing.T) {
	const (
		notCredential = "not named as a credential"
		cookie        = "cookie"
	)
	for name, want := range map[string]string{
		"X-Forwarded-For":           notCredential,
		"Forwarded":                 notCredential,
		"Referer":                   notCredential,
		"Location":                  notCredential,
		"Cache-Control":             notCredential,
		"Pragma":                    notCredential,
		"X-Correlation-Id":          notCredential,
		"X-Trace-Label":             notCredential,
		"Accept-Language":           notCredential,
		"X-Gw":                      notCredential,
		"Cookie":                    cookie,
		"Set-Cookie":                cookie,
		"Cookie2":                   cookie,
		"X-Session-Cookie":          cookie,
		"X-Forwarded-Authorization": "client address",
		"X-Real-Ip-Token":           "client address",
		"X-Auth-Request-User":       "identity",
		"X-Remote-User-Token":       "identity",
		"Impersonate-Key":           "identity",
		"X-Upstream-Key":            "route",
		"X-Original-Authorization":  "route",
		"X-Model-Key":               "route",
		"X-Cache-Key":               "cache",
		"Cf-Aig-Cache-Key":          "cache",
		"X-Request-Id":              "pamctl sets it",
		"User-Agent":                "the SDKs send",
		// names an intermediary logs, or reads as a switch of its own
		"X-Debug-Token":              "logging",
		"X-Log-Key":                  "logging",
		"X-Audit-Key":                "logging",
		"Helicone-Omit-Key":          "logging",
		"X-Redact-Secret":            "logging",
		"Apim-Debug-Authorization":   "logging",
		"X-Kong-Request-Debug-Token": "logging",
		"X-Trace-Token":              "trace or correlation",
		"X-Correlation-Token":        "trace or correlation",
		"X-Correlationid-Key":        "trace or correlation",
		"X-B3-Key":                   "trace or correlation",
		"Sentry-Auth":                "trace or correlation",
		"X-Span-Secret":              "trace or correlation",
		"X-Idempotency-Key":          "cache",
		"Idempotent-Key":             "cache",
		"X-Dedup-Token":              "cache",
		"X-Timeout-Token":            "timeout",
		// response-only, and what browsers and handshakes set
		"Www-Authenticate":          "response",
		"Authentication-Info":       "response",
		"Proxy-Authentication-Info": "response",
		"Sec-Websocket-Key":         "Sec-",
		"Sec-Websocket-Accept":      "Sec-",
		"Sec-Token":                 "Sec-",
		"Sec-Fetch-Auth":            "Sec-",
	} {
		t.Run(name, func(t *testing.T) {
			if why := keyHeaderRefusal(name); !strings.Contains(why, want) {
				t.Fatalf("keyHeaderRefusal(%q) = %q, want %q", name, why, want)
			}
			for _, u := range []Upstream{{KeyHeader: name}, {ExtraKey: &ExtraKey{Header: name, KeyName: "gw"}}} {
				u.Name, u.URL = "gw", "https://gw.example/v1"
				if err := u.CheckHeaders(); err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("CheckHeaders %+v: %v, want %q", u, err, want)
				}
			}
		})
	}
	for _, name := range []string{
		"Authorization", "api-key", "Api-Key", "X-Api-Key", "Apikey", "Ocp-Apim-Subscription-Key", "X-Goog-Api-Key",
		"X-Portkey-Api-Key", "X-Portkey-Virtual-Key", "Helicone-Auth", "Cf-Aig-Authorization", "X-Litellm-Api-Key",
		"X-Auth-Token", "X-Gateway-Key", "X-Gravitee-Api-Key", "X-Apikey",
		"Cf-Access-Client-Secret", "Cf-Access-Client-Id", "X-Ibm-Client-Id", "X-Ibm-Client-Secret", "Anthropic-Api-Key",
		"X-Langfuse-Secret-Key", "X-Bt-Api-Key",
		// a routing word inside another word (review B): "uri" in
		// Security, "route" in OpenRouter
		"X-Amz-Security-Token", "X-Security-Token", "Openrouter-Key", "X-Openrouter-Api-Key",
	} {
		if why := keyHeaderRefusal(name); why != "" {
			t.Errorf("key header %s is refused: %s", name, why)
		}
		extra := "X-Gateway-Key"
		if strings.EqualFold(name, extra) {
			extra = "X-Api-Key"
		}
		for _, u := range []Upstream{{KeyHeader: name}, {KeyHeader: extra, ExtraKey: &ExtraKey{Header: name, KeyName: "gw"}}} {
			u.Name, u.URL = "gw", "https://gw.example/v1"
			if strings.EqualFold(name, "Authorization") && u.ExtraKey != nil {
				continue // the provider key's own header with Bearer
			}
			if err := u.CheckHeaders(); err != nil {
				t.Errorf("%+v: %v", u, err)
			}
		}
	}
}

// TestIdempotencyKeyPerToken: an Idempotency-Key the operator lists in
// forward_headers goes upstream as a keyed hash of the caller's token
// (the grant's subject, the token's jti) and the client's value, never as
// the value: a retry with the same token and value sends the same key
// (its retries dedupe), two tokens sending the same value never collide
// at a gateway that keeps idempotency keys per API key, which every agent
// shares, whether two grants' or one grant's minted again (pamctl token):
// per token, as the docs say, not per grant. The hash is keyed by the
// vaulted key, so replicas and a restarted proxy agree.
func TestIdempotencyKeyPerToken(t *testing.T) {
	other := newFakeUpstream(t, "azure")
	h := newHarness(t, func(o *Options) {
		o.Upstreams = append(o.Upstreams, Upstream{Name: "azure", URL: other.srv.URL + "/v1", KeyName: "azure", Timeout: time.Minute, ForwardHeaders: []string{"idempotency-key"}})
	})
	grantA := grant{scope: "model:azure/gpt-4o-mini", req: "req_idem_a"}
	agentA := h.mint(grantA)
	agentB := h.mint(grant{scope: "model:azure/gpt-4o-mini"})
	remintedA := h.mint(grantA) // the same grant, a new token (a new jti)
	body := `{"model":"azure/gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`
	const value = "stainless-python-retry-8d7f3a"
	send := func(tok, v string) string {
		t.Helper()
		if res, b := h.do("POST", "/v1/chat/completions", tok, body, "Idempotency-Key", v); res.StatusCode != http.StatusOK {
			t.Fatalf("%d %s", res.StatusCode, b)
		}
		reqs := other.requests()
		got := reqs[len(reqs)-1].Header.Values("Idempotency-Key")
		if len(got) != 1 {
			t.Fatalf("upstream got Idempotency-Key %q, want one value", got)
		}
		return got[0]
	}
	a1, a2, b1, a3 := send(agentA, value), send(agentA, value), send(agentB, value), send(agentA, value+"-other")
	if a1 != a2 {
		t.Errorf("the same agent's retry went upstream as %q, then %q: retries would not dedupe", a1, a2)
	}
	if a1 == b1 {
		t.Errorf("two grants sending %q both went upstream as %q: one agent would get the other's answer", value, a1)
	}
	if a1 == a3 {
		t.Errorf("two values of one agent went upstream as one key %q", a1)
	}
	if r1 := send(remintedA, value); r1 == a1 {
		t.Errorf("a token minted again for the same grant sent %q as the first token's key %q: the docs say per token", value, r1)
	}
	for _, got := range []string{a1, b1, a3} {
		if strings.Contains(got, value) || strings.Contains(got, vaultedKey) || len(got) != 32 {
			t.Errorf("upstream got Idempotency-Key %q: want 32 hex digits, neither the client's value nor the key", got)
		}
	}
	// Stable: a function of the vaulted key, the grant and the value, not
	// of the process (replicas and a restart agree).
	claims := &token.Claims{Use: token.UseAccess}
	claims.Subject, claims.ID = "alice@example.com", "grant-1"
	if x, y := idempotencyKey("sk-vaulted-1", claims, value), idempotencyKey("sk-vaulted-1", claims, value); x != y {
		t.Errorf("one grant and value: %q, then %q", x, y)
	}
	other2 := *claims
	other2.ID = "grant-2"
	sameSub := idempotencyKey("sk-vaulted-1", &other2, value)
	shifted := *claims
	shifted.Subject, shifted.ID = "alice@example.comgrant-1", "" // the fields' bytes run together the same
	if sameSub == idempotencyKey("sk-vaulted-1", claims, value) || idempotencyKey("sk-vaulted-1", &shifted, value) == idempotencyKey("sk-vaulted-1", claims, value) {
		t.Error("two grants of one subject, or fields that run together alike, share a key")
	}
	// An empty value stays empty: hashed, every empty key of one agent
	// would be one key, and its calls would dedupe into one answer.
	if res, b := h.do("POST", "/v1/chat/completions", agentA, body, "Idempotency-Key", ""); res.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	if reqs := other.requests(); reqs[len(reqs)-1].Header.Get("Idempotency-Key") != "" {
		t.Errorf("an empty Idempotency-Key went upstream as %q", reqs[len(reqs)-1].Header.Get("Idempotency-Key"))
	}
}

// TestForwardHeadersBuiltinListedAgain: a name every upstream gets
// already (Accept, User-Agent, Content-Type, OpenAI-Beta, the SDKs'
// X-Stainless-* telemetry) listed in forward_headers is refused alike,
// as forwarded already: X-Stainless-Lang was accepted silently while
// User-Agent was refused.
func TestForwardHeadersBuiltinListedAgain(t *testing.T) {
	var names []string
	for _, set := range []map[string]bool{builtinForward, stainlessHeaders} {
		for k := range set {
			names = append(names, k, strings.ToLower(k))
		}
	}
	for _, name := range names {
		u := Upstream{Name: "gw", URL: "https://gw.example/v1", ForwardHeaders: []string{name}}
		if err := u.CheckHeaders(); err == nil || !strings.Contains(err.Error(), "forwarded already") {
			t.Errorf("forward_headers [%s]: %v, want it refused as forwarded already", name, err)
		}
	}
	// Another X-Stainless- name is not built in: it may be listed.
	if _, err := newForwardSet([]string{"X-Stainless-Helper-Name"}, "Authorization"); err != nil {
		t.Error(err)
	}
}
