package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"
)

// update re-chains docs/audit.md's examples in document order (seq,
// prev_hash, hash), then rewrites the head line and its signed message,
// signed with docsKey. Run after adding, removing or editing an example:
//
//	go test ./broker/audit -run TestDocsMatchTheCode -update
var update = flag.Bool("update", false, "re-chain the examples in docs/audit.md")

// docsKey signs the documented head: a fixed, published example key
// (kid k-2025-04-02), never a deployment's.
var docsKey = ed25519.NewKeyFromSeed(func() []byte { s := sha256.Sum256([]byte("pamctl docs/audit.md example key")); return s[:] }())

// TestDocsMatchTheCode keeps docs/audit.md true: its type table is the
// code's table, and its examples (one per type) are sealed events that form
// a valid chain from genesis.
func TestDocsMatchTheCode(t *testing.T) {
	raw, err := os.ReadFile("../../docs/audit.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	if *update {
		doc = rechainDocs(t, doc)
		if err := os.WriteFile("../../docs/audit.md", []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}

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
	if err := hl.Head.Check(Keys(map[string]ed25519.PublicKey{hl.Head.KID: docsKey.Public().(ed25519.PublicKey)})); err != nil {
		t.Errorf("the documented head's signature does not verify under the docs key (run with -update): %v", err)
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

// rechainDocs seals every example after the one before it and rewrites the
// head line and the signed-message block to the new last event.
func rechainDocs(t *testing.T, doc string) string {
	t.Helper()
	exRE := regexp.MustCompile("(?s)(### `[a-z.]+` \\(PAM-[A-Z]\\d{3}\\)\n\n```json\n)(.*?)(\n```)")
	prev := strings.Repeat("0", 64)
	var seq uint64
	var last Event
	doc = exRE.ReplaceAllStringFunc(doc, func(block string) string {
		m := exRE.FindStringSubmatch(block)
		var e Event
		if err := json.Unmarshal([]byte(m[2]), &e); err != nil {
			t.Fatalf("example: %v", err)
		}
		e.Seq, e.PrevHash, e.Hash = 0, "", ""
		d, err := NewDraft(&e, e.Time)
		if err != nil {
			t.Fatalf("example %s: %v", e.Type, err)
		}
		seq++
		line, hash, err := d.Seal(seq, prev)
		if err != nil {
			t.Fatal(err)
		}
		prev = hash
		last = d.Event(seq, "", hash)
		var out bytes.Buffer
		if err := json.Indent(&out, line, "", "  "); err != nil {
			t.Fatal(err)
		}
		return m[1] + out.String() + m[3]
	})
	headRE := regexp.MustCompile("(?m)^(\\{\"head\":.*\\})$")
	m := headRE.FindStringSubmatch(doc)
	if m == nil {
		t.Fatal("no head example in docs/audit.md")
	}
	var hl headLine
	if err := json.Unmarshal([]byte(m[1]), &hl); err != nil {
		t.Fatal(err)
	}
	oldMsg := string(hl.Head.Message())
	hl.Head.Seq, hl.Head.Hash = last.Seq, last.Hash
	if err := hl.Head.Sign(Ed25519Signer{KID: hl.Head.KID, Key: docsKey}); err != nil {
		t.Fatal(err)
	}
	line, err := json.Marshal(hl)
	if err != nil {
		t.Fatal(err)
	}
	doc = strings.Replace(doc, m[1], string(line), 1)
	return strings.Replace(doc, "```\n"+oldMsg+"```", "```\n"+string(hl.Head.Message())+"```", 1)
}
