package cli

import (
	"testing"

	"github.com/pamctl/pamctl/broker/audit"
)

// People are shown by the name their IdP gave, the subject kept beside it
// when it differs; an opaque subject alone when there is no name.
func TestActorLabel(t *testing.T) {
	for _, c := range []struct {
		a    audit.Actor
		want string
	}{
		{audit.Actor{Subject: "00u3x9q7WbT", Display: "sam@example.com"}, "sam@example.com (00u3x9q7WbT)"},
		{audit.Actor{Subject: "alice", Display: "alice"}, "alice"},
		{audit.Actor{Subject: "00u8f2k1ZxQ"}, "00u8f2k1ZxQ"},
	} {
		if got := actorLabel(&c.a); got != c.want {
			t.Errorf("actorLabel(%+v) = %q, want %q", c.a, got, c.want)
		}
	}
}
