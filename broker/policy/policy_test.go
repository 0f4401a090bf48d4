package policy

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var (
	alice = Subject{ID: "u-alice", Email: "alice@example.com", Groups: []string{"ml"}, Issuer: "corp", Kind: KindUser}
	bob   = Subject{ID: "u-bob", Email: "bob@example.com", Groups: []string{"security"}, Issuer: "corp", Kind: KindUser}
	carol = Subject{ID: "u-carol", Email: "carol@example.com", Groups: []string{"security"}, Issuer: "corp", Kind: KindUser}
	ciso  = Subject{ID: "u-ciso", Email: "CISO@example.com", Issuer: "corp", Kind: KindUser}
	ci    = Subject{ID: "repo:acme/app:ref:refs/heads/main", Issuer: "github-actions", Kind: KindService}
)

func TestSubjectsMatch(t *testing.T) {
	tests := []struct {
		name string
		s    Subjects
		who  Subject
		want bool
	}{
		{"empty matches nobody", Subjects{}, alice, false},
		{"group", Subjects{Groups: []string{"ml"}}, alice, true},
		{"other group", Subjects{Groups: []string{"security"}}, alice, false},
		{"group glob", Subjects{Groups: []string{"m*"}}, alice, true},
		{"user by sub", Subjects{Users: []string{"u-alice"}}, alice, true},
		{"user by email", Subjects{Users: []string{"alice@example.com"}}, alice, true},
		{"email is case-insensitive", Subjects{Users: []string{"Alice@Example.COM"}}, alice, true},
		{"sub is case-sensitive", Subjects{Users: []string{"U-ALICE"}}, alice, false},
		{"email domain glob", Subjects{Users: []string{"*@example.com"}}, alice, true},
		{"email domain glob, other domain", Subjects{Users: []string{"*@example.org"}}, alice, false},
		{"users or groups", Subjects{Users: []string{"nobody"}, Groups: []string{"ml"}}, alice, true},
		{"issuer filter passes", Subjects{Groups: []string{"ml"}, Issuers: []string{"corp"}}, alice, true},
		{"issuer filter blocks", Subjects{Groups: []string{"ml"}, Issuers: []string{"other"}}, alice, false},
		{"issuer only", Subjects{Issuers: []string{"github-actions"}}, ci, true},
		{"service account by sub", Subjects{Users: []string{"repo:acme/app:ref:refs/heads/main"}}, ci, true},
		{"service account glob", Subjects{Users: []string{"repo:acme/*:ref:refs/heads/main"}}, ci, true},
		{"service account other branch", Subjects{Users: []string{"repo:acme/app:ref:refs/heads/dev"}}, ci, false},
		{"star matches everyone", Subjects{Users: []string{"*"}}, ci, true},
		{"no sub matches nothing", Subjects{Users: []string{"*"}}, Subject{Email: "x@example.com"}, false},
		{"no email never matches a glob on email", Subjects{Users: []string{"*@example.com"}}, ci, false},
		{"empty group claim ignored", Subjects{Groups: []string{"*"}}, Subject{ID: "x", Groups: []string{""}}, false},
	}
	for _, tt := range tests {
		if got := tt.s.Match(tt.who); got != tt.want {
			t.Errorf("%s: %+v.Match(%s) = %v, want %v", tt.name, tt.s, tt.who.ID, got, tt.want)
		}
	}
}

func TestSubjectsString(t *testing.T) {
	tests := []struct {
		s    Subjects
		want string
	}{
		{Subjects{}, "nobody"},
		{Subjects{Groups: []string{"security"}}, "groups [security]"},
		{Subjects{Users: []string{"a", "b"}, Groups: []string{"g"}}, "users [a, b] or groups [g]"},
		{Subjects{Issuers: []string{"gh"}}, "anyone from issuers [gh]"},
		{Subjects{Groups: []string{"g"}, Issuers: []string{"corp"}}, "groups [g] from issuers [corp]"},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.s, got, tt.want)
		}
	}
}

func TestValidateAcceptsGoodSet(t *testing.T) {
	set := Set{
		{Name: "a", Subjects: Subjects{Groups: []string{"ml"}}, Scopes: []string{"model:gpt-4o"}, MaxTTL: time.Hour,
			Approval: Approval{Required: true, Approvers: Subjects{Groups: []string{"security"}}, Count: 2}},
		{Name: "b", Subjects: Subjects{Issuers: []string{"gh"}}, Scopes: []string{"model:*"}},
		DevPolicy(),
	}
	if errs := set.Validate(); len(errs) != 0 {
		t.Fatalf("Validate() = %v, want no errors", errs)
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	set := Set{
		{ // 0: many problems at once
			Name:       "broken",
			Scopes:     []string{"model:gpt 4o", "models:x"},
			MaxTTL:     -time.Hour,
			DefaultTTL: 30 * time.Second,
			PendingTTL: -time.Minute,
			Approval:   Approval{Required: true, Count: -1},
			Limits:     Limits{RPM: -1, Tokens: -5},
		},
		{Name: "broken", Subjects: Subjects{Users: []string{"a"}}, Scopes: []string{"model:x"}},                                            // 1: duplicate
		{Name: "", Subjects: Subjects{Users: []string{""}}},                                                                                // 2
		{Name: "ttl", Subjects: Subjects{Users: []string{"a"}}, Scopes: []string{"model:x"}, MaxTTL: time.Hour, DefaultTTL: 2 * time.Hour}, // 3
		{Name: "silent-approvers", Subjects: Subjects{Users: []string{"a"}}, Scopes: []string{"model:x"},
			Approval: Approval{Approvers: Subjects{Groups: []string{"security"}}}}, // 4: required forgotten
		{Name: "too-few", Subjects: Subjects{Users: []string{"a"}}, Scopes: []string{"model:x"},
			Approval: Approval{Required: true, Approvers: Subjects{Users: []string{"bob", "BOB"}}, Count: 2}}, // 5
	}
	errs := set.Validate()
	want := []string{
		`policies[0] "broken": subjects: is empty`,
		`policies[0] "broken": scopes[0]: scope "model:gpt 4o"`,
		`policies[0] "broken": scopes[1]: scope "models:x"`,
		`policies[0] "broken": max_ttl: must not be negative (got -1h)`,
		`policies[0] "broken": default_ttl: is shorter than the minimum 1m (got 30s)`,
		`policies[0] "broken": pending_ttl: must not be negative`,
		`policies[0] "broken": approval.count: must not be negative`,
		`policies[0] "broken": approval.approvers: required when approval.required is true`,
		`policies[0] "broken": limits.rpm: must not be negative`,
		`policies[0] "broken": limits.tokens: must not be negative`,
		`policies[1] "broken": name: duplicates policies[0]`,
		`policies[2]: name: is required`,
		`policies[2]: subjects.users[0]: is empty`,
		`policies[2]: scopes: at least one scope is required`,
		`policies[3] "ttl": default_ttl: 2h is longer than max_ttl 1h`,
		`policies[4] "silent-approvers": approval.required: is false but approvers`,
		`policies[5] "too-few": approval.count: needs 2 distinct approvers but approvers names only 1 user`,
	}
	var got []string
	for _, err := range errs {
		var fe *FieldError
		if !errors.As(err, &fe) {
			t.Errorf("error %v is not a *FieldError", err)
		}
		got = append(got, err.Error())
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || strings.Contains(g, w)
		}
		if !found {
			t.Errorf("Validate() lacks an error containing %q; got:\n%s", w, strings.Join(got, "\n"))
		}
	}
	if len(got) != len(want) {
		t.Errorf("Validate() returned %d errors, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
}

func TestDevPolicy(t *testing.T) {
	dev := Set{DevPolicy()}
	if errs := dev.Validate(); len(errs) != 0 {
		t.Fatalf("DevPolicy does not validate: %v", errs)
	}
	d := Evaluate(dev, alice, Ask{Scopes: []string{"model:gpt-4o", "model:whatever/mock"}, TTL: 2 * time.Hour})
	if !d.Allow || d.NeedsApproval || d.TTL != time.Hour || !d.Clamped {
		t.Errorf("dev model request = %+v; want allowed without approval, clamped to 1h", d)
	}
	if d := Evaluate(dev, ci, Ask{Scopes: []string{"audit:read"}}); !d.Allow || d.TTL != DefaultTTL {
		t.Errorf("dev audit:read = %+v; want allowed for %s", d, DefaultTTL)
	}
	if d := Evaluate(dev, alice, Ask{Scopes: []string{"endpoint:/v1/audio/*"}}); d.Allow {
		t.Errorf("dev policy grants endpoints: %+v", d)
	}
}

func TestFmtDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Hour: "1h", 90 * time.Minute: "1h30m", 15 * time.Minute: "15m",
		30 * time.Second: "30s", 61 * time.Second: "1m1s", -time.Hour: "-1h",
	} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestStillGrants(t *testing.T) {
	alice := Subject{ID: "alice", Groups: []string{"ml"}}
	set := Set{
		{Name: "models", Subjects: Subjects{Groups: []string{"ml"}}, Scopes: []string{"model:gpt-4o*"}},
		{Name: "audit", Subjects: Subjects{Groups: []string{"security"}}, Scopes: []string{"audit:read"}},
	}
	tests := []struct {
		name     string
		set      Set
		policies []string
		scopes   []string
		ok       bool
		reason   string
	}{
		{"unchanged", set, []string{"models"}, []string{"model:gpt-4o", "model:gpt-4o-mini"}, true, "granted by policy models"},
		{"policy removed", set[1:], []string{"models"}, []string{"model:gpt-4o"}, false, "policy models was removed"},
		{"scope dropped", Set{{Name: "models", Subjects: Subjects{Groups: []string{"ml"}}, Scopes: []string{"model:gpt-4o-mini"}}}, []string{"models"}, []string{"model:gpt-4o"}, false, "scope model:gpt-4o is no longer granted"},
		{"subject dropped", Set{{Name: "models", Subjects: Subjects{Groups: []string{"research"}}, Scopes: []string{"model:*"}}}, []string{"models"}, []string{"model:gpt-4o"}, false, "no longer applies to alice"},
		{"another policy does not count", Set{{Name: "other", Subjects: Subjects{Groups: []string{"ml"}}, Scopes: []string{"model:*"}}}, []string{"models"}, []string{"model:gpt-4o"}, false, "policy models was removed"},
		{"no policy named", set, nil, []string{"model:gpt-4o"}, false, "names no policy"},
	}
	for _, tt := range tests {
		ok, reason := tt.set.StillGrants(tt.policies, alice, tt.scopes)
		if ok != tt.ok || !strings.Contains(reason, tt.reason) {
			t.Errorf("%s: StillGrants = %v, %q; want %v, ...%q...", tt.name, ok, reason, tt.ok, tt.reason)
		}
	}
}
