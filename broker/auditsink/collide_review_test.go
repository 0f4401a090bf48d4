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
// keeps its cursor, and its cursor is not adopted by the other either.
func TestOldCursorNameOfAnotherSinkIsKept(t *testing.T) {
	a := SinkConfig{Type: TypeHTTP, URL: "https://collectors.sumologic.com/receiver/v1/http/ZaVnC4dhaV3CtLX7VUZ0bnIZ6D1IYh0j6k6ZQ3Cl2EA"}
	formers := a.formerIDs()
	if len(formers) != 1 || formers[0] == a.ID() {
		t.Fatalf("formers %q, ID %q", formers, a.ID())
	}
	legacy := formers[0]
	stored := map[string]Cursor{legacy: {Seq: 3}}
	m := &Manager{opts: Options{Sinks: []SinkConfig{a}}, stored: stored}
	if got := m.oldNames(formers); len(got) != 1 || got[0] != legacy {
		t.Errorf("oldNames = %q, want the old key deleted", got)
	}
	if got := m.oldNames([]string{""}); len(got) != 0 {
		t.Errorf("oldNames(\"\") = %q", got)
	}
	named := SinkConfig{Name: legacy, Type: TypeFile, Path: "/var/log/x"}
	m.opts.Sinks = append(m.opts.Sinks, named)
	if got := m.oldNames(formers); len(got) != 0 {
		t.Errorf("the cursor of a sink named %q would be deleted", legacy)
	}
	cursors := map[string]Cursor{legacy: {Seq: 3}}
	AdoptRenamedCursors(nil, cursors, m.opts.Sinks, AnchorConfig{})
	if _, ok := cursors[a.ID()]; ok {
		t.Errorf("the cursor of the sink named %q was adopted by %q", legacy, a.ID())
	}
	m.opts.Sinks = m.opts.Sinks[:1]
	delete(stored, legacy)
	if got := m.oldNames(formers); len(got) != 0 {
		t.Errorf("nothing stored, yet oldNames = %q", got)
	}
}
