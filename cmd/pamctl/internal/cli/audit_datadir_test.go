package cli

import (
	"encoding/json"
	"path/filepath"
	"testing"
)

// TestAuditVerifyDataDirReadsThatDir: with a session on a running broker,
// `audit verify --data-dir OTHER` checks OTHER's trail (a stopped,
// restored or damaged deployment), not the broker's.
func TestAuditVerifyDataDirReadsThatDir(t *testing.T) {
	other := startServerWith(t, nil)
	other.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "login on the other deployment")
	otherDir, otherKey := filepath.Join(other.dir, "data"), filepath.Join(other.dir, "master.key")
	other.stop()
	events := func(r result) uint64 {
		t.Helper()
		var v struct {
			OK     bool `json:"ok"`
			Report struct {
				Events uint64 `json:"events"`
			} `json:"report"`
		}
		if err := json.Unmarshal([]byte(r.out), &v); err != nil || !v.OK {
			t.Fatalf("verify: %v %s %s", err, r.out, r.err)
		}
		return v.Report.Events
	}
	alone := events(other.as(t, "admin", "", "audit", "verify", "-o", "json", "--data-dir", otherDir, "--master-key-file", otherKey).must(t, "verify the stopped dir"))

	s := startServerWith(t, nil)
	s.as(t, "bob", "", "login", "--user", "bob", "--groups", "security").must(t, "bob login")
	for range 3 {
		s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "more events on the running broker")
	}
	running := events(s.as(t, "bob", "", "audit", "verify", "-o", "json").must(t, "verify through the session"))
	if running == alone {
		t.Fatalf("the two trails have the same length (%d): the test cannot tell them apart", running)
	}
	if got := events(s.as(t, "bob", "", "audit", "verify", "-o", "json", "--data-dir", otherDir, "--master-key-file", otherKey).must(t, "verify --data-dir with a session")); got != alone {
		t.Fatalf("verify --data-dir %s read %d events, that dir holds %d (the running broker %d)", otherDir, got, alone, running)
	}
}
