package oidc

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/pamctl/pamctl/broker/token"
)

// IssuerConfig is one trusted issuer, an item of the YAML `issuers:` list.
type IssuerConfig struct {
	// Name identifies the issuer in policies and the audit trail.
	Name string `mapstructure:"name" yaml:"name"`
	// URL is the issuer URL, exactly as it appears in the tokens' iss claim
	// and in the discovery document (watch for trailing slashes).
	URL string `mapstructure:"url" yaml:"url"`
	// ClientID is the OAuth client `pamctl login` uses (a public client with
	// PKCE). Required for issuers of people; optional for workloads.
	ClientID string `mapstructure:"client_id" yaml:"client_id"`
	// Audience is the expected aud of ID tokens; default ClientID.
	Audience string `mapstructure:"audience" yaml:"audience"`
	// GroupsClaim names the claim holding groups (a list or a single
	// string); default "groups".
	GroupsClaim string `mapstructure:"groups_claim" yaml:"groups_claim"`
	// Scopes requested at login; default openid, email, profile.
	Scopes []string `mapstructure:"scopes" yaml:"scopes"`
	// Workload marks issuers of non-human identities (GitHub Actions,
	// Kubernetes service accounts): their identities have Kind "service".
	Workload bool `mapstructure:"workload" yaml:"workload"`
	// AllowedDomains, when set, admits only tokens whose email is in one of
	// these domains (exact match, ASCII case-insensitive) and verified
	// (email_verified: true or "true"; absent is unverified).
	AllowedDomains []string `mapstructure:"allowed_domains" yaml:"allowed_domains"`
	// RequiredClaims admits only tokens whose claims have exactly these
	// values (a list claim must contain the value), e.g.
	// repository_owner: my-org.
	RequiredClaims map[string]string `mapstructure:"required_claims" yaml:"required_claims"`
	// ActClaim names a claim holding the person a workload acts for (GitHub
	// Actions: actor). It becomes the act claim of pamctl's tokens, and that
	// person can never approve the workload's requests.
	ActClaim string `mapstructure:"act_claim" yaml:"act_claim"`
	// ActPeople maps values of ActClaim (compared ignoring case and
	// compatibility forms) to the person they are at a person issuer, by
	// email or sub: a GitHub login "alice-gh" resembles none of alice's
	// names, so without an entry the review guard cannot know it is hers.
	ActPeople map[string]string `mapstructure:"act_people" yaml:"act_people"`

	// ClientSecretFile names a file holding the OAuth client secret, for
	// IdPs that require one at the token endpoint even with PKCE (Google
	// "Desktop app" clients). The code exchange runs inside `pamctl login`,
	// so the file is read there, on each user's machine, never by the
	// broker; a leading "~/" is that user's home directory. The file must
	// not be readable by group or others. Prefer a public client with PKCE
	// where the IdP allows it: then there is no secret to distribute.
	ClientSecretFile string `mapstructure:"client_secret_file" yaml:"client_secret_file"`
	// InlineClientSecret exists only to refuse `client_secret:` with advice:
	// a secret never sits in the config file.
	InlineClientSecret RefusedSecret `mapstructure:"client_secret" yaml:"client_secret"`
	// ClientSecretVault is refused: the broker's vault is sealed on the
	// broker host, and the login that needs the secret runs on the user's
	// machine (see Validate).
	ClientSecretVault string `mapstructure:"client_secret_vault" yaml:"client_secret_vault"`
	// RedirectPort pins the loopback port of the browser login's redirect
	// URI, http://127.0.0.1:PORT/callback, for IdPs that match registered
	// redirect URIs exactly, port included (Okta). 0: any free port.
	RedirectPort int `mapstructure:"redirect_port" yaml:"redirect_port"`
	// GroupsSource says where groups come from: "token" (the ID token's
	// GroupsClaim, the default) or "userinfo" (the issuer's userinfo
	// endpoint, called by the broker with the access token the CLI sends
	// alongside the ID token).
	GroupsSource string `mapstructure:"groups_source" yaml:"groups_source"`
	// DisplayClaims are the claims tried, in order, for the name people see
	// in tables and messages; default preferred_username, email, name. The
	// subject is used when none is set. Display names are never matched by
	// policies: those use the subject, verified email and groups.
	DisplayClaims []string `mapstructure:"display_claims" yaml:"display_claims"`
	// StepUpWithoutAuthTime lets a person's login whose ID token carries
	// no auth_time pass step-up (approving, denying, revoking others'
	// grants, reading the audit trail) on the time of the login itself.
	// Off by default: without auth_time nothing shows the IdP
	// authenticated the person rather than reusing its own session
	// (silent SSO), so such a login cannot step up. Set it only for an
	// IdP that never sends auth_time even when asked with max_age (OIDC
	// Core requires it then); `pamctl config check` and `serve` warn
	// while it is set.
	StepUpWithoutAuthTime bool `mapstructure:"step_up_without_auth_time" yaml:"step_up_without_auth_time"`
}

// StepUpWarnings are c's settings that weaken step-up; `pamctl config
// check` and `pamctl serve` print them.
func (c IssuerConfig) StepUpWarnings() []string {
	if !c.StepUpWithoutAuthTime || c.Workload {
		return nil
	}
	return []string{fmt.Sprintf("issuer %q: step_up_without_auth_time is set: a login through it whose ID token has no auth_time counts as a fresh authentication for approving, denying, revoking others' grants and reading the audit trail, even when the IdP reused its own session without asking the person (silent SSO); remove it once the IdP sends auth_time (OIDC Core requires it when the login sends max_age)", c.Name)}
}

// DiscoveryWarnings are what d, c's discovery document, says about
// step-up: a claims_supported that does not list auth_time means people's
// logins through c will likely be unable to step up.
func (c IssuerConfig) DiscoveryWarnings(d Discovery) []string {
	if c.Workload || c.StepUpWithoutAuthTime || d.ClaimsSupported == nil || slices.Contains(d.ClaimsSupported, "auth_time") {
		return nil
	}
	return []string{fmt.Sprintf("issuer %q: its discovery document's claims_supported does not list auth_time: if its ID tokens carry none, people logged in through it cannot approve, deny, revoke others' grants or read the audit trail (step-up needs to know when the IdP authenticated them); ask the IdP's admin to send auth_time, or, only if it never can, set step_up_without_auth_time: true on the issuer (docs/identity.md)", c.Name)}
}

// Groups sources.
const (
	GroupsFromToken    = "token"
	GroupsFromUserinfo = "userinfo"
)

// DefaultDisplayClaims are tried when an issuer configures no display_claims.
var DefaultDisplayClaims = []string{"preferred_username", "email", "name"}

// RefusedSecret is a config value that must never be set; it never prints
// what it holds.
type RefusedSecret string

// String hides the value.
func (s RefusedSecret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString hides the value from %#v.
func (s RefusedSecret) GoString() string { return `"` + s.String() + `"` }

// MarshalText hides the value from encoders.
func (s RefusedSecret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Defaults used by WithDefaults.
const (
	DefaultGroupsClaim = "groups"
)

// DefaultScopes are requested when an issuer configures none.
var DefaultScopes = []string{"openid", "email", "profile"}

// AdminIssuer is the issuer name of the admin socket's identity
// (broker.AdminIdentity). No configured issuer may take it, in any case:
// its identities would read as the local admin in the audit trail.
const AdminIssuer = "unix-socket"

var issuerNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// WithDefaults returns c with Audience, GroupsClaim and Scopes filled in.
func (c IssuerConfig) WithDefaults() IssuerConfig {
	if c.Audience == "" {
		c.Audience = c.ClientID
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = DefaultGroupsClaim
	}
	if c.GroupsSource == "" {
		c.GroupsSource = GroupsFromToken
	}
	if len(c.DisplayClaims) == 0 {
		c.DisplayClaims = slices.Clone(DefaultDisplayClaims)
	} else {
		c.DisplayClaims = slices.Clone(c.DisplayClaims)
	}
	if len(c.Scopes) == 0 {
		c.Scopes = slices.Clone(DefaultScopes)
	} else {
		c.Scopes = slices.Clone(c.Scopes)
	}
	c.AllowedDomains = slices.Clone(c.AllowedDomains)
	c.ActPeople = maps.Clone(c.ActPeople)
	if c.RequiredClaims != nil {
		m := make(map[string]string, len(c.RequiredClaims))
		for k, v := range c.RequiredClaims {
			m[k] = v
		}
		c.RequiredClaims = m
	}
	return c
}

// Validate reports every problem with c at once.
func (c IssuerConfig) Validate() error {
	label := fmt.Sprintf("issuer %q", c.Name)
	if c.Name == "" {
		label = "issuer (unnamed)"
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", label, fmt.Sprintf(format, args...)))
	}

	switch {
	case c.Name == "":
		bad("name is required")
	case !issuerNameRE.MatchString(c.Name):
		bad("name must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")
	case strings.EqualFold(c.Name, AdminIssuer):
		bad("name %q is reserved for the admin socket's identity; pick another", c.Name)
	}

	if c.URL == "" {
		bad("url is required")
	} else if err := validateIssuerURL(c.URL); err != nil {
		bad("url: %v", err)
	}

	if !c.Workload && c.ClientID == "" {
		bad("client_id is required (the public OAuth client `pamctl login` uses); set workload: true for CI or Kubernetes issuers")
	}
	if c.Audience == "" && c.ClientID == "" {
		bad("audience (or client_id) is required: it is the aud every token must carry")
	}
	if strings.ContainsFunc(c.GroupsClaim, isSpace) {
		bad("groups_claim must not contain spaces")
	}
	if len(c.Scopes) > 0 && !slices.Contains(c.Scopes, "openid") {
		bad("scopes must include openid")
	}
	for _, s := range c.Scopes {
		if s == "" || strings.ContainsFunc(s, isSpace) {
			bad("scope %q must be a single non-empty word", s)
		}
	}
	for _, d := range c.AllowedDomains {
		if d == "" || strings.ContainsAny(d, "@/: ") || strings.HasPrefix(d, ".") {
			bad("allowed_domains: %q is not a domain (write example.com, not @example.com or a URL)", d)
		} else if r := token.CapitalOutsideASCII(d); r != 0 {
			// Compared with the email's domain in ASCII case only (equalFoldASCII).
			bad("allowed_domains: %s", token.EmailCaseError(d, r))
		}
	}
	for k := range c.RequiredClaims {
		if k == "" {
			bad("required_claims: empty claim name")
		}
	}
	if len(c.ActPeople) > 0 && c.ActClaim == "" {
		bad("act_people needs act_claim: name the claim that holds the actor (GitHub Actions: actor)")
	}
	seen := map[string]string{}
	for _, k := range sortedKeys(c.ActPeople) {
		switch {
		case strings.TrimSpace(k) == "" || strings.TrimSpace(c.ActPeople[k]) == "":
			bad("act_people: %q: write `LOGIN: person's email or sub`, neither blank", k)
		case seen[ActKey(k)] != "":
			bad("act_people: %q and %q are one login (case is ignored); keep one", seen[ActKey(k)], k)
		}
		seen[ActKey(k)] = k
	}
	if c.InlineClientSecret != "" {
		bad("client_secret must not be written in the config file: put the secret in a file only its owner can read (chmod 600 FILE) and set client_secret_file: FILE")
	}
	if c.ClientSecretVault != "" {
		bad("client_secret_vault is not supported: the code exchange runs in `pamctl login` on each user's machine, which cannot open the broker's vault, and handing the secret out through the broker would publish it to everyone who can reach it; use client_secret_file (or, better, a public client with PKCE)")
	}
	if c.ClientSecretFile != "" && c.Workload {
		bad("client_secret_file is for interactive logins; a workload issuer has no login")
	}
	if c.RedirectPort < 0 || c.RedirectPort > 65535 {
		bad("redirect_port %d must be between 1 and 65535 (or 0 for any free port)", c.RedirectPort)
	} else if c.RedirectPort != 0 && c.Workload {
		bad("redirect_port is for interactive logins; a workload issuer has no login")
	}
	switch c.GroupsSource {
	case "", GroupsFromToken:
	case GroupsFromUserinfo:
		if c.Workload {
			bad("groups_source: userinfo needs the access token of an interactive login; workload tokens come alone")
		}
	default:
		bad("groups_source %q must be token or userinfo", c.GroupsSource)
	}
	for _, k := range c.DisplayClaims {
		if k == "" || strings.ContainsFunc(k, isSpace) {
			bad("display_claims: %q is not a claim name", k)
		}
	}
	return errors.Join(errs...)
}

// validateIssuerURL accepts https URLs, and http only on loopback hosts (the
// dev issuer and tests).
func validateIssuerURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %v", err)
	}
	switch {
	case u.Host == "":
		return errors.New("must be an absolute URL such as https://idp.example.com")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return errors.New("must not contain credentials, a query or a fragment")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return errors.New("must use https (http is accepted only for loopback development issuers)")
	default:
		return fmt.Errorf("unsupported scheme %q", u.Scheme)
	}
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func isSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' }
