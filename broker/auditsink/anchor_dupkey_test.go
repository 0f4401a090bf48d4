package auditsink_test

import (
	"context"
	"strings"
	"testing"

	"github.com/pamctl/pamctl/broker/auditsink"
)

// TestReadAnchorsRefusesDuplicateKeys: a line naming "head" twice (both
// heads validly signed) is refused rather than read as the last one, and
// so is a repeated key inside the head, case-folded as encoding/json
// matches it.
func TestReadAnchorsRefusesDuplicateKeys(t *testing.T) {
	tr := newTrail(t, 1000)
	tr.add(t, 3, "x")
	h1, err := tr.log.SignHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tr.add(t, 2, "y")
	h2, err := tr.log.SignHead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l1, _ := auditsink.Record{Head: h1}.Line()
	l2, _ := auditsink.Record{Head: h2}.Line()
	inner1 := strings.TrimSuffix(strings.TrimPrefix(string(l1), `{"head":`), "}")
	inner2 := strings.TrimSuffix(strings.TrimPrefix(string(l2), `{"head":`), "}")
	seqKey := func(key string) string { // the head with its seq repeated under key
		return `{"head":` + strings.TrimSuffix(inner1, "}") + `,"` + key + `":99}}`
	}
	for name, line := range map[string]string{
		"head twice":             `{"head":` + inner1 + `,"head":` + inner2 + `}`,
		"head twice, other way":  `{"head":` + inner2 + `,"head":` + inner1 + `}`,
		"seq twice":              seqKey("seq"),
		"seq twice, other case":  seqKey("SEQ"),
		"hash twice, other case": `{"head":` + strings.TrimSuffix(inner1, "}") + `,"Hash":"` + strings.Repeat("c", 64) + `"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := auditsink.ReadAnchors(strings.NewReader(string(l1)+"\n"+line+"\n"), tr.keys)
			if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "duplicate key") {
				t.Fatalf("got %v, want line 2 refused for a duplicate key", err)
			}
		})
	}
	heads, err := auditsink.ReadAnchors(strings.NewReader(string(l1)+"\n"+string(l2)+"\n"), tr.keys)
	if err != nil || len(heads) != 2 {
		t.Fatalf("good lines: %v %v", heads, err)
	}
}
