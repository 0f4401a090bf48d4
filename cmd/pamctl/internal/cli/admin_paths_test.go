package cli

import (
	"context"
	"maps"
	"reflect"
	"slices"
	"testing"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/store"
)

// adminEvents returns the vault and key events of the data dir's trail.
func adminEvents(t *testing.T, s *testServer) []audit.Event {
	t.Helper()
	cfg := &Config{DataDir: s.app.cfg.DataDir, MasterKeyFile: s.app.cfg.MasterKeyFile}
	l, err := openExistingLocal(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	kr, err := l.keyring(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lg, err := l.db.AuditLog(store.AuditOptions{Signer: kr})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	var out []audit.Event
	lg.Range(context.Background(), 0, func(e audit.Event) bool {
		switch e.Type {
		case audit.TypeVaultSet, audit.TypeVaultRemoved, audit.TypeKeyRotated:
			out = append(out, e)
		}
		return true
	})
	return out
}

// Every admin change is audited whichever path it takes: through the
// running server's admin socket, or on the data dir with the server
// stopped. Both paths write the same events, told apart only by "via".
func TestAdminChangesAuditedOnBothPaths(t *testing.T) {
	s := startServer(t)
	const secret = "sk-test-0123456789abcdefghij"
	run := func() {
		s.as(t, "admin", secret, "vault", "set", "openai").must(t, "vault set")
		s.as(t, "admin", "", "vault", "rm", "openai").must(t, "vault rm")
		s.as(t, "admin", "", "keys", "rotate").must(t, "keys rotate")
	}
	run()
	s.stop()
	run()
	if r := s.as(t, "admin", "", "vault", "rm", "openai"); r.code != ExitNotFound {
		t.Fatalf("rm of a missing entry on the data dir: %+v", r)
	}

	evs := adminEvents(t, s)
	if len(evs) != 6 {
		t.Fatalf("want 3 admin events per path, got %d: %+v", len(evs), evs)
	}
	for i := range 3 {
		sock, dir := evs[i], evs[i+3]
		if sock.Details["via"] != broker.ViaSocket || dir.Details["via"] != broker.ViaDataDir {
			t.Errorf("event %d: via %q and %q", i, sock.Details["via"], dir.Details["via"])
		}
		if sock.Type != dir.Type || !reflect.DeepEqual(sock.Actor, dir.Actor) || sock.Decision != dir.Decision {
			t.Errorf("event %d differs by path:\nsocket:   %+v %+v\ndata dir: %+v %+v", i, sock, *sock.Actor, dir, *dir.Actor)
		}
		if !slices.Equal(slices.Sorted(maps.Keys(sock.Details)), slices.Sorted(maps.Keys(dir.Details))) {
			t.Errorf("event %d details differ by path: %v vs %v", i, sock.Details, dir.Details)
		}
		if sock.Type != audit.TypeKeyRotated && sock.Target != dir.Target {
			t.Errorf("event %d target: %q vs %q", i, sock.Target, dir.Target)
		}
		if sock.Actor.Subject != broker.AdminIdentity.Subject {
			t.Errorf("event %d actor: %+v", i, sock.Actor)
		}
	}
	if evs[0].Details["fingerprint"] == "" || evs[0].Details["fingerprint"] != evs[3].Details["fingerprint"] {
		t.Errorf("vault.set fingerprints: %v vs %v", evs[0].Details, evs[3].Details)
	}
	s.as(t, "admin", "", "audit", "verify").must(t, "audit verify after admin changes on both paths")
}
