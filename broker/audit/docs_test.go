package audit

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDocsMatchTheCode keeps docs/audit.md true: its type table is the
// code's table, and its examples (one per type) are sealed events that form
// a valid chain from genesis.
func TestDocsMatchTheCode(t *testing.T) {
	raw, err := os.ReadFile("../../docs/audit.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)

	rowRE := regexp.MustCompile("(?m)^\\| `([a-z.]+)` \\| (PAM-[A-Z]\\d{3}) \\| (.+) \\|$")
	var rows []TypeInfo
	for _, m := range rowRE.FindAllStringSubmatch(doc, -1) {
		rows = append(rows, TypeInfo{Type: Type(m[1]), Code: m[2], Description: m[3]})
	}
	if got, want := mustMarshal(t, rows), mustMarshal(t, Types()); got != want {
		t.Errorf("type table in docs/audit.md differs from audit.Types():\n%s\nwant\n%s", got, want)
	}

	exRE := regexp.MustCompile("(?s)### `([a-z.]+)` \\((PAM-[A-Z]\\d{3})\\)\n\n```json\n(.*?)\n```")
	var export bytes.Buffer
	seen := map[Type]bool{}
	var last Event
	for _, m := range exRE.FindAllStringSubmatch(doc, -1) {
		var compact bytes.Buffer
		if err := json.Compact(&compact, []byte(m[3])); err != nil {
			t.Fatalf("example %s: %v", m[1], err)
		}
		if err := json.Unmarshal(compact.Bytes(), &last); err != nil {
			t.Fatal(err)
		}
		if string(last.Type) != m[1] || last.Code != m[2] {
			t.Errorf("example under %s (%s) is a %s (%s)", m[1], m[2], last.Type, last.Code)
		}
		if code, ok := CodeOf(last.Type); !ok || code != last.Code {
			t.Errorf("example %s has code %s, table says %s", last.Type, last.Code, code)
		}
		seen[last.Type] = true
		export.Write(compact.Bytes())
		export.WriteByte('\n')
	}
	for _, info := range Types() {
		if !seen[info.Type] {
			t.Errorf("docs/audit.md has no example of %s", info.Type)
		}
	}
	rep, err := VerifyJSONL(&export, nil)
	if err != nil {
		t.Fatalf("the documented examples do not verify: %v", err)
	}
	if rep.Events != uint64(len(seen)) {
		t.Fatalf("verified %d examples", rep.Events)
	}

	headRE := regexp.MustCompile("(?m)^(\\{\"head\":.*\\})$")
	m := headRE.FindStringSubmatch(doc)
	if m == nil {
		t.Fatal("no head example in docs/audit.md")
	}
	var hl headLine
	if err := json.Unmarshal([]byte(m[1]), &hl); err != nil {
		t.Fatal(err)
	}
	if hl.Head.Seq != last.Seq || hl.Head.Hash != last.Hash {
		t.Errorf("documented head (%d %s) is not the last example (%d %s)", hl.Head.Seq, hl.Head.Hash, last.Seq, last.Hash)
	}
	if !strings.Contains(doc, "```\n"+string(hl.Head.Message())+"```") {
		t.Errorf("docs/audit.md does not show the signed message:\n%s", hl.Head.Message())
	}
}

func mustMarshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
