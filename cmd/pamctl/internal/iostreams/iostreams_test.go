package iostreams

import (
	"strings"
	"testing"
)

func TestTableOnTerminalAndPiped(t *testing.T) {
	ios, _, out, _ := Test()
	tb := ios.NewTable("NAME", "FINGERPRINT")
	tb.Row("openai", "…abcd sha256:0123")
	tb.Row("azure-long-name", "…wxyz sha256:4567")
	if err := tb.Render(); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "openai\t…abcd sha256:0123\nazure-long-name\t…wxyz sha256:4567\n"; got != want {
		t.Fatalf("piped table:\n%q\nwant\n%q", got, want)
	}

	ios, _, out, _ = Test()
	ios.SetTTY(false, true, true)
	tb = ios.NewTable("NAME", "FINGERPRINT")
	tb.Row("openai", "…abcd sha256:0123")
	tb.Row("azure-long-name", "…wxyz sha256:4567")
	tb.Render()
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "NAME") || !strings.Contains(lines[0], "FINGERPRINT") {
		t.Fatalf("terminal table has no header:\n%s", out.String())
	}
	// Columns line up: the fingerprint column starts at the same place.
	if strings.Index(lines[1], "…abcd") != strings.Index(lines[2], "…wxyz") {
		t.Fatalf("columns not aligned:\n%s", out.String())
	}
}

func TestJSONExportersDoNotEscapeHTML(t *testing.T) {
	ios, _, out, _ := Test()
	ios.JSON(map[string]string{"k": "<a&b>"})
	ios.JSONLine(map[string]int{"n": 1})
	if got := out.String(); got != "{\n  \"k\": \"<a&b>\"\n}\n{\"n\":1}\n" {
		t.Fatalf("got %q", got)
	}
}
