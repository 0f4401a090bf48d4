package audit

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestTypesTableIsStable(t *testing.T) {
	codeRE := regexp.MustCompile(`^PAM-[A-Z]\d{3}$`)
	nameRE := regexp.MustCompile(`^[a-z]+(\.[a-z]+)?$`)
	seenCode := map[string]Type{}
	for _, info := range Types() {
		if !codeRE.MatchString(info.Code) {
			t.Errorf("%s: code %q does not look like PAM-X000", info.Type, info.Code)
		}
		if !nameRE.MatchString(string(info.Type)) {
			t.Errorf("type %q is not a dotted lower-case name", info.Type)
		}
		if other, dup := seenCode[info.Code]; dup {
			t.Errorf("code %s used by %s and %s", info.Code, other, info.Type)
		}
		seenCode[info.Code] = info.Type
		if info.Description == "" {
			t.Errorf("%s has no description", info.Type)
		}
	}
	if code, ok := CodeOf(TypeProxyCall); !ok || code != "PAM-P001" {
		t.Errorf("CodeOf(proxy.call) = %q, %v; want PAM-P001 (codes are stable)", code, ok)
	}
}

func TestNormalize(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))
	e := &Event{Type: TypeProxyCall, Prompt: "hello", Seq: 9, PrevHash: "x", Hash: "y"}
	if err := e.Normalize(now); err != nil {
		t.Fatal(err)
	}
	if e.Code != "PAM-P001" {
		t.Errorf("Code = %q", e.Code)
	}
	if !e.Time.Equal(now) || e.Time.Location() != time.UTC {
		t.Errorf("Time = %v, want %v in UTC", e.Time, now)
	}
	if e.PromptSHA256 != PromptDigest("hello") {
		t.Errorf("PromptSHA256 = %q", e.PromptSHA256)
	}
	if e.Seq != 0 || e.PrevHash != "" || e.Hash != "" {
		t.Errorf("chain fields not cleared: %d %q %q", e.Seq, e.PrevHash, e.Hash)
	}

	for name, bad := range map[string]*Event{
		"unknown type":  {Type: "proxy.cal"},
		"spoofed code":  {Type: TypeLogin, Code: "PAM-P001"},
		"unknown actor": {Type: TypeLogin, Actor: &Actor{Kind: "robot"}},
	} {
		if err := bad.Normalize(now); err == nil {
			t.Errorf("%s: Normalize accepted %+v", name, bad)
		}
	}
}

func TestNormalizeTruncatesOnRuneBoundary(t *testing.T) {
	long := strings.Repeat("é", MaxTextBytes) // 2 bytes each
	e := &Event{Type: TypeProxyCall, Prompt: long, Response: long}
	if err := e.Normalize(time.Now()); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{"prompt": e.Prompt, "response": e.Response} {
		if len(s) > MaxTextBytes || !utf8.ValidString(s) || !strings.HasSuffix(s, truncMarker) {
			t.Errorf("%s: len %d, valid %v, suffix %q", name, len(s), utf8.ValidString(s), s[len(s)-20:])
		}
	}
	if e.PromptSHA256 != PromptDigest(long) {
		t.Error("PromptSHA256 must cover the whole prompt, not the truncated one")
	}
}

// Normalize replaces invalid UTF-8 in the event's strings, but the actor,
// client, maps and slices the caller passed are copied, not changed: the
// caller may share them with other events. Valid ones are kept as they are.
func TestNormalizeReplacesInvalidUTF8InCopies(t *testing.T) {
	actor := &Actor{Subject: "s\xff", Groups: []string{"ok", "g\xfe"}}
	client := &Client{UserAgent: "bad\xff\xfe"}
	reasons := []string{"r\xff"}
	details := map[string]string{"id": "req\xc3", "k\xff": "a", "k\xfe": "b"}
	masked := map[string]int{"EMAIL\xff": 1, "EMAIL\uFFFD": 2}
	e := &Event{Type: TypeProxyCall, Actor: actor, Client: client, Reasons: reasons, Details: details, Masked: masked,
		Prompt: strings.Repeat("a\xff", MaxTextBytes/2)}
	if err := e.Normalize(time.Now()); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(e)
	if !utf8.Valid(b) || strings.Contains(string(b), `\ufffd`) {
		t.Errorf("invalid UTF-8 left in the event: %s", b)
	}
	if e.Actor.Subject != "s\uFFFD" || e.Actor.Groups[1] != "g\uFFFD" || e.Client.UserAgent != "bad\uFFFD" || e.Reasons[0] != "r\uFFFD" {
		t.Errorf("actor %+v, client %+v, reasons %q", e.Actor, e.Client, e.Reasons)
	}
	// Keys that become one keep the valid key's value, or else the least
	// key's, whatever the map's order.
	if e.Details["id"] != "req\uFFFD" || e.Details["k\uFFFD"] != "b" || len(e.Details) != 2 || e.Masked["EMAIL\uFFFD"] != 2 || len(e.Masked) != 1 {
		t.Errorf("details %q, masked %v", e.Details, e.Masked)
	}
	if len(e.Prompt) > MaxTextBytes || !strings.HasSuffix(e.Prompt, truncMarker) || e.PromptSHA256 != PromptDigest(strings.Repeat("a\xff", MaxTextBytes/2)) {
		t.Errorf("prompt of %d bytes, digest %s: want at most %d, truncated, the digest of the prompt sent", len(e.Prompt), e.PromptSHA256, MaxTextBytes)
	}
	if actor.Subject != "s\xff" || actor.Groups[1] != "g\xfe" || client.UserAgent != "bad\xff\xfe" || reasons[0] != "r\xff" ||
		details["id"] != "req\xc3" || len(details) != 3 || masked["EMAIL\xff"] != 1 || len(masked) != 2 {
		t.Errorf("the caller's values changed: %+v %+v %q %q %v", actor, client, reasons, details, masked)
	}

	valid := sampleEvent(1)
	a, c, d, m, r, g := valid.Actor, valid.Client, valid.Details, valid.Masked, valid.Reasons, valid.Actor.Groups
	if err := valid.Normalize(time.Now()); err != nil {
		t.Fatal(err)
	}
	d["new"], m["NEW"] = "x", 1 // the event holds the very maps
	if valid.Actor != a || valid.Client != c || valid.Details["new"] != "x" || valid.Masked["NEW"] != 1 || &valid.Reasons[0] != &r[0] || &valid.Actor.Groups[0] != &g[0] {
		t.Error("a valid event's actor, client, maps or slices were copied")
	}
}

func TestFilterMatch(t *testing.T) {
	at := time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC)
	e := Event{Type: TypeRequestApproved, Time: at, Grant: "g1", Request: "r1",
		Actor: &Actor{Subject: "sub-1", Email: "ada@example.com"}}
	cases := []struct {
		name string
		f    Filter
		want bool
	}{
		{"zero", Filter{}, true},
		{"type", Filter{Types: []Type{TypeRequestApproved}}, true},
		{"other type", Filter{Types: []Type{TypeLogin}}, false},
		{"any of types", Filter{Types: []Type{TypeLogin, TypeRequestApproved}}, true},
		{"prefix", Filter{Types: []Type{"request.*"}}, true},
		{"other prefix", Filter{Types: []Type{"proxy.*"}}, false},
		{"subject", Filter{Actor: "sub-1"}, true},
		{"email", Filter{Actor: "ada@example.com"}, true},
		{"other actor", Filter{Actor: "bob"}, false},
		{"grant", Filter{Grant: "g1"}, true},
		{"other grant", Filter{Grant: "g2"}, false},
		{"request", Filter{Request: "r1"}, true},
		{"other request", Filter{Request: "r2"}, false},
		{"since before", Filter{Since: at.Add(-time.Second)}, true},
		{"since equal", Filter{Since: at}, true},
		{"since after", Filter{Since: at.Add(time.Second)}, false},
		{"all", Filter{Types: []Type{"request.*"}, Actor: "sub-1", Grant: "g1", Request: "r1", Since: at}, true},
	}
	for _, c := range cases {
		if got := c.f.Match(e); got != c.want {
			t.Errorf("%s: Match = %v, want %v", c.name, got, c.want)
		}
	}
	if (Filter{Actor: "sub-1"}).Match(Event{Type: TypeLogin}) {
		t.Error("actor filter matched an event without actor")
	}
	// Black-box red team: --actor alice mixed corp's alice with a partner
	// IdP's alice. Issuer narrows the actor to one issuer's.
	corp := Event{Type: TypeLogin, Actor: &Actor{Subject: "alice", Issuer: "corp"}}
	partner := Event{Type: TypeLogin, Actor: &Actor{Subject: "alice", Email: "pal@partner.com", Issuer: "partner"}}
	for _, c := range []struct {
		f             Filter
		corp, partner bool
	}{
		{Filter{Actor: "alice"}, true, true},
		{Filter{Actor: "alice", Issuer: "corp"}, true, false},
		{Filter{Actor: "alice", Issuer: "partner"}, false, true},
		{Filter{Issuer: "partner"}, false, true},
		{Filter{Issuer: "Corp"}, false, false},
	} {
		if c.f.Match(corp) != c.corp || c.f.Match(partner) != c.partner {
			t.Errorf("%+v: corp %v partner %v, want %v %v", c.f, c.f.Match(corp), c.f.Match(partner), c.corp, c.partner)
		}
	}
	if (Filter{Issuer: "corp"}).Match(Event{Type: TypeLogin}) {
		t.Error("issuer filter matched an event without actor")
	}
}

func TestCloneIsDeep(t *testing.T) {
	e := sampleEvent(1)
	c := e.Clone()
	e.Actor.Groups[0] = "changed"
	e.Details["k"] = "changed"
	e.Masked["EMAIL"] = 99
	e.Reasons[0] = "changed"
	e.Usage.TotalTokens = 1
	e.Client.UserAgent = "changed"
	a, _ := json.Marshal(c)
	b, _ := json.Marshal(sampleEvent(1))
	if string(a) != string(b) {
		t.Errorf("clone shares memory with the original:\n%s\n%s", a, b)
	}
}

func TestParseSyncMode(t *testing.T) {
	for in, want := range map[string]SyncMode{"": SyncDurable, "durable": SyncDurable, "async": SyncAsync} {
		if got, err := ParseSyncMode(in); err != nil || got != want {
			t.Errorf("ParseSyncMode(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseSyncMode("fast"); err == nil {
		t.Error("ParseSyncMode accepted fast")
	}
}
