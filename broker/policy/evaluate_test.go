package policy

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func hasReason(d Decision, part string) bool {
	for _, r := range d.Reasons {
		if strings.Contains(r, part) {
			return true
		}
	}
	return false
}

func TestEvaluateExample(t *testing.T) {
	set := loadExample(t)
	lead := Subject{ID: "u-dana", Email: "dana@example.com", Groups: []string{"ml", "ml-leads"}, Issuer: "corp", Kind: KindUser}
	bot := Subject{ID: "repo:acme/support-bot:ref:refs/heads/main", Issuer: "github-actions", Kind: KindService}

	tests := []struct {
		name   string
		who    Subject
		ask    Ask
		want   Decision // compared field by field below, Reasons by substring
		reason []string
	}{
		{
			name: "approval needed, default ttl",
			who:  alice, ask: Ask{Scopes: []string{"model:gpt-4o"}},
			want: Decision{Allow: true, Scopes: []string{"model:gpt-4o"}, TTL: 15 * time.Minute, MaxTTL: time.Hour,
				NeedsApproval: true, Approvers: Subjects{Groups: []string{"security"}}, Count: 1, PendingTTL: time.Hour,
				Limits: Limits{RPM: 60, Tokens: 200000}, Policies: []string{"ml-models"}},
			reason: []string{"policy ml-models requires 1 approval from groups [security], within 1h"},
		},
		{
			name: "self-service scope picks the lenient policy",
			who:  alice, ask: Ask{Scopes: []string{"model:gpt-4o-mini"}, TTL: 20 * time.Minute},
			want: Decision{Allow: true, Scopes: []string{"model:gpt-4o-mini"}, TTL: 20 * time.Minute, MaxTTL: 30 * time.Minute,
				PendingTTL: time.Hour, Limits: Limits{RPM: 30, Tokens: 50000}, Policies: []string{"ml-mini-self-serve"}},
			reason: []string{"granted by policy ml-mini-self-serve without approval"},
		},
		{
			name: "a policy already needed is reused for the other scope",
			who:  alice, ask: Ask{Scopes: []string{"model:gpt-4o-mini", "model:gpt-4o"}},
			want: Decision{Allow: true, Scopes: []string{"model:gpt-4o-mini", "model:gpt-4o"}, TTL: 15 * time.Minute, MaxTTL: time.Hour,
				NeedsApproval: true, Approvers: Subjects{Groups: []string{"security"}}, Count: 1, PendingTTL: time.Hour,
				Limits: Limits{RPM: 60, Tokens: 200000}, Policies: []string{"ml-models"}},
		},
		{
			name: "ttl clamped to max_ttl",
			who:  alice, ask: Ask{Scopes: []string{"model:gpt-4o"}, TTL: 2 * time.Hour},
			want: Decision{Allow: true, Scopes: []string{"model:gpt-4o"}, TTL: time.Hour, MaxTTL: time.Hour, Clamped: true,
				NeedsApproval: true, Approvers: Subjects{Groups: []string{"security"}}, Count: 1, PendingTTL: time.Hour,
				Limits: Limits{RPM: 60, Tokens: 200000}, Policies: []string{"ml-models"}},
			reason: []string{"requested ttl 2h exceeds max_ttl 1h of policy ml-models; the grant lasts 1h"},
		},
		{
			name: "scope not granted names what may be requested",
			who:  alice, ask: Ask{Scopes: []string{"model:gpt-5"}},
			want: Decision{Policies: []string{"ml-models", "ml-mini-self-serve"},
				Requestable: []string{"model:gpt-4o", "model:gpt-4o-mini"}},
			reason: []string{"scope model:gpt-5 is not granted to you; you may request: model:gpt-4o, model:gpt-4o-mini"},
		},
		{
			name: "exact scope does not cover a longer model name",
			who:  bot, ask: Ask{Scopes: []string{"model:gpt-4o-mini-2024-07-18"}},
			want:   Decision{Policies: []string{"support-bot-ci"}, Requestable: []string{"model:gpt-4o-mini"}},
			reason: []string{"scope model:gpt-4o-mini-2024-07-18 is not granted to you"},
		},
		{
			name: "workload identity",
			who:  bot, ask: Ask{Scopes: []string{"model:gpt-4o-mini"}, TTL: time.Hour},
			want: Decision{Allow: true, Scopes: []string{"model:gpt-4o-mini"}, TTL: 15 * time.Minute, MaxTTL: 15 * time.Minute, Clamped: true,
				PendingTTL: time.Hour, Limits: Limits{RPM: 120}, Policies: []string{"support-bot-ci"}},
		},
		{
			name: "same sub from another issuer gets nothing",
			who:  Subject{ID: bot.ID, Issuer: "corp"}, ask: Ask{Scopes: []string{"model:gpt-4o-mini"}},
			reason: []string{"no policy grants any scope to repo:acme/support-bot:ref:refs/heads/main (issuer corp)"},
		},
		{
			name: "reason required",
			who:  lead, ask: Ask{Scopes: []string{"model:o3-mini"}},
			want: Decision{Policies: []string{"ml-models", "ml-mini-self-serve", "ml-leads-reasoning"},
				Requestable: []string{"model:gpt-4o", "model:gpt-4o-mini", "model:o3*", "model:azure/gpt-4o"}},
			reason: []string{"policy ml-leads-reasoning requires a reason; say why you need access (--reason)"},
		},
		{
			name: "two approvers or break glass",
			who:  lead, ask: Ask{Scopes: []string{"model:o3-mini"}, Reason: "INC-42 root cause"},
			want: Decision{Allow: true, Scopes: []string{"model:o3-mini"}, TTL: 30 * time.Minute, MaxTTL: 4 * time.Hour,
				NeedsApproval: true, Approvers: Subjects{Groups: []string{"security"}}, Count: 2,
				BreakGlass: Subjects{Users: []string{"ciso@example.com"}}, PendingTTL: 30 * time.Minute,
				Limits: Limits{RPM: 20, Tokens: 1000000}, Policies: []string{"ml-leads-reasoning"}},
			reason: []string{"requires 2 distinct approvals from groups [security], or one break-glass approval from users [ciso@example.com], within 30m"},
		},
		{
			name: "strictest terms win across policies",
			who:  lead, ask: Ask{Scopes: []string{"model:gpt-4o", "model:azure/gpt-4o"}, TTL: 3 * time.Hour, Reason: "compare deployments"},
			want: Decision{Allow: true, Scopes: []string{"model:gpt-4o", "model:azure/gpt-4o"}, TTL: time.Hour, MaxTTL: time.Hour, Clamped: true,
				NeedsApproval: true, Approvers: Subjects{Groups: []string{"security"}}, Count: 2, PendingTTL: 30 * time.Minute,
				Limits: Limits{RPM: 20, Tokens: 200000}, Policies: []string{"ml-models", "ml-leads-reasoning"}},
			reason: []string{
				"requested ttl 3h exceeds max_ttl 1h of policy ml-models",
				"break-glass approval is unavailable because policies ml-models, ml-leads-reasoning name different break-glass approvers",
				"policies ml-models, ml-leads-reasoning require 2 distinct approvals from groups [security]",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Evaluate(set, tt.who, tt.ask)
			reasons := got.Reasons
			got.Reasons = nil
			if tt.want.Requestable == nil && got.Allow {
				got.Requestable = nil // not under test in allow cases
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Evaluate() =\n%+v\nwant\n%+v\nreasons: %q", got, tt.want, reasons)
			}
			if len(reasons) == 0 {
				t.Errorf("decision has no reasons")
			}
			got.Reasons = reasons
			for _, r := range tt.reason {
				if !hasReason(got, r) {
					t.Errorf("reasons %q lack %q", reasons, r)
				}
			}
		})
	}
}

func TestEvaluateDeniesWithEveryReason(t *testing.T) {
	set := loadExample(t)
	d := Evaluate(set, alice, Ask{Scopes: []string{"model:gpt 4o", "model:gpt-5", "model:gpt-4o"}, TTL: 30 * time.Second})
	if d.Allow {
		t.Fatalf("Evaluate allowed %+v", d)
	}
	for _, want := range []string{
		`scope "model:gpt 4o": invalid scope`,
		"scope model:gpt-5 is not granted to you",
		"ttl 30s is shorter than the minimum 1m",
	} {
		if !hasReason(d, want) {
			t.Errorf("reasons %q lack %q", d.Reasons, want)
		}
	}
	if d.Scopes != nil || d.TTL != 0 || d.NeedsApproval || d.Count != 0 || d.Limits != (Limits{}) {
		t.Errorf("denied decision carries grant fields: %+v", d)
	}
}

func TestEvaluateTTL(t *testing.T) {
	set := Set{{Name: "p", Subjects: Subjects{Users: []string{"*"}}, Scopes: []string{"model:*"}, MaxTTL: 10 * time.Minute}}
	tests := []struct {
		ask     time.Duration
		ttl     time.Duration
		allow   bool
		clamped bool
		reason  string
	}{
		{0, 10 * time.Minute, true, false, ""}, // default 15m capped by max 10m, silently
		{5 * time.Minute, 5 * time.Minute, true, false, ""},
		{10 * time.Minute, 10 * time.Minute, true, false, ""},
		{11 * time.Minute, 10 * time.Minute, true, true, "exceeds max_ttl 10m"},
		{time.Minute, time.Minute, true, false, ""},
		{59 * time.Second, 0, false, false, "shorter than the minimum 1m"},
		{-time.Minute, 0, false, false, "ttl -1m is negative"},
	}
	for _, tt := range tests {
		d := Evaluate(set, alice, Ask{Scopes: []string{"model:gpt-4o"}, TTL: tt.ask})
		if d.Allow != tt.allow || d.TTL != tt.ttl || d.Clamped != tt.clamped {
			t.Errorf("ask %v: allow=%v ttl=%v clamped=%v, want %v %v %v (reasons %q)",
				tt.ask, d.Allow, d.TTL, d.Clamped, tt.allow, tt.ttl, tt.clamped, d.Reasons)
		}
		if tt.reason != "" && !hasReason(d, tt.reason) {
			t.Errorf("ask %v: reasons %q lack %q", tt.ask, d.Reasons, tt.reason)
		}
	}

	// No max_ttl: DefaultMaxTTL applies; default_ttl is honoured.
	set = Set{{Name: "p", Subjects: Subjects{Users: []string{"*"}}, Scopes: []string{"model:*"}, DefaultTTL: 5 * time.Minute}}
	if d := Evaluate(set, alice, Ask{Scopes: []string{"model:x"}}); d.TTL != 5*time.Minute || d.MaxTTL != DefaultMaxTTL {
		t.Errorf("default_ttl: got ttl %v max %v", d.TTL, d.MaxTTL)
	}
	if d := Evaluate(set, alice, Ask{Scopes: []string{"model:x"}, TTL: 24 * time.Hour}); d.TTL != DefaultMaxTTL || !d.Clamped {
		t.Errorf("default max: got ttl %v clamped %v", d.TTL, d.Clamped)
	}
}

func TestEvaluateApprovalCombination(t *testing.T) {
	sec := Subjects{Groups: []string{"security"}}
	fin := Subjects{Groups: []string{"finance"}}
	everyone := Subjects{Users: []string{"*"}}
	set := Set{
		{Name: "a", Subjects: everyone, Scopes: []string{"model:a"}, Approval: Approval{Required: true, Approvers: sec},
			Limits: Limits{RPM: 0, Tokens: 500}},
		{Name: "b", Subjects: everyone, Scopes: []string{"model:b"}, Approval: Approval{Required: true, Approvers: fin}},
		{Name: "c", Subjects: everyone, Scopes: []string{"model:c"}, Limits: Limits{RPM: 10}},
		{Name: "c-approved", Subjects: everyone, Scopes: []string{"model:c", "model:d"}, Approval: Approval{Required: true, Approvers: sec, Count: 3}},
	}

	d := Evaluate(set, alice, Ask{Scopes: []string{"model:a", "model:b"}})
	if d.Allow || !hasReason(d, "these scopes need approval from different approvers (policy a: groups [security]; policy b: groups [finance]); request them separately") {
		t.Errorf("different approvers: %+v", d)
	}

	d = Evaluate(set, alice, Ask{Scopes: []string{"model:a", "model:c"}})
	if !d.Allow || !d.NeedsApproval || d.Count != 1 || d.Limits != (Limits{RPM: 10, Tokens: 500}) ||
		!reflect.DeepEqual(d.Policies, []string{"a", "c"}) {
		t.Errorf("approval plus smallest non-zero limits: %+v", d)
	}

	// model:c is covered without approval by c, and with approval by c-approved.
	d = Evaluate(set, alice, Ask{Scopes: []string{"model:c"}})
	if !d.Allow || d.NeedsApproval || !reflect.DeepEqual(d.Policies, []string{"c"}) {
		t.Errorf("lenient policy not preferred: %+v", d)
	}
	// model:d forces c-approved, which then also serves model:c.
	d = Evaluate(set, alice, Ask{Scopes: []string{"model:c", "model:d"}})
	if !d.Allow || !d.NeedsApproval || d.Count != 3 || !reflect.DeepEqual(d.Policies, []string{"c-approved"}) {
		t.Errorf("forced policy not reused: %+v", d)
	}
}

func TestEvaluateEdgeCases(t *testing.T) {
	set := Set{
		{Name: "wide", Subjects: Subjects{Groups: []string{"ml"}}, Scopes: []string{"model:gpt-4o*"}},
	}
	tests := []struct {
		name   string
		who    Subject
		ask    Ask
		allow  bool
		reason string
	}{
		{"no sub", Subject{Email: "x@example.com", Groups: []string{"ml"}}, Ask{Scopes: []string{"model:gpt-4o"}}, false, "your identity has no subject"},
		{"no scopes", alice, Ask{}, false, "no scopes requested; you may request: model:gpt-4o*"},
		{"blank scopes", alice, Ask{Scopes: []string{" ", ""}}, false, "no scopes requested"},
		{"no scopes, no policy", bob, Ask{}, false, "no scopes requested, and no policy grants any scope to bob@example.com"},
		{"glob grant covers concrete", alice, Ask{Scopes: []string{"model:gpt-4o-mini"}}, true, ""},
		{"narrower pattern", alice, Ask{Scopes: []string{"model:gpt-4o-*"}}, true, ""},
		{"wider pattern refused", alice, Ask{Scopes: []string{"model:*"}}, false, "scope model:* is not granted to you"},
		{"scopes are trimmed and de-duplicated", alice, Ask{Scopes: []string{" model:gpt-4o ", "model:gpt-4o"}}, true, ""},
		{"reason too long", alice, Ask{Scopes: []string{"model:gpt-4o"}, Reason: strings.Repeat("x", MaxReasonLen+1)}, false, "keep it under 1024"},
	}
	for _, tt := range tests {
		d := Evaluate(set, tt.who, tt.ask)
		if d.Allow != tt.allow {
			t.Errorf("%s: Allow = %v, want %v (reasons %q)", tt.name, d.Allow, tt.allow, d.Reasons)
		}
		if len(d.Reasons) == 0 {
			t.Errorf("%s: no reasons", tt.name)
		}
		if tt.reason != "" && !hasReason(d, tt.reason) {
			t.Errorf("%s: reasons %q lack %q", tt.name, d.Reasons, tt.reason)
		}
	}
	if d := Evaluate(set, alice, Ask{Scopes: []string{" model:gpt-4o ", "model:gpt-4o"}}); !reflect.DeepEqual(d.Scopes, []string{"model:gpt-4o"}) {
		t.Errorf("normalised scopes = %q", d.Scopes)
	}
}

func TestEvaluateIsPure(t *testing.T) {
	set := loadExample(t)
	before := loadExample(t)
	ask := Ask{Scopes: []string{"model:gpt-4o", "model:gpt-4o-mini"}, TTL: 2 * time.Hour}
	first := Evaluate(set, alice, ask)
	second := Evaluate(set, alice, ask)
	if !reflect.DeepEqual(first, second) {
		t.Errorf("Evaluate is not deterministic:\n%+v\n%+v", first, second)
	}
	if !reflect.DeepEqual(set, before) {
		t.Error("Evaluate modified the policy set")
	}
	first.Approvers.Groups[0] = "mutated"
	if set.Find("ml-models").Approval.Approvers.Groups[0] != "security" {
		t.Fatal("Decision shares approver slices with the policy set")
	}
}

// Tool scopes are requested and granted like any scope: a policy's
// tool:GLOB covers the tools under it, and a wider ask is refused.
func TestEvaluateToolScopes(t *testing.T) {
	set := Set{{Name: "agents", Subjects: Subjects{Users: []string{alice.Email}}, Scopes: []string{"model:gpt-4o", "tool:shell", "tool:mcp:github/search_*"}}}
	if err := set.Validate(); err != nil {
		t.Fatal(err)
	}
	d := Evaluate(set, alice, Ask{Scopes: []string{"model:gpt-4o", "tool:shell", "tool:mcp:github/search_code"}})
	if !d.Allow {
		t.Fatalf("tool scopes under the policy: %+v", d)
	}
	for _, ask := range []string{"tool:*", "tool:mcp:github/*", "tool:Shell", "tool:delete_repo"} {
		if d := Evaluate(set, alice, Ask{Scopes: []string{"model:gpt-4o", ask}}); d.Allow || !hasReason(d, "scope "+ask+" is not granted to you") {
			t.Errorf("%s: %+v", ask, d)
		}
	}
}
