package ui

import (
	"context"
	"html"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/policy"
)

// A display name is whatever the IdP let its owner set: one holding
// parentheses or a look-alike quote must not read as another person's
// name and subject. The queue, the item page (requester and reviewers)
// and the audit view quote it (safetext.Party), as the CLI and chat do.
func TestDisplayNameWithParenthesesIsQuoted(t *testing.T) {
	e := newEnv(t)
	terms := policy.Terms{Required: true, Approvers: policy.Subjects{Groups: []string{"security"}}, Count: 2}
	mallory := broker.Identity{Subject: "mallory", Display: "alice (admin@corp)", Issuer: "dev"}
	eve := broker.Identity{Subject: "eve", Display: "bob\u201d (security", Issuer: "dev"}
	e.svc.mu.Lock()
	e.svc.reqs["req_party"] = &broker.Request{ID: "req_party", Kind: broker.KindAccess, State: broker.StatePending, Requester: mallory,
		Scopes: []string{"model:gpt-4o"}, TTL: time.Hour, CreatedAt: time.Now(), PendingUntil: time.Now().Add(time.Hour), Approval: terms,
		Reviews: []broker.Review{{Reviewer: eve, Approve: true, At: time.Now()}}}
	e.svc.mu.Unlock()
	e.audit.Append(context.Background(), &audit.Event{Type: audit.TypeRequestCreated, Actor: &audit.Actor{Subject: "mallory", Display: mallory.Display}, Review: "req_party"})
	c := browser(t)
	e.login(t, c, "/ui/", "bob", "security")

	wantMallory := `"alice (admin@corp)" (mallory)`
	wantEve := "\"bob\u201d\u201d (security\" (eve)"
	for _, page := range []struct{ path, want string }{
		{"/ui/", wantMallory},
		{"/ui/requests/req_party", wantMallory},
		{"/ui/requests/req_party", wantEve},
		{"/ui/audit", wantMallory},
	} {
		res, body := get(t, c, e.base+page.path)
		if res.StatusCode != 200 {
			t.Fatalf("%s: %d", page.path, res.StatusCode)
		}
		text := html.UnescapeString(body)
		if !strings.Contains(text, page.want) {
			t.Errorf("%s does not name the person as %q", page.path, page.want)
		}
		if strings.Contains(text, "(admin@corp) (mallory)") && !strings.Contains(text, wantMallory) {
			t.Errorf("%s shows the display name unquoted", page.path)
		}
	}
}

// person quotes the subject it shows with an email, and an email holding
// an angle bracket, as it quotes a display name.
func TestPersonQuotesTheSubjectBesideTheEmail(t *testing.T) {
	for _, tc := range []struct {
		i    broker.Identity
		want string
	}{
		{broker.Identity{Subject: "00u1", Email: "sam@example.com"}, "00u1 <sam@example.com>"},
		{broker.Identity{Subject: "bob (alice)", Email: "sam@example.com"}, `"bob (alice)" <sam@example.com>`},
		{broker.Identity{Subject: "u1", Email: "a> <b@x"}, `u1 <"a> <b@x">`},
		{broker.Identity{Subject: "bob (alice)"}, `"bob (alice)"`},
	} {
		if got := person(tc.i); got != tc.want {
			t.Errorf("person(%+v) = %q, want %q", tc.i, got, tc.want)
		}
	}
}
