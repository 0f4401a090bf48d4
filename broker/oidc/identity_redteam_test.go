package oidc_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/oidc/devissuer"
)

// verifyReason verifies raw and returns the refusal's reason ("" when
// admitted) and the identity.
func verifyReason(t *testing.T, v *oidc.Verifier, raw string) (oidc.Identity, oidc.Reason) {
	t.Helper()
	id, err := v.Verify(context.Background(), raw, "")
	if err == nil {
		return id, ""
	}
	var ve *oidc.VerifyError
	if !errors.As(err, &ve) || !errors.Is(err, oidc.ErrInvalidToken) {
		t.Fatalf("err = %v, want a *VerifyError of ErrInvalidToken", err)
	}
	assertNoTokenInError(t, err, raw)
	return id, ve.Reason
}

// With allowed_domains, only an email the issuer explicitly verified
// (email_verified: true, or Apple's and Cognito's string "true") counts:
// a token without email_verified, with null, "false", "yes", 1 … is an
// unverified address and is refused, as boolean false always was.
func TestAllowedDomainsNeedAVerifiedEmail(t *testing.T) {
	clock := newClock()
	iss := startIssuer(t, "", sharedKey(), devissuer.WithClock(clock.Now))
	cfg := corpConfig(iss)
	cfg.AllowedDomains = []string{"example.com"}
	v := newVerifier(t, clock, cfg)
	for _, tc := range []struct {
		name     string
		verified any
		admitted bool
	}{
		{"true", true, true},
		{`string "true"`, "true", true},
		{"absent", devissuer.Omit, false},
		{"false", false, false},
		{"null", nil, false},
		{`string "false"`, "false", false},
		{`string "True"`, "True", false},
		{`string " true"`, " true", false},
		{`string "1"`, "1", false},
		{`string "yes"`, "yes", false},
		{"number 1", 1, false},
		{"list [true]", []any{true}, false},
		{"object", map[string]any{"value": true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := mustMint(t, iss, devissuer.Claims{Subject: "s1", Email: "s1@example.com", Audience: "pamctl",
				Extra: map[string]any{"email_verified": tc.verified}})
			id, reason := verifyReason(t, v, raw)
			switch {
			case tc.admitted && reason != "":
				t.Fatalf("refused (%s), want admitted", reason)
			case tc.admitted && id.Email != "s1@example.com":
				t.Fatalf("Email = %q, want the verified address", id.Email)
			case !tc.admitted && reason != oidc.ReasonDomainNotAllowed:
				t.Fatalf("reason = %q, want %s", reason, oidc.ReasonDomainNotAllowed)
			}
		})
	}
}

// Without allowed_domains the same rule decides whether the email counts
// for display, policies and approver matching: only a verified one.
func TestOnlyAVerifiedEmailIsKept(t *testing.T) {
	clock := newClock()
	iss := startIssuer(t, "", sharedKey(), devissuer.WithClock(clock.Now))
	cfg := corpConfig(iss)
	cfg.DisplayClaims = []string{"email"}
	v := newVerifier(t, clock, cfg)
	for _, tc := range []struct {
		verified any
		kept     bool
	}{
		{true, true}, {"true", true},
		{devissuer.Omit, false}, {false, false}, {nil, false}, {"false", false}, {"TRUE", false}, {1, false},
	} {
		raw := mustMint(t, iss, devissuer.Claims{Subject: "s1", Email: "s1@example.com", Audience: "pamctl",
			Extra: map[string]any{"email_verified": tc.verified}})
		id, reason := verifyReason(t, v, raw)
		if reason != "" {
			t.Fatalf("email_verified %#v: refused (%s)", tc.verified, reason)
		}
		if got := id.Email != ""; got != tc.kept {
			t.Errorf("email_verified %#v: Email = %q, kept %v, want %v", tc.verified, id.Email, got, tc.kept)
		}
		if got := id.Display == "s1@example.com"; got != tc.kept {
			t.Errorf("email_verified %#v: Display = %q", tc.verified, id.Display)
		}
	}
}

// An ID token issued in the future (iat more than the clock-skew
// allowance, go-oidc's for nbf, ahead of the broker's clock) is refused:
// go-oidc checks exp and nbf only, and a token minted "two hours from now"
// comes from a wrong clock or was prepared in advance. (A future auth_time
// is clamped to the login's time: broker TestStepUpForgedOrAbsentAuthTime.)
func TestIssuedInTheFutureIsRefused(t *testing.T) {
	clock := newClock()
	iss := startIssuer(t, "", sharedKey(), devissuer.WithClock(clock.Now))
	v := newVerifier(t, clock, corpConfig(iss))
	now := clock.Now()
	for _, tc := range []struct {
		name     string
		iat      time.Time
		authTime time.Time
		admitted bool
	}{
		{"iat now", now, time.Time{}, true},
		{"iat within the skew", now.Add(4 * time.Minute), now, true},
		{"iat at the skew", now.Add(oidc.ClockSkew), now, true},
		{"iat a second past the skew", now.Add(oidc.ClockSkew + time.Second), now, false},
		{"iat two hours ahead", now.Add(2 * time.Hour), now, false},
		{"iat a year ahead", now.Add(365 * 24 * time.Hour), now, false},
		{"iat past the skew, auth_time now", now.Add(time.Hour), now, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := mustMint(t, iss, devissuer.Claims{Subject: "alice", Audience: "pamctl",
				IssuedAt: tc.iat, AuthTime: tc.authTime, Expiry: now.Add(3 * time.Hour)})
			_, reason := verifyReason(t, v, raw)
			switch {
			case tc.admitted && reason != "":
				t.Fatalf("refused (%s), want admitted", reason)
			case !tc.admitted && reason != oidc.ReasonNotYetValid:
				t.Fatalf("reason = %q, want %s", reason, oidc.ReasonNotYetValid)
			}
		})
	}
	// The message says what to check.
	raw := mustMint(t, iss, devissuer.Claims{Subject: "alice", Audience: "pamctl", IssuedAt: now.Add(2 * time.Hour), Expiry: now.Add(3 * time.Hour)})
	_, err := v.Verify(context.Background(), raw, "")
	if err == nil || !strings.Contains(err.Error(), "clock") {
		t.Errorf("message %q should point at the clocks", err)
	}
}

// An ID token without a usable iat (OIDC Core 2 requires it) is refused:
// absent, null, zero, negative, not a number. go-oidc reads a missing or
// null iat as the zero time and a negative one as a date before 1970, and
// only checks that iat is not in the future. Tokens with an iat, fractional
// included, pass.
func TestIssuedAtIsRequired(t *testing.T) {
	clock := newClock()
	iss := startIssuer(t, "", sharedKey(), devissuer.WithClock(clock.Now))
	v := newVerifier(t, clock, corpConfig(iss))
	now := clock.Now()
	for _, tc := range []struct {
		name     string
		iat      any
		admitted bool
	}{
		{"absent", devissuer.Omit, false},
		{"null", nil, false},
		{"zero", 0, false},
		{"minus one", -1, false},
		{"a string", "now", false},
		{"a numeric string", fmt.Sprint(now.Unix()), false},
		{"an object", map[string]any{"t": now.Unix()}, false},
		{"now", now.Unix(), true},
		{"an hour ago", now.Add(-time.Hour).Unix(), true},
		{"fractional", float64(now.Unix()) + 0.5, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := iss.Forge().IssuedAt(devissuer.Claims{Subject: "alice", Audience: "pamctl", Expiry: now.Add(time.Hour)}, tc.iat)
			if err != nil {
				t.Fatal(err)
			}
			_, reason := verifyReason(t, v, raw)
			switch {
			case tc.admitted && reason != "":
				t.Fatalf("refused (%s), want admitted", reason)
			case !tc.admitted && reason != oidc.ReasonMissingIssuedAt:
				t.Fatalf("reason = %q, want %s", reason, oidc.ReasonMissingIssuedAt)
			}
		})
	}
	raw, err := iss.Forge().IssuedAt(devissuer.Claims{Subject: "alice", Audience: "pamctl", Expiry: now.Add(time.Hour)}, devissuer.Omit)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), raw, ""); err == nil || !strings.Contains(err.Error(), "iat") {
		t.Errorf("message %q should name the missing iat", err)
	}
}

// A verified email padded with spaces or carrying control or invisible
// characters would be shown trimmed (" kate@example.com" as
// kate@example.com) while matching no policy entry: the login is refused
// and says why, whatever allowed_domains says.
func TestLookAlikeEmailIsRefused(t *testing.T) {
	clock := newClock()
	iss := startIssuer(t, "", sharedKey(), devissuer.WithClock(clock.Now))
	open := corpConfig(iss)
	pinned := corpConfig(iss)
	pinned.Name, pinned.AllowedDomains = "pinned", []string{"example.com"}
	for _, cfg := range []oidc.IssuerConfig{open, pinned} {
		v := newVerifier(t, clock, cfg)
		for _, email := range []string{
			" kate@example.com", "kate@example.com ", "kate@example.com\t", "\u00a0kate@example.com",
			"kate@example.com\u200b", "ka\u200bte@example.com", "kate@exa\u202emple.com", "kate\n@example.com",
			"kate@example.com\x00", "ka te@example.com", "kate@example.com\u3000",
		} {
			raw := mustMint(t, iss, devissuer.Claims{Subject: "kate", Email: email, Audience: "pamctl"})
			if _, reason := verifyReason(t, v, raw); reason != oidc.ReasonInvalidEmail {
				t.Errorf("%s: email %q: reason %q, want %s", cfg.Name, email, reason, oidc.ReasonInvalidEmail)
			}
		}
		raw := mustMint(t, iss, devissuer.Claims{Subject: "kate", Email: "kate@example.com", Audience: "pamctl"})
		if id, reason := verifyReason(t, v, raw); reason != "" || id.Email != "kate@example.com" {
			t.Errorf("%s: the plain address: %q, %q", cfg.Name, reason, id.Email)
		}
	}
	// An unverified address is dropped, not judged: it is never shown.
	v := newVerifier(t, clock, open)
	raw := mustMint(t, iss, devissuer.Claims{Subject: "kate", Email: " kate@example.com", Audience: "pamctl",
		Extra: map[string]any{"email_verified": false}})
	if id, reason := verifyReason(t, v, raw); reason != "" || id.Email != "" {
		t.Errorf("unverified padded email: %q, %q", reason, id.Email)
	}
}

// act_people declares who a workload's actor is at the person issuers: a
// GitHub login "alice-gh" matches none of alice's names, so the operator
// maps it; the lookup ignores case and compatibility forms, as the
// review guard does, and an unmapped actor has no ActFor.
func TestActPeopleMapsTheActor(t *testing.T) {
	clock := newClock()
	iss := startIssuer(t, "", sharedKey(), devissuer.WithClock(clock.Now))
	cfg := corpConfig(iss)
	cfg.Name, cfg.Workload, cfg.ActClaim = "gha", true, "actor"
	cfg.ActPeople = map[string]string{"Alice-GH": "alice@example.com"}
	v := newVerifier(t, clock, cfg)
	for act, want := range map[string]string{
		"alice-gh": "alice@example.com", "ALICE-GH": "alice@example.com", "\uff21lice-gh": "alice@example.com",
		"alice": "", "bob": "", "alice-gh2": "",
	} {
		raw := mustMint(t, iss, devissuer.Claims{Subject: "repo:acme/app:ref:refs/heads/main", Audience: "pamctl",
			Extra: map[string]any{"actor": act}})
		id, reason := verifyReason(t, v, raw)
		if reason != "" || id.Act != act || id.ActFor != want {
			t.Errorf("actor %q: reason %q, Act %q, ActFor %q; want ActFor %q", act, reason, id.Act, id.ActFor, want)
		}
	}
	// The map needs act_claim, and names people, not blanks.
	bad := cfg
	bad.ActClaim = ""
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "act_people") {
		t.Errorf("act_people without act_claim: %v", err)
	}
	bad = cfg
	bad.ActPeople = map[string]string{"alice-gh": " "}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "act_people") {
		t.Errorf("act_people with a blank person: %v", err)
	}
	bad.ActPeople = map[string]string{"alice-gh": "a@x.com", "ALICE-gh": "b@x.com"}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "act_people") {
		t.Errorf("act_people with one login twice: %v", err)
	}
}
