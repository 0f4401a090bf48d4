package rules

import (
	"fmt"
	"strings"
	"testing"
)

// benchRules is a realistic mix of 20 rules: regexps and literal lists,
// all three actions, a few scoped to models.
func benchRules() []Rule {
	sec := Approvers{Groups: []string{"security"}}
	rules := []Rule{
		{Name: "no-injection", Pattern: `(?i)ignore (all )?previous instructions`, Action: Deny},
		{Name: "destructive-sql", Pattern: `(?i)drop\s+table`, Action: RequireApproval, Approvers: sec},
		{Name: "rm-rf", Pattern: `rm\s+-rf\s+/`, Action: Deny},
		{Name: "prod-hosts", Pattern: `\bdb-prod-[0-9]+\.internal\b`, Action: RequireApproval, Approvers: sec, Models: []string{"o3*"}},
		{Name: "emails", Pattern: `[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}`, Action: Redact},
		{Name: "internal-urls", Pattern: `https?://[a-z0-9.-]+\.corp\.example\.com\S*`, Action: Redact},
		{Name: "ticket-ids", Pattern: `\bSEC-[0-9]{4,}\b`, Action: Redact},
		{Name: "jailbreak", Literals: []string{"do anything now", "developer mode enabled", "pretend you have no restrictions"}, Action: Deny},
		{Name: "codenames", Literals: []string{"Project Nightjar", "Bluefin", "Halcyon", "Red Kite", "Osprey"}, Action: Redact},
		{Name: "customers", Literals: []string{"Globex", "Initech", "Umbrella Corp", "Hooli", "Vandelay"}, Action: Redact},
		{Name: "finance", Literals: []string{"quarterly forecast", "unreleased earnings", "merger", "acquisition target"}, Action: RequireApproval, Approvers: sec},
		{Name: "credentials", Literals: []string{"password:", "passwd=", "api_key=", "secret_key="}, Action: Deny},
	}
	for i := len(rules); i < 20; i++ {
		rules = append(rules, Rule{
			Name:     fmt.Sprintf("filler-%d", i),
			Literals: []string{fmt.Sprintf("zzqx%dalpha", i), fmt.Sprintf("zzqx%dbeta", i), fmt.Sprintf("zzqx%dgamma", i)},
			Action:   Deny,
		})
	}
	return rules
}

// benchText is 4 KiB of prose with one email and one code name in it.
func benchText() string {
	const para = "The quarterly planning meeting covered the roadmap for the next release. " +
		"Engineers discussed latency budgets, the migration of the ingestion pipeline, and how " +
		"to roll out the new caching layer without disrupting existing customers. "
	var b strings.Builder
	b.WriteString("Hi, please summarise the notes below and send them to jane.doe@example.org about Bluefin. ")
	for b.Len() < 4096 {
		b.WriteString(para)
	}
	return b.String()[:4096]
}

func BenchmarkEvaluate(b *testing.B) {
	e := mustCompile(b, benchRules())
	in := Input{Text: benchText(), Model: "gpt-4o", Subject: "u1", Endpoint: "/v1/chat/completions"}
	if res := e.Evaluate(in); res.Action != Redact || res.Redactions != 2 {
		b.Fatalf("unexpected result %+v", res.Matched)
	}
	b.SetBytes(int64(len(in.Text)))
	b.ReportAllocs()
	for b.Loop() {
		e.Evaluate(in)
	}
}

func BenchmarkEvaluateNonASCII(b *testing.B) {
	e := mustCompile(b, benchRules())
	text := benchText()
	text = "Grüße — " + text[:len(text)-len("Grüße — ")]
	in := Input{Text: text, Model: "gpt-4o"}
	b.SetBytes(int64(len(in.Text)))
	b.ReportAllocs()
	for b.Loop() {
		e.Evaluate(in)
	}
}
