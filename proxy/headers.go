package proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"

	"github.com/pamctl/pamctl/broker/audit/headername"
	"github.com/pamctl/pamctl/broker/token"
)

// What of a client's request headers goes upstream: an allowlist, not a
// list of what is refused. A header goes only when its name is one the
// official OpenAI SDKs (Python, JavaScript, the Agents SDKs on top of
// them) send and an upstream may use (builtinForward, and the X-Stainless-
// telemetry the SDKs' generator adds), or one the operator listed for the
// upstream (Upstream.ForwardHeaders), and when forwardRefusal has nothing
// against the name. Everything else is dropped: a gateway in front of a
// provider reads credentials (Helicone-Auth, X-Auth-Token), billing and
// project selectors (X-Goog-User-Project, OpenAI-Project), client address
// claims (X-ClientIP) and routing hints (X-Model, Azureml-Model-
// Deployment: another model than the one the grant's scope covers) under
// names no rule of thumb enumerates. docs/rules-and-masking.md, "What of a
// request reaches the upstream", says why each entry is here.

// builtinForward are the client headers every upstream gets, canonical.
var builtinForward = map[string]bool{
	"Accept":       true, // every SDK: application/json
	"User-Agent":   true, // OpenAI/Python x, OpenAI/JS x, Agents/Python x: providers' support asks for it
	"Content-Type": true, // a JSON body's is set by pamctl; an endpoint: route's multipart body needs the client's boundary
	"Openai-Beta":  true, // assistants=v2, realtime=v1: selects an API version of the same route
	// Not Idempotency-Key: every agent shares the upstream's vaulted key,
	// so a gateway keeping idempotency keys per API key would answer one
	// agent with another's answer when it names that agent's key. The
	// SDKs generate one but send it nowhere; forward_headers may list it,
	// and then it goes as idempotencyKey makes it, per token.
}

// idempotencyHeader is the one forwarded header whose value is not the
// client's: see idempotencyKey.
const idempotencyHeader = "Idempotency-Key"

// idempotencyKey is what goes upstream for a client's Idempotency-Key
// value v: 32 hex digits of HMAC-SHA256, keyed by the call's vaulted key,
// of the token's subject (the grant's) and id (jti) and v, each
// length-prefixed: per token, not per grant. A retry with the same token
// and value sends the same key, so an agent's retries dedupe; two tokens
// sending one value (two agents', or one grant's minted twice with
// `pamctl token`) never collide at a gateway that keeps idempotency keys
// per API key, which every agent shares; the upstream never sees the
// client's value. Keyed by the vaulted
// key rather than a per-process secret, replicas sharing the vault and a
// restarted proxy agree (a retry lands wherever the balancer sends it);
// the key's holder learns nothing from it it could not compute, and a
// rotated key starts new ones. A new token starts new ones too.
func idempotencyKey(key string, claims *token.Claims, v string) string {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte("pamctl idempotency-key v1"))
	var sub, jti string
	if claims != nil {
		sub, jti = claims.Subject, claims.ID
	}
	var n [8]byte
	for _, s := range []string{sub, jti, v} {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		mac.Write(n[:])
		mac.Write([]byte(s))
	}
	return hex.EncodeToString(mac.Sum(nil)[:16])
}

// stainlessHeaders are the SDK telemetry headers the OpenAI SDKs' generator
// (Stainless) adds, which OpenAI's API reads for its statistics and retry
// accounting: listed by name, not admitted by prefix, so the allowlist
// stays one (a name under the prefix a gateway read would otherwise go).
// X-Stainless-Helper-Method is not here: forwardRefusal refuses it (it
// names a method), and it is only telemetry.
var stainlessHeaders = map[string]bool{
	"X-Stainless-Lang": true, "X-Stainless-Package-Version": true, "X-Stainless-Os": true, "X-Stainless-Arch": true,
	"X-Stainless-Runtime": true, "X-Stainless-Runtime-Version": true, "X-Stainless-Async": true,
	"X-Stainless-Retry-Count": true, "X-Stainless-Read-Timeout": true, "X-Stainless-Timeout": true,
	"X-Stainless-Raw-Response": true, "X-Stainless-Poll-Helper": true, "X-Stainless-Custom-Poll-Interval": true,
	"X-Stainless-Helper": true,
}

// maxForwardedHeader bounds the bytes of one forwarded client header,
// all its lines together: the SDKs send a few dozen bytes each, and an
// upstream that refuses a larger header (431) would be handed one the
// agent chose.
const maxForwardedHeader = 4 << 10

// maxForwardedHeaders bounds the bytes of all forwarded client headers
// together (names and values): each may take maxForwardedHeader, and the
// lists hold a few dozen names.
const maxForwardedHeaders = 16 << 10

// forwardSet is what one upstream takes from its clients' headers.
type forwardSet struct {
	extra map[string]bool // the operator's forward_headers, canonical
	// reserved are the headers pamctl sets for this upstream (the key's
	// headers): never the client's, whatever the lists say.
	reserved map[string]bool
}

// allows reports whether a client header named k goes upstream. Every
// request's headers pass here: the listed names passed forwardRefusal
// when the set was made (the built-in ones in a test).
func (f *forwardSet) allows(k string) bool {
	ck := http.CanonicalHeaderKey(k) // no copy: the server canonicalized it
	return !f.reserved[ck] && (builtinForward[ck] || stainlessHeaders[ck] || f.extra[ck])
}

// forwardRefusal says why a header named k never goes from a client to an
// upstream, built in or configured, or "" when nothing is against it. Case
// and '_' are folded, as CGI-style servers fold them.
//
// The refusal is by classes of names, each a set of words: a gateway in
// front of a provider trusts the hop before it (pamctl) for who the caller
// is, where it connects from, where the call goes, whose account it is
// billed to and whether a stored answer may serve it, under names no list
// enumerates; and a gateway's own control namespace (vendorNamespace) as
// a whole, since what it does with its headers is not pamctl's to know.
// Names are not required to have a positive shape (a label vocabulary
// such as tag, name, id): the dangerous names hold those words too
// (X-User-Id, X-Consumer-Username), so such a shape would refuse little
// the classes do not; the operator's list is the allowlist, the classes
// keep it to labels.
func forwardRefusal(k string) string {
	switch {
	case k == "" || foldableName(k):
		return "a forwarded header's name holds only ASCII letters, digits and '-' (a server that reads headers as CGI does folds '_', '.' and the like into '-', so the name would be another header there)"
	case framingHeader(k):
		return "it is hop-by-hop or framing (connection, length, encoding, digest, ranges, Host): pamctl sets those itself for the body it checked"
	case ownHeader(k):
		return "pamctl sets it itself (its request id, its trace context, the configured organization and project)"
	case len(k) >= len("sec-") && foldedEqual(k[:len("sec-")], "sec-"):
		return whySec
	case accountName(k) && !credentialName(k): // an account's key (Ocp-Apim-Subscription-Key) is a credential
		return whyAccount
	case identityName(k):
		return whyIdentity
	case credentialName(k):
		return "it is named as a credential: only the vaulted key goes upstream (use key_header or extra_key for a gateway's key)"
	case addressClaim(k):
		return whyAddress
	case routeOverride(k) || routingName(k):
		return whyRouting
	case loggingName(k):
		return whyLogging
	case cacheName(k):
		return whyCache
	case traceName(k):
		return whyTrace
	case timeoutName(k):
		return whyTimeout
	case vendorNamespace(k):
		return whyVendor
	}
	return ""
}

const (
	whySec      = "it is a header only browsers and handshakes set (Sec-Fetch-*, Sec-WebSocket-*, Sec-CH-*), which servers trust as such because scripts cannot set it: an agent's copy would claim a browser's context it does not have"
	whyIdentity = "it asserts an identity (a user, principal, group, role, consumer, or one to impersonate): a gateway trusts that from the hop before it, which is pamctl, and pamctl never checked it (the grant's subject is in the audit trail)"
	whyAddress  = "it claims a client address or origin: the upstream's client is the proxy, and pamctl never checked the claim"
	whyRouting  = "it may select another route, API version, model, deployment or upstream than the one pamctl checked against the grant's scope, or have a gateway retry, mirror or redirect the call"
	whyAccount  = "it selects an organization, project, billing account or rate limit: set upstreams[].organization or project instead"
	whyLogging  = "it turns a gateway's logging, debugging, auditing or redaction of the call on or off (Helicone-Omit-Request, X-Portkey-Debug): what the operator's gateway records is the operator's to decide, not the agent's"
	whyCache    = "it steers a gateway's cache, deduplication or per-request controls (Cache-Control, Helicone-Cache-*, Cf-Aig-Skip-Cache): every agent shares the vaulted key, so a cache keyed on it would hand one agent another's answer"
	whyTrace    = "it carries trace context or a tracing decision (a trace or span id, B3, Datadog, Jaeger, Sentry, sampling or debug flags): pamctl sets the call's trace context itself (traceparent), and a client's could force a gateway's or tracer's sampling or debug mode, or attach the call to another trace; label calls under a name without trace, span or sampling (X-Correlation-Id, X-Run-Label)"
	whyTimeout  = "it sets a timeout or deadline: a gateway that times the call out on the agent's word may retry it (a second call pamctl counted once) or fall back to another model or provider than the one pamctl checked against the grant's scope; the upstream's timeout is upstreams[].timeout"
	whyVendor   = "it is in the control namespace of a gateway, cloud front door, framework or provider API in front of the model (X-Portkey-*, X-Litellm-*, Helicone-*, Cf-*, X-Kong-*, Ocp-Apim-*, X-Ms-*, X-Amzn-*, X-Goog-*, Openai-* but OpenAI-Beta, Anthropic-*, Langfuse-*, X-Title, ...): pamctl cannot know what that gateway does with its own control headers (route, retry, time out, bill or attribute the call, log it or not), so no client's goes, and there is no override on purpose: set such a header at the gateway, or label calls under a name of your own (X-Agent-Name, X-Run-Label)"
)

// containsAnyFolded reports whether k holds one of subs (folded).
func containsAnyFolded(k string, subs ...string) bool {
	for _, s := range subs {
		if containsFolded(k, s) {
			return true
		}
	}
	return false
}

// framingHeader: hop-by-hop headers, framing and what only the proxy may
// decide of the transfer: the body's own headers (Content-* but
// Content-Type, which the SDKs send and pamctl sets for a JSON body) and
// its digests, which describe the body the client sent, not the one
// pamctl checked and masked.
func framingHeader(k string) bool {
	switch ck := http.CanonicalHeaderKey(strings.ReplaceAll(k, "_", "-")); ck {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Host",
		"Content-Length", "Content-Encoding", "Accept-Encoding", "Expect", "Range", "If-Range", "Via", "Max-Forwards":
		return true
	case "Content-Type":
		return false
	default:
		return strings.HasPrefix(ck, "Content-") || headername.AnyWord(headername.Words(k), "digest")
	}
}

// ownHeader: the headers pamctl sets on every forwarded call.
func ownHeader(k string) bool {
	switch http.CanonicalHeaderKey(strings.ReplaceAll(k, "_", "-")) {
	case "X-Request-Id", "Traceparent", "Tracestate", "Baggage", "Openai-Organization", "Openai-Project":
		return true
	}
	return len(k) >= len("pamctl-") && foldedEqual(k[:len("pamctl-")], "pamctl-")
}

// credentialName reports a name under which a server may take a
// credential (headername.Credential), but Idempotency-Key, which the
// proxy makes per token (idempotencyKey).
func credentialName(k string) bool {
	return !foldedEqual(k, "idempotency-key") && headername.Credential(k)
}

// identityName reports a name that asserts who the caller is, what it may
// do, or whom it acts as: the headers authenticating proxies set for the
// services behind them (X-Remote-User, X-Forwarded-User, X-Auth-Request-
// Email, X-Ms-Client-Principal, X-Amzn-Oidc-Identity, X-Consumer-Id,
// X-Kong-Consumer), Kubernetes' impersonation (Impersonate-User,
// -Group) and a gateway's per-user keys (Helicone-User-Id). User-Agent,
// which names software, is not one.
func identityName(k string) bool {
	ws := headername.Words(k)
	for i, w := range ws {
		if strings.Contains(w, "user") && !(w == "user" && i+1 < len(ws) && ws[i+1] == "agent") {
			return true
		}
	}
	for i, w := range ws {
		next := ""
		if i+1 < len(ws) {
			next = ws[i+1]
		}
		switch {
		case (w == "author" || w == "authors" || w == "creator") && (next == "id" || next == "ids"):
			return true // X-Author-Id: whose call, not a label
		case w == "client" && (next == "verify" || next == "dn" || next == "cn" || next == "s" || next == "i" || next == "issuer" ||
			next == "fingerprint" || next == "serial" || next == "san" || next == "spiffe" || next == "verified"):
			return true // a TLS-terminating proxy's client certificate claims (X-Client-Verify, X-Client-Dn)
		}
	}
	return headername.WordHolds(ws, "principal", "impersonat", "consumer", "identity", "subject", "email", "claim", "behalf",
		"caller", "login", "member", "owner", "group", "permission", "privilege", "entitlement", "admin", "scope", "sudo",
		"runas", "actas", "spiffe", "svid") ||
		headername.AnyWord(ws, "role", "roles", "actor", "actors", "as", "sub", "uid", "upn", "dn", "cn")
}

// addressClaim reports whether a client's header named k claims a client
// address, connection or origin (X-Real-IP, True-Client-IP,
// CF-Connecting-IP, X-ClientIP, X-Azure-ClientIP, X-Forwarded-*,
// Forwarded, X-Remote-Addr, X-Envoy-External-Address, X-Peer-Addr,
// CF-IPCountry, a port, Origin, Referer): the upstream's client is the
// proxy, and a gateway may key allow-lists or rate limits on such a claim,
// which pamctl never checked.
func addressClaim(k string) bool {
	if containsAnyFolded(k, "forwarded", "remote-addr", "client-addr", "connecting", "country", "latitude", "longitude", "continent") {
		return true
	}
	ws := headername.Words(k)
	if headername.AnyWord(ws, "addr", "address", "peer", "port", "real", "remote", "origin", "referer", "referrer", "geo", "city") {
		return true
	}
	for _, word := range ws { // "ip…" (IP, IPv6, IPCountry) as a word, or "ip"/"addr" after a word such as client
		if strings.HasPrefix(word, "ip") {
			return true
		}
		for _, suffix := range []string{"ip", "ipv4", "ipv6", "addr", "address"} {
			if strings.HasSuffix(word, suffix) && addressOwner(word[:len(word)-len(suffix)]) {
				return true
			}
		}
	}
	return false
}

// routingName reports a name a gateway may route by: a model, deployment,
// engine, provider, region or target, a host, URL, base URL or path, a
// gateway's config, an API version (Api-Version, X-Ms-Version; not the
// version of the caller's own software, X-Stainless-Package-Version), the
// original or rewritten request (X-Original-Host, X-Rewrite-Url), retries
// (all but the SDKs' X-Stainless-Retry-Count telemetry),
// mirrors, shadows, canaries and redirects (X-Envoy-Retry-On,
// Helicone-Retry-Enabled: a gateway's retry is a second call pamctl
// counted once), and every Envoy control header (X-Envoy-*: Envoy obeys
// them from a hop it trusts).
func routingName(k string) bool {
	return containsAnyFolded(k, routingWords...) || routingWordsOf(k)
}

// routingWords are what routingName finds anywhere in a name.
var routingWords = []string{"model", "deploy", "engine", "route", "routing", "upstream", "provider", "backend", "target",
	"region", "zone", "cluster", "host", "url", "uri", "path", "endpoint", "config", "override", "destination", "fallback", "tier", "priority",
	"apibase", "rewrite", "redirect", "original", "shadow", "mirror", "canary"}

// routingKeyName is routingName for a key header, with routingWords as
// whole words: a gateway's documented key header may hold one inside
// another word ("uri" in X-Amz-Security-Token, "route" in
// OpenRouter-Key), and a key header is pamctl's to set, not a client's
// to smuggle a selector in.
func routingKeyName(k string) bool {
	return headername.AnyWord(headername.Words(k), routingWords...) || routingWordsOf(k)
}

// routingWordsOf is routingName's rules by word.
func routingWordsOf(k string) bool {
	ws := headername.Words(k)
	if headername.AnyWord(ws, "envoy", "base", "proxy") {
		return true
	}
	for i, w := range ws {
		switch w {
		case "version", "versions", "ver":
			if i == 0 || !headername.AnyWord(ws[i-1:i], "package", "runtime", "sdk", "client", "app", "agent", "library", "lib", "lang", "os", "build", "browser") {
				return true
			}
		case "retry", "retries":
			// The SDKs' telemetry of their own attempt
			// (X-Stainless-Retry-Count) only: under another name a
			// count may be how many times a gateway is to retry.
			if !(i == 2 && ws[0] == "x" && ws[1] == "stainless" && len(ws) == 4 && ws[3] == "count") {
				return true
			}
		}
	}
	return false
}

// accountName reports a name that selects whose account a call is billed
// or kept under, or the limits it counts against (a team: LiteLLM's and
// Portkey's have budgets).
func accountName(k string) bool {
	if containsAnyFolded(k, "organization", "organisation", "project", "billing", "account", "tenant", "workspace", "subscription", "customer", "quota", "budget", "limit") {
		return true
	}
	return headername.AnyWord(headername.Words(k), "org", "orgid", "cost", "spend", "team", "teams", "teamid")
}

// loggingName reports a name that turns a gateway's record of the call
// on or off: Helicone-Omit-Request/-Response, X-Portkey-Debug (false: not
// logged), a log level, an audit or redaction switch.
func loggingName(k string) bool {
	return headername.AnyWord(headername.Words(k), "omit", "log", "logs", "logging", "debug", "audit", "redact", "redaction")
}

// cacheName reports a name that steers a cache or deduplication: Cache-
// Control, Pragma, conditional requests (If-None-Match and the like), a
// gateway's cache (Helicone-Cache-Enabled, X-Portkey-Cache-*), TTLs,
// replays, idempotency keys other than the Idempotency-Key forwardSet
// makes per token (X-Idempotency-Key: a gateway deduping on it would
// replay one answer to every agent). Every agent shares the vaulted key, so a cache keyed on it
// would hand one agent another's answer (the reason Idempotency-Key is
// not built in).
func cacheName(k string) bool {
	ws := headername.Words(k)
	return containsAnyFolded(k, "cache", "pragma", "dedup", "replay", "surrogate") || headername.AnyWord(ws, "ttl") || ws[0] == "if" ||
		containsFolded(k, "idempoten") && !foldedEqual(k, "idempotency-key")
}

// traceName reports a name that carries trace context or a tracing
// decision: a name holding trace (X-Amzn-Trace-Id, X-Cloud-Trace-Context,
// Uber-Trace-Id, Sentry-Trace, X-Client-Trace-Id, which Envoy forces
// tracing on), baggage, or a tracer's name (Datadog, Zipkin, Jaeger's
// uberctx-*, Sentry, New Relic, Instana, Dynatrace, OpenTelemetry), the
// word b3 (X-B3-Sampled, -Flags, B3), span, sampled, sampling, sampler,
// otel or sw8 (SkyWalking), and Application Insights' Request-Context and
// Correlation-Context. pamctl sets the call's trace context itself.
func traceName(k string) bool {
	if containsAnyFolded(k, "trace", "baggage", "zipkin", "jaeger", "uberctx", "datadog", "sentry", "newrelic", "instana", "dynatrace", "opentelemetry", "opentracing") {
		return true
	}
	if foldedEqual(k, "request-context") || foldedEqual(k, "correlation-context") {
		return true
	}
	return headername.AnyWord(headername.Words(k), "b3", "span", "spans", "spanid", "parentspanid", "sampled", "sampling", "sampler", "samplerate", "otel", "sw8")
}

// timeoutName reports a name that sets a timeout or deadline (X-Litellm-
// Timeout, X-Portkey-Request-Timeout, Grpc-Timeout, X-Request-Timeout):
// a gateway's timeout triggers its retry or fallback. The SDKs' telemetry
// of their own timeout (X-Stainless-Timeout, -Read-Timeout) is not one.
func timeoutName(k string) bool {
	return containsAnyFolded(k, "timeout", "deadline") && !stainlessHeaders[http.CanonicalHeaderKey(k)]
}

// vendorPrefixes are the control namespaces of what sits in front of a
// model API: LLM gateways and their observability (Portkey, LiteLLM,
// Helicone, OpenRouter, Braintrust's proxy, Langfuse, LangSmith, Bifrost), API
// gateways and meshes (Kong, Envoy, Istio, Tyk, Apigee, Gravitee, Azure
// API Management), clouds and front doors (Cloudflare, Azure, AWS,
// Google, Akamai, Fastly, Vercel), frameworks' internal headers (Next.js:
// X-Middleware-Subrequest skips its middleware, CVE-2025-29927), the
// providers' own APIs, and gRPC's. Lower case, each ending in '-'.
var vendorPrefixes = []string{
	"x-portkey-", "x-litellm-", "litellm-", "helicone-", "x-helicone-", "x-openrouter-", "x-bt-",
	"langfuse-", "x-langfuse-", "langsmith-", "x-langsmith-",
	"x-kong-", "kong-", "x-envoy-", "x-istio-", "x-tyk-", "x-apigee-", "x-gravitee-", "ocp-apim-", "apim-",
	"cf-", "x-ms-", "x-azure-", "x-arr-", "azureml-", "x-amzn-", "x-amz-", "x-aws-", "x-bedrock-",
	"x-goog-", "x-google-", "x-appengine-", "akamai-", "x-akamai-", "fastly-", "x-fastly-", "x-vercel-",
	"x-middleware-", "x-nextjs-", "x-invoke-", "x-bf-",
	"openai-", "x-openai-", "anthropic-", "x-anthropic-",
	"grpc-",
}

// vendorNamespace reports a name under a vendor's control namespace
// (vendorPrefixes; and X-Title, OpenRouter's app attribution beside
// HTTP-Referer), but OpenAI-Beta, which the SDKs send. Refused to clients
// as a whole: a gateway's control headers route, retry, time out, bill,
// attribute (X-Portkey-Metadata's _user, X-Litellm-Tags) or stop logging
// a call (X-Litellm-Disable-Callbacks) under names no list of words
// foresees, and pamctl cannot know which. A key header under one
// (X-Portkey-Api-Key, Cf-Aig-Authorization) is set by pamctl, not the
// client, and is not refused for it.
func vendorNamespace(k string) bool {
	if foldedEqual(k, "openai-beta") {
		return false
	}
	if foldedEqual(k, "x-title") {
		return true
	}
	for _, p := range vendorPrefixes {
		if len(k) >= len(p) && foldedEqual(k[:len(p)], p) {
			return true
		}
	}
	return false
}

// CheckHeaders reports every problem of u's header settings
// (ForwardHeaders, KeyHeader, ExtraKey): what New would refuse, for
// `pamctl config check`. It names headers and vault entries, never a
// key.
func (u Upstream) CheckHeaders() error {
	var problems []string
	if u.KeyHeader != "" {
		if why := keyHeaderRefusal(u.KeyHeader); why != "" {
			problems = append(problems, fmt.Sprintf("key_header: %q cannot carry the key: %s", u.KeyHeader, why))
		}
	}
	key, extra, _ := keyHeaders(u)
	if u.ExtraKey != nil {
		switch {
		case u.ExtraKey.Header == "":
			problems = append(problems, "extra_key: header (the header the second key goes in) is required")
		case keyHeaderRefusal(u.ExtraKey.Header) != "":
			problems = append(problems, fmt.Sprintf("extra_key: header %q cannot carry a key: %s", u.ExtraKey.Header, keyHeaderRefusal(u.ExtraKey.Header)))
		case extra == key || key == "" && extra == "Authorization":
			problems = append(problems, fmt.Sprintf("extra_key: header %q is the header the provider key goes in (key_header): pick another", u.ExtraKey.Header))
		}
		if u.ExtraKey.KeyName == "" {
			problems = append(problems, "extra_key: key (the vault entry holding the second key) is required")
		}
	}
	if _, err := newForwardSet(u.ForwardHeaders, "Authorization", key, extra); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return nil
}

// keyHeaders is where u's keys go, canonical: the provider key's header
// ("" for Authorization: Bearer), the extra key's header and vault entry
// ("" without one).
func keyHeaders(u Upstream) (key, extra, extraEntry string) {
	if u.KeyHeader != "" && !strings.EqualFold(u.KeyHeader, "Authorization") {
		key = http.CanonicalHeaderKey(u.KeyHeader)
	}
	if u.ExtraKey != nil {
		extra, extraEntry = http.CanonicalHeaderKey(u.ExtraKey.Header), u.ExtraKey.KeyName
	}
	return key, extra, extraEntry
}

// keyHeaderRefusal says why a header named k cannot carry a vaulted key,
// or "". A key header must be named as a credential (credentialName: it
// is one, and proxies and gateways on the way treat such names as
// secrets), but not as a cookie (intermediaries log and parse those), and
// not as anything else a proxy or gateway on the way reads or logs: an
// identity, a client address, a route, a cache control or idempotency
// key, a logging, debug or audit switch, a trace or correlation id, a
// timeout (X-Forwarded-Authorization, X-Auth-Request-User, X-Cache-Key,
// X-Idempotency-Key, X-Debug-Token, X-Trace-Token). It may not be
// hop-by-hop or framing (a proxy on the way drops or reads it), pamctl's
// own, a header clients send that the proxy forwards, a response's
// (WWW-Authenticate) or one browsers and handshakes set (Sec-*). An account word
// beside a credential's names the account's key (Ocp-Apim-Subscription-
// Key), and a vendor's control namespace (vendorNamespace) is refused to
// clients, not to pamctl (X-Portkey-Api-Key, Cf-Aig-Authorization):
// neither refuses a key header. Last, the name must end in the secret's
// word (headername.NamesTheSecret): not X-Amz-Credential, whose value in
// request signing is the key's id and scope, nor X-Key-Name or
// X-Token-Type, which name what sits beside a key.
func keyHeaderRefusal(k string) string {
	ck := http.CanonicalHeaderKey(k)
	const pick = ": put the key in the header the gateway documents for it (Authorization, api-key, X-Api-Key, Ocp-Apim-Subscription-Key, Helicone-Auth, Cf-Aig-Authorization, ...)"
	switch {
	case foldableName(k):
		return "a header name holds only ASCII letters, digits and '-'"
	case framingHeader(k) || ck == "Proxy-Authorization" || ck == "Proxy-Authenticate":
		return "it is hop-by-hop or framing (connection, length, encoding, Host): a proxy on the way would drop or read it"
	case ownHeader(k):
		return "pamctl sets it itself (its request id, its trace context, the configured organization and project)"
	case builtinForward[ck] || strings.HasPrefix(ck, "X-Stainless-"):
		return "it is a header the SDKs send and the proxy forwards (Accept, User-Agent, Content-Type, OpenAI-Beta, X-Stainless-*)"
	case responseOnly(ck) || strings.HasPrefix(ck, "Sec-"):
		return "it is a response header (WWW-Authenticate, Authentication-Info) or one browsers and handshakes set (Sec-*: Sec-WebSocket-Key), which a proxy on the way reads as such" + pick
	case containsFolded(k, "cookie"):
		return "it is a cookie header, which proxies log and parse as name=value pairs" + pick
	case !credentialName(k):
		return "it is not named as a credential (auth, key, token, secret, ...): proxies and gateways on the way log other names, or read them as something else (an address, a cache control, a location)" + pick
	case headername.Secret(k) && !headername.CredentialID(k) && !headername.SecretWordWhole(k):
		return "its credential word is part of another word (X-Bypass, X-Passenger, X-Monkey, X-Authority, X-Tokenizer): proxies and gateways read and log such names as what they say, not as a secret" + pick
	case quantityName(k):
		return "it is also named as a count, limit or quantity of tokens (X-Max-Tokens, X-Token-Count, X-Token-Limit), which gateways log as usage" + pick
	case !headername.Secret(k) || headername.CredentialID(k):
		return "it is named after a credential's context or as a credential's id (a session, a nonce, a signature or signing parameter, a certificate, a one-time code, a key's or token's id: X-Session-Id, X-Nonce, X-Amz-Date, X-Signature, X-Key-Id), not as the secret itself: proxies and gateways log such values (a session id groups calls in a dashboard, a nonce goes to a replay cache, AWS echoes its signing headers in its errors) or read them as what they name" + pick
	case identityName(k):
		return "it is also named as an identity (a user, principal, group, role), which a gateway reads as who the caller is" + pick
	case addressClaim(k):
		return "it is also named as a client address (forwarded, IP, peer, origin), which proxies log and rewrite" + pick
	case routeOverride(k) || routingKeyName(k):
		return "it is also named as a route, version or upstream selector, which a gateway reads to pick where the call goes" + pick
	case cacheName(k):
		return "it is also named as a cache control or idempotency key, which caches and gateways log and key stored answers on" + pick
	case loggingName(k):
		return "it is also named as a logging, debugging, audit or redaction switch, which a gateway reads as one and may log" + pick
	case traceName(k) || headername.AnyWord(headername.Words(k), "correlation", "correlationid"):
		return "it is also named as a trace or correlation id, which proxies and tracers log and propagate" + pick
	case timeoutName(k):
		return "it is also named as a timeout, which a gateway reads as one" + pick
	case !headername.NamesTheSecret(k):
		return "it names a credential as a whole or something about the secret (X-Amz-Credential and X-Goog-Credential carry the key's id and scope in request signing; X-Key-Name, X-Token-Type, X-Token-Expires, X-Key-Hash name, type, date or fingerprint it), not the secret itself: a key header's name ends in the secret's word (...-Key, ...-Token, ...-Secret, Authorization, ...-Client-Id), and proxies and gateways log the others as what they name" + pick
	case dataKeyName(k):
		return "it names a key that is data, not a credential (a public, partition, shard, sort, range, hash, row, object, lookup, request, message or encryption key: X-Public-Key, X-Partition-Key, X-Encryption-Key), which gateways log, route on or use as what it says" + pick
	}
	return ""
}

// dataKeyName reports a name whose key is data, not a credential: a
// public key, a partition, shard, sort, range, hash, row or object key, a
// lookup, request or message key, an encryption key (Azure Storage's
// x-ms-encryption-key, a customer-provided key it encrypts with): gateways log such values, route on them
// or use them as what they say.
func dataKeyName(k string) bool {
	return headername.AnyWord(headername.Words(k), "public", "pub", "partition", "shard", "sort", "range", "hash", "row", "object",
		"lookup", "request", "message", "encryption", "encrypt")
}

// quantityName reports a name that counts or bounds something (X-Max-
// Tokens, X-Token-Count, X-Tokens, X-Token-Limit, X-Rate-Limit): gateways
// log such values as usage.
func quantityName(k string) bool {
	return headername.AnyWord(headername.Words(k), "tokens", "max", "min", "count", "counts", "limit", "limits", "usage", "quota", "budget", "remaining", "total")
}

// responseOnly reports a canonical name only a response carries: the
// authentication challenges and their info.
func responseOnly(ck string) bool {
	switch ck {
	case "Www-Authenticate", "Authentication-Info", "Proxy-Authentication-Info":
		return true
	}
	return false
}

// newForwardSet checks an upstream's forward_headers and its key headers
// and builds what the upstream takes from its clients.
func newForwardSet(extra []string, keyHeaders ...string) (*forwardSet, error) {
	f := &forwardSet{extra: map[string]bool{}, reserved: map[string]bool{}}
	var problems []string
	for _, k := range keyHeaders {
		if k != "" {
			f.reserved[http.CanonicalHeaderKey(k)] = true
		}
	}
	for _, k := range extra {
		if why := forwardRefusal(k); why != "" {
			problems = append(problems, fmt.Sprintf("forward_headers: %q cannot be forwarded: %s", k, why))
			continue
		}
		ck := http.CanonicalHeaderKey(k)
		if f.reserved[ck] {
			problems = append(problems, fmt.Sprintf("forward_headers: %q carries a vaulted key (Authorization, key_header or extra_key.header): a client's value never goes", k))
			continue
		}
		if f.extra[ck] || builtinForward[ck] || stainlessHeaders[ck] {
			problems = append(problems, fmt.Sprintf("forward_headers: %q is listed twice or is forwarded already (Accept, User-Agent, Content-Type, OpenAI-Beta and the SDKs' X-Stainless-* telemetry go to every upstream): remove the entry", k))
			continue
		}
		f.extra[ck] = true
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return f, nil
}

// perCaller replaces each value of a forwarded Idempotency-Key in h (the
// client's headers f allows) by idempotencyKey of it under the call's
// vaulted key and token. An empty value stays empty: hashed, all of one
// agent's empty keys would be one key, and its calls one answer.
func (f *forwardSet) perCaller(h http.Header, key string, claims *token.Claims) {
	if !f.extra[idempotencyHeader] {
		return
	}
	for k, vs := range h {
		if http.CanonicalHeaderKey(k) != idempotencyHeader {
			continue
		}
		out := make([]string, len(vs))
		for i, v := range vs {
			if v != "" {
				out[i] = idempotencyKey(key, claims, v)
			}
		}
		h[k] = out
	}
}

// oversized describes the client headers f would forward when one of
// them (its lines together) passes maxForwardedHeader or all of them
// (names and values) pass maxForwardedHeaders, or "". It names a header
// only by a name f allows (letters, digits and '-').
func (f *forwardSet) oversized(h http.Header) string {
	total := 0
	for k, vs := range h {
		if !f.allows(k) {
			continue
		}
		n := 0
		for _, v := range vs {
			n += len(v)
		}
		if n > maxForwardedHeader {
			return fmt.Sprintf("The %s header is %d bytes; the proxy forwards at most %d bytes of one header to the upstream. Send it shorter (the OpenAI SDKs send a few dozen bytes).",
				http.CanonicalHeaderKey(k), n, maxForwardedHeader)
		}
		total += n + len(k)*len(vs)
	}
	if total > maxForwardedHeaders {
		return fmt.Sprintf("The headers the proxy forwards to the upstream are %d bytes together; it forwards at most %d. Send fewer X-Stainless-* or forwarded headers (the OpenAI SDKs send under 1 KiB).",
			total, maxForwardedHeaders)
	}
	return ""
}

// setKeys puts the call's vaulted keys in h, in the upstream's headers,
// replacing whatever was there: the provider key as
// "Authorization: Bearer <key>" or alone in KeyHeader, and the extra key
// alone in its header.
func (u *upstream) setKeys(h http.Header, key, extra string) {
	h.Del("Authorization")
	if u.keyHeader == "" {
		h.Set("Authorization", "Bearer "+key)
	} else {
		h.Set(u.keyHeader, key)
	}
	if u.extraHeader != "" {
		h.Set(u.extraHeader, extra)
	}
}
