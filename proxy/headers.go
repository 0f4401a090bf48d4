package proxy

import (
	"fmt"
	"net/http"
	"strings"
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
	// SDKs generate one but send it nowhere; forward_headers may list it.
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
func forwardRefusal(k string) string {
	switch {
	case k == "" || foldableName(k):
		return "a forwarded header's name holds only ASCII letters, digits and '-' (a server that reads headers as CGI does folds '_', '.' and the like into '-', so the name would be another header there)"
	case framingHeader(k):
		return "it is hop-by-hop or framing (connection, length, encoding, ranges, Host): pamctl sets those itself for the body it checked"
	case ownHeader(k):
		return "pamctl sets it itself (its request id, its trace context, the configured organization and project)"
	case credentialName(k):
		return "it is named as a credential: only the vaulted key goes upstream (use key_header or extra_key for a gateway's key)"
	case addressClaim(k):
		return "it claims a client address: the upstream's client is the proxy, and pamctl never checked the claim"
	case routeOverride(k) || routingName(k):
		return "it may select another route, model, deployment or upstream than the one pamctl checked against the grant's scope"
	case accountName(k):
		return "it selects an organization, project or billing account: set upstreams[].organization or project instead"
	}
	return ""
}

// framingHeader: hop-by-hop headers, framing and what only the proxy may
// decide of the transfer.
func framingHeader(k string) bool {
	switch http.CanonicalHeaderKey(strings.ReplaceAll(k, "_", "-")) {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Host",
		"Content-Length", "Content-Encoding", "Accept-Encoding", "Expect", "Range", "If-Range", "Via", "Max-Forwards":
		return true
	}
	return false
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
// credential: Authorization and its kin (Proxy-Authorization,
// Helicone-Auth, X-Auth-Token), any key but Idempotency-Key (Api-Key,
// X-Api-Key, Ocp-Apim-Subscription-Key, X-Portkey-Virtual-Key), tokens,
// secrets, passwords, cookies and signatures.
func credentialName(k string) bool {
	if foldedEqual(k, "idempotency-key") {
		return false
	}
	for _, w := range []string{"auth", "key", "token", "secret", "passw", "cookie", "credential", "signature", "session"} {
		if containsFolded(k, w) {
			return true
		}
	}
	return false
}

// routingName reports a name a gateway may route by: a model, deployment,
// engine, provider, region or target, a host, URL or path, a gateway's
// config.
func routingName(k string) bool {
	for _, w := range []string{"model", "deploy", "engine", "route", "routing", "upstream", "provider", "backend", "target",
		"region", "zone", "cluster", "host", "url", "uri", "path", "endpoint", "config", "override", "destination", "fallback", "tier", "priority"} {
		if containsFolded(k, w) {
			return true
		}
	}
	return false
}

// accountName reports a name that selects whose account a call is billed
// or kept under.
func accountName(k string) bool {
	for _, w := range []string{"organization", "organisation", "project", "billing", "account", "tenant", "workspace", "subscription", "customer", "quota", "budget"} {
		if containsFolded(k, w) {
			return true
		}
	}
	for rest := k; rest != ""; {
		word, more, _ := strings.Cut(rest, "-")
		if foldedEqual(word, "org") || foldedEqual(word, "orgid") {
			return true
		}
		rest = more
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
// or "". A key header may be named as a credential (it is one); it may
// not be hop-by-hop or framing (a proxy on the way drops or reads it),
// pamctl's own, or a header clients send that the proxy forwards.
func keyHeaderRefusal(k string) string {
	ck := http.CanonicalHeaderKey(k)
	switch {
	case foldableName(k):
		return "a header name holds only ASCII letters, digits and '-'"
	case framingHeader(k) || ck == "Proxy-Authorization" || ck == "Proxy-Authenticate":
		return "it is hop-by-hop or framing (connection, length, encoding, Host): a proxy on the way would drop or read it"
	case ownHeader(k):
		return "pamctl sets it itself (its request id, its trace context, the configured organization and project)"
	case builtinForward[ck] || strings.HasPrefix(ck, "X-Stainless-"):
		return "it is a header the SDKs send and the proxy forwards (Accept, User-Agent, Content-Type, OpenAI-Beta, X-Stainless-*)"
	}
	return ""
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
		if f.extra[ck] || builtinForward[ck] {
			problems = append(problems, fmt.Sprintf("forward_headers: %q is listed twice or is forwarded already", k))
			continue
		}
		f.extra[ck] = true
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(problems, "; "))
	}
	return f, nil
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
