package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/link"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/proxy"
	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/rules"
)

// proxyDocument is what the broker hands local proxies: rules, masking
// and upstreams (one source of truth). Limits travel in each token's lim
// claim.
type proxyDocument struct {
	Rules     []rules.Rule     `json:"rules"`
	Masking   MaskingConfig    `json:"masking"`
	Upstreams []UpstreamConfig `json:"upstreams"`
	// Proxy timeouts that the broker's config sets for every proxy.
	Timeout     time.Duration `json:"timeout"`
	HoldTimeout time.Duration `json:"hold_timeout"`
	// MetricModels are the model names the proxies' metrics label on
	// their own (those the broker's policies name); others are "other".
	MetricModels []string `json:"metric_models,omitempty"`
}

// proxyConfigOf renders cfg's document and its version.
func proxyConfigOf(cfg *Config) (link.ProxyConfig, error) {
	raw, err := json.Marshal(proxyDocument{Rules: cfg.Rules, Masking: cfg.Masking, Upstreams: cfg.Upstreams,
		Timeout: cfg.Proxy.Timeout, HoldTimeout: cfg.Proxy.HoldTimeout, MetricModels: metricModels(cfg)})
	if err != nil {
		return link.ProxyConfig{}, fmt.Errorf("proxy config: %w", err)
	}
	return link.ProxyConfig{Version: link.Version(raw), Document: raw}, nil
}

// decodeProxyDocument applies a broker's document to a copy of the local
// config and checks it compiles; models are the document's MetricModels.
func decodeProxyDocument(local *Config, pc link.ProxyConfig) (_ *Config, models []string, _ error) {
	var doc proxyDocument
	if err := json.Unmarshal(pc.Document, &doc); err != nil {
		return nil, nil, err
	}
	cfg := *local
	cfg.Rules, cfg.Masking, cfg.Upstreams = doc.Rules, doc.Masking, doc.Upstreams
	if doc.Timeout > 0 {
		cfg.Proxy.Timeout = doc.Timeout
	}
	if doc.HoldTimeout > 0 {
		cfg.Proxy.HoldTimeout = doc.HoldTimeout
	}
	if cfg.Masking.Response.Default == "" {
		cfg.Masking.Response.Default = mask.ActionMask
	}
	if _, err := cfg.Inspection(); err != nil {
		return nil, nil, err
	}
	return &cfg, doc.MetricModels, nil
}

// proxyGrants checks proxy:serve grants for the registry.
type proxyGrants struct{ b *broker.Service }

func (g proxyGrants) ProxyGrant(ctx context.Context, who link.Caller, id string) (time.Time, error) {
	r, err := g.b.Get(ctx, broker.Identity{Subject: who.Subject, Issuer: who.Issuer}, id)
	if err != nil {
		return time.Time{}, err
	}
	switch {
	case !r.Requester.Same(broker.Identity{Subject: who.Subject, Issuer: who.Issuer}):
		return time.Time{}, fmt.Errorf("%w: grant %s is not yours", link.ErrForbidden, id)
	case r.State != broker.StateApproved || r.ExpiresAt == nil || !time.Now().Before(*r.ExpiresAt):
		return time.Time{}, fmt.Errorf("%w: grant %s is %s, not an approved live grant", link.ErrForbidden, id, r.State)
	case r.Kind != broker.KindAccess:
		return time.Time{}, fmt.Errorf("%w: %s is a held prompt, not a grant", link.ErrForbidden, id)
	case !token.Covers(r.Scopes, link.ScopeServe):
		return time.Time{}, fmt.Errorf("%w: grant %s does not include %s; a policy must grant it to %s", link.ErrForbidden, id, link.ScopeServe, who.Subject)
	}
	// As for a token: the grant counts only while today's policies still
	// give its scopes to its requester, from trusted issuers (a grant the
	// sweep has not ended yet, or one no policy ever gave).
	if ok, why := g.b.StillGranted(r); !ok {
		return time.Time{}, fmt.Errorf("%w: grant %s has ended: %s; a policy must grant %s to %s", link.ErrForbidden, id, why, link.ScopeServe, who.Subject)
	}
	return *r.ExpiresAt, nil
}

// linkKeys serves every vaulted key, and a version that changes with
// every vault set or rm.
type linkKeys struct{ vaultKeys }

func (k linkKeys) ProviderKeys(ctx context.Context) (map[string]string, error) {
	entries, err := k.v.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(entries))
	for _, e := range entries {
		s, err := k.v.Get(ctx, e.Name)
		if errors.Is(err, vault.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[e.Name] = s.Reveal()
	}
	return out, nil
}

func (k linkKeys) KeysVersion(ctx context.Context) (string, error) {
	entries, err := k.v.List(ctx)
	if err != nil {
		return "", err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	h := sha256.New()
	for _, e := range entries {
		fmt.Fprintf(h, "%s\x00%s\x00%d\x00", e.Name, e.Fingerprint, e.Created.UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil)[:8]), nil
}

// remoteHolder sends the proxy role's held calls to the broker.
type remoteHolder struct{ c *link.Client }

func (h remoteHolder) Hold(ctx context.Context, req proxy.HoldRequest) (proxy.HoldDecision, error) {
	in := link.HoldRequest{Grant: req.GrantID, Rule: req.Rule, Approvers: link.Subjects{Users: req.Approvers.Users, Groups: req.Approvers.Groups},
		Model: req.Model, Method: req.Method, Endpoint: req.Endpoint, Excerpt: req.Excerpt, MatchSummary: req.MatchSummary, PromptSHA256: req.PromptSHA256, CallSHA256: req.CallSHA256, Tool: req.Tool, Arguments: req.Arguments}
	if req.Claims != nil {
		in.Claims = *req.Claims
	}
	for _, m := range req.Matches {
		in.Matches = append(in.Matches, link.HeldMatch{Where: m.Where, Text: m.Text})
	}
	for _, a := range req.Approvals {
		in.Approvals = append(in.Approvals, link.HoldApproval{Rule: a.Rule, Approvers: link.Subjects{Users: a.Approvers.Users, Groups: a.Approvers.Groups}})
	}
	d, err := h.c.Hold(ctx, in)
	return proxy.HoldDecision{Approved: d.Approved, ID: d.ID, Reason: d.Reason}, err
}

// brokerHolds takes held calls from local proxies into the broker's
// prompt holds, as the in-process holder does.
func brokerHolds(b *broker.Service) func(context.Context, link.HoldRequest) (link.HoldDecision, error) {
	return func(ctx context.Context, h link.HoldRequest) (link.HoldDecision, error) {
		// The proxy vouches for the token's claims; the broker checks that
		// the grant is a live grant of the subject they name, so a proxy
		// cannot hold calls on a grant under another name. An enrolled
		// proxy that knows a grant's ID and its owner can still raise a
		// hold for it: proxies are trusted as far as the provider keys
		// they are given. A grant of theirs that has ended (the proxy has
		// not heard of its revocation yet) goes to the broker, which
		// refuses the call at once, recorded, and tells the agent the
		// grant ended (broker.Service.HoldPrompt).
		who := broker.Identity{Subject: h.Claims.Subject, Issuer: h.Claims.IdP}
		g, err := b.Get(ctx, who, h.Grant)
		if err != nil {
			return link.HoldDecision{}, err
		}
		if !g.Requester.Same(who) || g.Kind != broker.KindAccess || g.ApprovedAt == nil {
			return link.HoldDecision{}, fmt.Errorf("%w: grant %s is not a grant of %s", link.ErrForbidden, h.Grant, h.Claims.Subject)
		}
		req := proxy.HoldRequest{GrantID: h.Grant, Claims: &h.Claims, Rule: h.Rule, Approvers: rules.Approvers{Users: h.Approvers.Users, Groups: h.Approvers.Groups},
			Model: h.Model, Method: h.Method, Endpoint: h.Endpoint, Excerpt: h.Excerpt, MatchSummary: h.MatchSummary, PromptSHA256: h.PromptSHA256, CallSHA256: h.CallSHA256, Tool: h.Tool, Arguments: h.Arguments}
		for _, a := range h.Approvals {
			req.Approvals = append(req.Approvals, rules.Approval{Rule: a.Rule, Approvers: rules.Approvers{Users: a.Approvers.Users, Groups: a.Approvers.Groups}})
		}
		for _, m := range h.Matches {
			req.Matches = append(req.Matches, proxy.HeldMatch{Where: m.Where, Text: m.Text})
		}
		d, err := holder{b}.Hold(ctx, req)
		return link.HoldDecision{Approved: d.Approved, ID: d.ID, Reason: d.Reason}, err
	}
}
