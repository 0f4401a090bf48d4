package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A red team rewrote a whole export, dropped its signed head and put a
// range line at seq 0 in front: `audit verify --file` exited 0 ("audit
// range consistent"), which is what scripts check. An unsigned range is
// consistent by design (a file sink's active file is one), so --signed
// makes verify fail unless a head's signature was checked over the
// events; a whole export with its head still passes.
func TestAuditVerifySignedRefusesWhatNoSignatureCovers(t *testing.T) {
	s, jwks := trailServer(t)
	s.stop()
	full := filepath.Join(s.dir, "all.jsonl")
	s.as(t, "admin", "", "audit", "export", "--file", full).must(t, "export")
	raw, _ := os.ReadFile(full)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	if !strings.HasPrefix(lines[len(lines)-1], `{"head":`) {
		t.Fatalf("the export does not end with its head: %s", lines[len(lines)-1])
	}
	events := lines[:len(lines)-1]
	var first struct{ Hash string }
	json.Unmarshal([]byte(events[0]), &first)
	write := func(name string, lines ...string) string {
		p := filepath.Join(s.dir, name)
		if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	genesis := `{"range":{"seq":0,"hash":"` + strings.Repeat("0", 64) + `"}}`
	unsigned := map[string]string{
		"range at genesis, head dropped": write("genesis.jsonl", append([]string{genesis}, events...)...),
		"range after seq 1":              write("part.jsonl", append([]string{`{"range":{"seq":1,"hash":"` + first.Hash + `"}}`}, events[1:]...)...),
	}
	for name, file := range unsigned {
		if r := s.as(t, "admin", "", "audit", "verify", "--file", file, "--jwks", jwks); r.code != ExitOK {
			t.Fatalf("%s without --signed: exit %d (consistent ranges verify):\n%s", name, r.code, r.err)
		}
		r := s.as(t, "admin", "", "audit", "verify", "--file", file, "--jwks", jwks, "--signed")
		if r.code != ExitError || !strings.Contains(r.err, "--signed: the range is consistent but no signed head covers it") {
			t.Fatalf("%s with --signed: exit %d, want %d saying why:\n%s", name, r.code, ExitError, r.err)
		}
		r = s.as(t, "admin", "", "audit", "verify", "--file", file, "--jwks", jwks, "--signed", "-o", "json")
		var out struct {
			OK     bool   `json:"ok"`
			Error  string `json:"error"`
			Report struct {
				Signed bool `json:"signed"`
			} `json:"report"`
		}
		if err := json.Unmarshal([]byte(r.out), &out); err != nil || r.code != ExitError || out.OK || out.Report.Signed || !strings.Contains(out.Error, "--signed") {
			t.Fatalf("%s with --signed -o json: exit %d, %v:\n%s", name, r.code, err, r.out)
		}
	}
	// A forged event chained after the last one, before the head line:
	// consistent, and the head's signature still checks, but it covers
	// none of the added event (review C).
	last := events[len(events)-1]
	var lastEv struct {
		Seq  uint64 `json:"seq"`
		Hash string `json:"hash"`
	}
	json.Unmarshal([]byte(last), &lastEv)
	forged := strings.Replace(last, fmt.Sprintf(`{"seq":%d,`, lastEv.Seq), fmt.Sprintf(`{"seq":%d,`, lastEv.Seq+1), 1)
	forged = regexp.MustCompile(`"prev_hash":"[0-9a-f]{64}"`).ReplaceAllString(forged, `"prev_hash":"`+lastEv.Hash+`"`)
	canonical := forged[:len(forged)-75] + "}"
	prev, _ := hex.DecodeString(lastEv.Hash)
	sum := sha256.Sum256(append(prev, canonical...))
	forged = canonical[:len(canonical)-1] + `,"hash":"` + hex.EncodeToString(sum[:]) + `"}`
	added := write("added.jsonl", append(append(append([]string{}, events...), forged), lines[len(lines)-1])...)
	if r := s.as(t, "admin", "", "audit", "verify", "--file", added, "--jwks", jwks); r.code != ExitOK || !strings.Contains(r.err, "1 events after the signed head") {
		t.Fatalf("the added event does not chain (the case is wrong): exit %d:\n%s", r.code, r.err)
	}
	if r := s.as(t, "admin", "", "audit", "verify", "--file", added, "--jwks", jwks, "--signed"); r.code != ExitError || !strings.Contains(r.err, "are not covered by its signature") {
		t.Fatalf("an event added before the head passes --signed: exit %d:\n%s", r.code, r.err)
	}
	if r := s.as(t, "admin", "", "audit", "verify", "--file", full, "--jwks", jwks, "--signed"); r.code != ExitOK {
		t.Fatalf("a whole export with its head fails --signed: exit %d:\n%s", r.code, r.err)
	}
	if r := s.as(t, "admin", "", "audit", "verify", "--signed"); r.code != ExitOK {
		t.Fatalf("the deployment's trail fails --signed: exit %d:\n%s", r.code, r.err)
	}
}
