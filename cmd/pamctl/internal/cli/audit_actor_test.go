package cli

import (
	"testing"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
)

// People are shown by the name their IdP gave, the subject kept beside it
// when it differs; an opaque subject alone when there is no name. Only the
// admin socket reads as the admin socket.
func TestActorLabel(t *testing.T) {
	for _, c := range []struct {
		a    audit.Actor
		want string
	}{
		{audit.Actor{Subject: "00u3x9q7WbT", Display: "sam@example.com"}, "sam@example.com (00u3x9q7WbT)"},
		{audit.Actor{Subject: "alice", Display: "alice"}, "alice"},
		{audit.Actor{Subject: "00u8f2k1ZxQ"}, "00u8f2k1ZxQ"},
		// The admin socket is marked; an IdP's look-alike names its issuer.
		{audit.Actor{Subject: "local-admin", Issuer: "unix-socket"}, "local-admin (admin socket)"},
		{audit.Actor{Subject: "local-admin", Issuer: "corp"}, `local-admin via issuer "corp"`},
		{audit.Actor{Subject: "Local-Admin", Issuer: "corp"}, `Local-Admin via issuer "corp"`},
		{audit.Actor{Subject: "u1", Display: "local-admin", Issuer: "corp"}, `local-admin (u1) via issuer "corp"`},
		{audit.Actor{Subject: "u1", Display: "root (admin socket)", Issuer: "corp"}, `"root (admin socket)" (u1) via issuer "corp"`},
		// Look-alike letters, spaces and dashes, and invisible characters.
		{audit.Actor{Subject: "u1", Display: "local-admin (admin\u00a0socket)", Issuer: "corp"}, "\"local-admin (admin\u00a0socket)\" (u1) via issuer \"corp\""},
		{audit.Actor{Subject: "u1", Display: "local\u2011admin", Issuer: "corp"}, "\"local\u2011admin\" (u1) via issuer \"corp\""}, // a non-ASCII dash: quoted, as Join quotes punctuation's look-alikes
		{audit.Actor{Subject: "u1", Display: "local-\u0430dmin", Issuer: "corp"}, "local-\u0430dmin (u1) via issuer \"corp\""},
		{audit.Actor{Subject: "u1", Display: "loc\u200bal admin", Issuer: "corp"}, "loc\u200bal admin (u1) via issuer \"corp\""},
		{audit.Actor{Subject: "u1", Display: "\uff4c\uff4f\uff43al-admin", Issuer: "corp"}, "\uff4c\uff4f\uff43al-admin (u1) via issuer \"corp\""},
		// Names that merely share letters, or are in another alphabet, are left alone.
		{audit.Actor{Subject: "u1", Display: "Ольга Петрова", Issuer: "corp"}, "Ольга Петрова (u1)"},
		{audit.Actor{Subject: "u1", Display: "山田太郎さんのアカウントです", Issuer: "corp"}, "山田太郎さんのアカウントです (u1)"},
		{audit.Actor{Subject: "u1", Display: "Admin Sockets Team", Issuer: "corp"}, `Admin Sockets Team (u1) via issuer "corp"`},
		{audit.Actor{Subject: "u1", Display: "sam@example.com", Issuer: "corp"}, "sam@example.com (u1)"},
		// A display name (or a subject) holding parentheses, a quote or a
		// look-alike of them is quoted, so it cannot read as another
		// person's name and subject (safetext.Party).
		{audit.Actor{Subject: "mallory", Display: "alice (admin@corp)", Issuer: "corp"}, `"alice (admin@corp)" (mallory)`},
		{audit.Actor{Subject: "mallory", Display: "alice\uff08admin\uff09", Issuer: "corp"}, "\"alice\uff08admin\uff09\" (mallory)"},
		{audit.Actor{Subject: "mallory", Display: "alice\u201d (admin", Issuer: "corp"}, "\"alice\u201d\u201d (admin\" (mallory)"},
		{audit.Actor{Subject: "repo:o/r:ref:refs/heads/x) (alice", Display: "ci", Issuer: "gha"}, `ci ("repo:o/r:ref:refs/heads/x) (alice")`},
		{audit.Actor{Subject: "bob (alice)", Issuer: "corp"}, `"bob (alice)"`},
	} {
		if got := actorLabel(&c.a); got != c.want {
			t.Errorf("actorLabel(%+v) = %q, want %q", c.a, got, c.want)
		}
	}
}

// TestPartyNameAdminIsTheSocketOnly: a record with the admin socket's
// issuer name and subject but an IdP's URL (an IdP named so before the
// name was reserved) is not the admin socket.
func TestPartyNameAdminIsTheSocketOnly(t *testing.T) {
	if got := PartyName(broker.AdminIdentity); got != "local-admin (admin socket)" {
		t.Errorf("the admin socket: %q", got)
	}
	old := broker.Identity{Subject: "local-admin", Issuer: "unix-socket", IssuerURL: "https://old-idp.example"}
	if got := PartyName(old); got != `local-admin via issuer "unix-socket"` {
		t.Errorf("an old IdP's local-admin: %q", got)
	}
}
