package auditsink

import "testing"

// TestDistinctCollectorsStayDistinct: two unnamed HTTP sinks that differ
// only in the token of their path (two Sumo Logic HTTP sources on one
// collector host, one per team) were two sinks with two cursors before
// path tokens were hidden. Hiding the token must not merge their cursor
// keys: the config would be refused on upgrade ("give one a distinct
// name"), and naming them drops the cursors AdoptRenamedCursors keeps
// only for unnamed sinks.
func TestDistinctCollectorsStayDistinct(t *testing.T) {
	a := SinkConfig{Type: TypeHTTP, URL: "https://collectors.sumologic.com/receiver/v1/http/ZaVnC4dhaV3CtLX7VUZ0bnIZ6D1IYh0j6k6ZQ3Cl2EA"}
	b := SinkConfig{Type: TypeHTTP, URL: "https://collectors.sumologic.com/receiver/v1/http/ZaVnC4dhaV1_other_team_source_tokenQ3Cl2EB"}
	if a.ID() == b.ID() {
		t.Errorf("two collectors share the cursor key %q", a.ID())
	}
	if errs := ValidateAll([]SinkConfig{a, b}, AnchorConfig{}); len(errs) > 0 {
		t.Errorf("a config valid before the upgrade is refused: %v", errs)
	}
}

// A sink's old cursor key is deleted only when no configured sink or
// anchor goes by that name now: one named exactly like another's old key
// keeps its cursor.
func TestOldCursorNameOfAnotherSinkIsKept(t *testing.T) {
	a := SinkConfig{Type: TypeHTTP, URL: "https://collectors.sumologic.com/receiver/v1/http/ZaVnC4dhaV3CtLX7VUZ0bnIZ6D1IYh0j6k6ZQ3Cl2EA"}
	legacy := a.legacyID()
	if legacy == "" || legacy == a.ID() {
		t.Fatalf("legacy %q, ID %q", legacy, a.ID())
	}
	stored := map[string]Cursor{legacy: {Seq: 3}}
	m := &Manager{opts: Options{Sinks: []SinkConfig{a}}, stored: stored}
	if got := m.oldName(legacy); got != legacy {
		t.Errorf("oldName = %q, want the old key deleted", got)
	}
	if got := m.oldName(""); got != "" {
		t.Errorf("oldName(\"\") = %q", got)
	}
	m.opts.Sinks = append(m.opts.Sinks, SinkConfig{Name: legacy, Type: TypeFile, Path: "/var/log/x"})
	if got := m.oldName(legacy); got != "" {
		t.Errorf("the cursor of a sink named %q would be deleted", legacy)
	}
	m.opts.Sinks = m.opts.Sinks[:1]
	delete(stored, legacy)
	if got := m.oldName(legacy); got != "" {
		t.Errorf("nothing stored, yet oldName = %q", got)
	}
}
