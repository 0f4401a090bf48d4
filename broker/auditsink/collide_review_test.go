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
