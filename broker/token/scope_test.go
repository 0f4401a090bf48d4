package token

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestMatchGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true},
		{"", "a", false},
		{"*", "", true},
		{"*", "anything/at:all", true},
		{"abc", "abc", true},
		{"abc", "abcd", false},
		{"abc", "ab", false},
		{"a*", "a", true},
		{"a*c", "abbbc", true},
		{"a*c", "abbbd", false},
		{"*c", "abcabc", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "aXcYb", false},
		{"*a*a*a*b", strings.Repeat("a", 40), false}, // backtracking stays bounded
		{"*/gpt-4o", "azure/gpt-4o", true},
		{"*/gpt-4o", "gpt-4o", false},
		{"gpt-4o*", "gpt-4o*", true}, // a star in s is absorbed by a star in pattern
		{"gpt-4o", "gpt-4o*", false}, // ... and never by a literal
		{"gpt-4o-*", "gpt-4o*", false},
	}
	for _, tt := range tests {
		if got := MatchGlob(tt.pattern, tt.s); got != tt.want {
			t.Errorf("MatchGlob(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func TestMatchScope(t *testing.T) {
	tests := []struct {
		pattern, scope string
		want           bool
	}{
		{"model:gpt-4o", "model:gpt-4o", true},
		{"model:gpt-4o", "model:gpt-4o-mini", false},
		{"model:gpt-4o*", "model:gpt-4o-mini", true},
		{"model:gpt-4o*", "model:gpt-4o", true},
		{"model:gpt-4o*", "model:gpt-4", false},
		{"model:gpt-4o", "model:GPT-4o", false}, // case-sensitive
		{"model:gpt-4o", "model:azure/gpt-4o", false},
		{"model:azure/gpt-4o", "model:gpt-4o", false},
		{"model:azure/gpt-4o", "model:azure/gpt-4o", true},
		{"model:azure/*", "model:azure/gpt-4o", true},
		{"model:azure/*", "model:openai/gpt-4o", false},
		{"model:*/gpt-4o", "model:azure/gpt-4o", true},
		{"model:*", "model:azure/gpt-4o", true},
		{"model:*", "audit:read", false}, // kinds never cross
		{"*:read", "audit:read", false},  // kinds are never globs
		{"*", "model:gpt-4o", false},
		{"endpoint:/v1/audio/*", "endpoint:/v1/audio/speech", true},
		{"endpoint:/v1/audio/*", "endpoint:/v1/audio", false},
		{"endpoint:/v1/audio/*", "endpoint:/v1/chat/completions", false},
		{"model:ft:gpt-4o:org::id", "model:ft:gpt-4o:org::id", true}, // values may contain ':'
		{"model:*", "model:", false},
		{"model:", "model:", false},
		{"model:gpt-4o*", "model:gpt-4o-*", true}, // pattern vs narrower pattern
		{"model:gpt-4o-*", "model:gpt-4o*", false},
		{"model:gpt-4o", "model:gpt-4o*", false},
	}
	for _, tt := range tests {
		if got := MatchScope(tt.pattern, tt.scope); got != tt.want {
			t.Errorf("MatchScope(%q, %q) = %v, want %v", tt.pattern, tt.scope, got, tt.want)
		}
	}
}

func TestCovers(t *testing.T) {
	granted := []string{"model:gpt-4o", "model:o3*", "audit:read"}
	tests := []struct {
		want string
		ok   bool
	}{
		{"model:gpt-4o", true},
		{"model:gpt-4o-mini", false},
		{"model:o3-mini", true},
		{"audit:read", true},
		{"audit:export", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := Covers(granted, tt.want); got != tt.ok {
			t.Errorf("Covers(%v, %q) = %v, want %v", granted, tt.want, got, tt.ok)
		}
	}
	if Covers(nil, "model:gpt-4o") {
		t.Error("Covers(nil, ...) = true; an empty grant covers nothing")
	}
}

func TestCoversModel(t *testing.T) {
	tests := []struct {
		granted         []string
		upstream, model string
		want            bool
	}{
		{[]string{"model:gpt-4o"}, "openai", "gpt-4o", true},
		{[]string{"model:gpt-4o"}, "", "gpt-4o", true},
		{[]string{"model:gpt-4o"}, "openai", "gpt-4o-mini", false},
		{[]string{"model:azure/gpt-4o"}, "azure", "gpt-4o", true},
		{[]string{"model:azure/gpt-4o"}, "openai", "gpt-4o", false},
		{[]string{"model:azure/gpt-4o"}, "", "gpt-4o", false},
		{[]string{"model:*/gpt-4o"}, "azure", "gpt-4o", true},
		{[]string{"upstream:azure"}, "azure", "anything", true},
		{[]string{"upstream:azure"}, "openai", "anything", false},
		{[]string{"upstream:azure"}, "", "anything", false},
		{[]string{"model:*"}, "openai", "", false},
	}
	for _, tt := range tests {
		if got := CoversModel(tt.granted, tt.upstream, tt.model); got != tt.want {
			t.Errorf("CoversModel(%v, %q, %q) = %v, want %v", tt.granted, tt.upstream, tt.model, got, tt.want)
		}
	}
}

func TestSubsetAndUncovered(t *testing.T) {
	allowed := []string{"model:gpt-4o*", "audit:read"}
	tests := []struct {
		requested []string
		uncovered []string
	}{
		{nil, nil},
		{[]string{"model:gpt-4o"}, nil},
		{[]string{"model:gpt-4o-mini", "audit:read"}, nil},
		{[]string{"model:gpt-4o-*"}, nil},
		{[]string{"model:*"}, []string{"model:*"}}, // widening a pattern is refused
		{[]string{"model:gpt-4o", "model:o3", "endpoint:/v1/audio/*"}, []string{"model:o3", "endpoint:/v1/audio/*"}},
	}
	for _, tt := range tests {
		got := Uncovered(tt.requested, allowed)
		if !reflect.DeepEqual(got, tt.uncovered) {
			t.Errorf("Uncovered(%v) = %v, want %v", tt.requested, got, tt.uncovered)
		}
		if sub := Subset(tt.requested, allowed); sub != (len(tt.uncovered) == 0) {
			t.Errorf("Subset(%v) = %v, want %v", tt.requested, sub, len(tt.uncovered) == 0)
		}
	}
}

func TestParseJoinScopes(t *testing.T) {
	tests := []struct {
		claim string
		want  []string
		join  string
	}{
		{"", nil, ""},
		{"   ", nil, ""},
		{"model:gpt-4o", []string{"model:gpt-4o"}, "model:gpt-4o"},
		{" model:gpt-4o\tmodel:gpt-4o-mini  model:gpt-4o ", []string{"model:gpt-4o", "model:gpt-4o-mini"}, "model:gpt-4o model:gpt-4o-mini"},
	}
	for _, tt := range tests {
		got := ParseScopes(tt.claim)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseScopes(%q) = %#v, want %#v", tt.claim, got, tt.want)
		}
		if j := JoinScopes(got); j != tt.join {
			t.Errorf("JoinScopes(%v) = %q, want %q", got, j, tt.join)
		}
	}
	if j := JoinScopes([]string{"audit:read", "", "audit:read", "model:o3"}); j != "audit:read model:o3" {
		t.Errorf("JoinScopes drops empties and duplicates: got %q", j)
	}
}

func TestValidScope(t *testing.T) {
	valid := []string{
		"model:gpt-4o", "model:gpt-4o*", "model:azure/gpt-4o", "model:*",
		"model:ft:gpt-4o-mini:acme::abc123", "model:meta-llama/Llama-3.1-70B",
		"endpoint:/v1/audio/*", "endpoint:*", "audit:read", "upstream:openai",
		"tool:shell", "tool:*", "tool:mcp:github/search_*", "tool:web_search",
	}
	for _, s := range valid {
		if err := ValidScope(s); err != nil {
			t.Errorf("ValidScope(%q) = %v, want nil", s, err)
		}
	}
	invalid := []struct{ s, msg string }{
		{"", "empty"},
		{"gpt-4o", "want kind:value"},
		{"models:gpt-4o", `unknown kind "models"`},
		{"Model:gpt-4o", `unknown kind "Model"`},
		{"*:read", `unknown kind "*"`},
		{"model:", "empty value"},
		{"model:gpt 4o", `character ' '`},
		{"tool:sh ell", `character ' '`},
		{"tool:", "empty value"},
		{"model:gpt-4o\n", `character '\n'`},
		{`model:"gpt"`, `character '"'`},
		{"endpoint:v1/audio", "starting with '/'"},
		{"model:**", "redundant"},
		{"model:" + strings.Repeat("a", MaxScopeLen), "longer than"},
	}
	for _, tt := range invalid {
		err := ValidScope(tt.s)
		if err == nil {
			t.Errorf("ValidScope(%q) = nil, want error containing %q", tt.s, tt.msg)
			continue
		}
		if !errors.Is(err, ErrInvalidScope) {
			t.Errorf("ValidScope(%q) = %v, does not wrap ErrInvalidScope", tt.s, err)
		}
		if !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ValidScope(%q) = %q, want it to contain %q", tt.s, err, tt.msg)
		}
	}
}

func TestSplitScope(t *testing.T) {
	kind, value, ok := SplitScope("model:ft:gpt-4o:acme")
	if !ok || kind != "model" || value != "ft:gpt-4o:acme" {
		t.Errorf("SplitScope = %q, %q, %v; want model, ft:gpt-4o:acme, true", kind, value, ok)
	}
	for _, s := range []string{"", "model", ":x", "model:"} {
		if _, _, ok := SplitScope(s); ok {
			t.Errorf("SplitScope(%q) ok = true, want false", s)
		}
	}
}
