package cli

import (
	"testing"

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
		{audit.Actor{Subject: "u1", Display: "root (admin socket)", Issuer: "corp"}, `root (admin socket) (u1) via issuer "corp"`},
	} {
		if got := actorLabel(&c.a); got != c.want {
			t.Errorf("actorLabel(%+v) = %q, want %q", c.a, got, c.want)
		}
	}
}
