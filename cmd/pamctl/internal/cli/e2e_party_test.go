package cli

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/oidc/devissuer"
)

// TestEndToEndApproverSeesTheSubject: a display name is whatever the IdP
// let its owner set. mallory names herself "alice" (and, in a second
// login, "аlice" with a Cyrillic а); the approver's list, the
// approval message and the audit tail show mallory's subject beside it,
// so an approver cannot take her request for alice's.
func TestEndToEndApproverSeesTheSubject(t *testing.T) {
	s := startServer(t)
	s.as(t, "bob", "", "login", "--user", "bob", "--groups", "security").must(t, "bob login")
	for i, name := range []string{"alice", "\u0430lice"} {
		raw, err := s.app.devIss.Mint(devissuer.Claims{Subject: "mallory", Groups: []string{"ml"}, Extra: map[string]any{"preferred_username": name}})
		if err != nil {
			t.Fatal(err)
		}
		s.as(t, "mallory", raw, "login", "--id-token-file", "-").must(t, "mallory login")
		r := s.as(t, "mallory", "", "request", "--scope", "model:gpt-4o", "--reason", "eval", "--nowait", "-o", "json").must(t, "request")
		var req struct{ ID string }
		if err := json.Unmarshal([]byte(r.out), &req); err != nil || req.ID == "" {
			t.Fatalf("request: %v %s", err, r.out)
		}
		id := req.ID
		list := s.as(t, "bob", "", "requests", "--pending").must(t, "bob's list")
		if !strings.Contains(list.out, name+" (mallory)") {
			t.Fatalf("login %d: the list hides the subject:\n%q", i, list.out)
		}
		ok := s.as(t, "bob", "", "approve", id).must(t, "approve")
		if !strings.Contains(ok.err+ok.out, name+" (mallory)") {
			t.Fatalf("login %d: the approval hides the subject: %+v", i, ok)
		}
	}
	tail := s.asTTY(t, "bob", "audit", "tail", "-n", "50").must(t, "audit tail")
	if !strings.Contains(tail.out, "alice (mallory)") {
		t.Fatalf("the audit tail hides the subject:\n%s", tail.out)
	}
}
