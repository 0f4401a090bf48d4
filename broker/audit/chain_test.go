package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

var (
	t0         = time.Date(2025, 1, 2, 3, 4, 5, 600000007, time.UTC)
	testPriv   = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	testSigner = Ed25519Signer{KID: "k1", Key: testPriv}
	testKeys   = Keys(map[string]ed25519.PublicKey{"k1": testPriv.Public().(ed25519.PublicKey)})
)

// sampleEvent returns a varied event: every field set, characters that
// encoding/json escapes, unicode, maps that must be sorted.
func sampleEvent(i int) *Event {
	ts := []Type{TypeProxyCall, TypeLogin, TypeRequestCreated, TypeVaultSet, TypeTraceSpan}
	return &Event{
		Time:         t0.Add(time.Duration(i) * time.Second),
		Type:         ts[i%len(ts)],
		Actor:        &Actor{Subject: fmt.Sprintf("user-%d", i), Email: "ada@example.com", Groups: []string{"ml", "eng"}, Issuer: "https://idp.example.com", Kind: KindUser, TokenID: "jti-1"},
		Grant:        "g1",
		Request:      "r1",
		Review:       "v1",
		Target:       "openai",
		Decision:     "allow",
		Reasons:      []string{"ml-models"},
		Model:        "gpt-4o",
		Endpoint:     "/v1/chat/completions",
		Prompt:       fmt.Sprintf("<b>hi</b> & \"quoted\" \u2028 ünïcødé %d \x01", i),
		PromptSHA256: PromptDigest("original"),
		Response:     "ok\n\ttab",
		Usage:        &Usage{InputTokens: 10, OutputTokens: 20, TotalTokens: 30},
		Masked:       map[string]int{"SSN": 1, "EMAIL": 2, "AWS_KEY": 3},
		Status:       200,
		LatencyMS:    int64(i),
		Client:       &Client{RemoteAddr: "127.0.0.1:1", UserAgent: "curl/8"},
		Error:        "",
		Details:      map[string]string{"z": "1", "a": "2", "k": "v"},
	}
}

// chain seals n sample events after prev and returns their stored lines.
func chain(t testing.TB, from uint64, prev string, n int) [][]byte {
	t.Helper()
	var lines [][]byte
	for i := 0; i < n; i++ {
		seq := from + uint64(i)
		d, err := NewDraft(sampleEvent(int(seq)), t0)
		if err != nil {
			t.Fatal(err)
		}
		line, hash, err := d.Seal(seq, prev)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line)
		prev = hash
	}
	return lines
}

func TestSealMatchesCanonicalDefinition(t *testing.T) {
	prev := GenesisHash
	for i := 1; i <= 50; i++ {
		e := sampleEvent(i)
		if i%7 == 0 { // sparse events too
			e = &Event{Type: TypeLogout, Time: t0}
		}
		d, err := NewDraft(e, t0)
		if err != nil {
			t.Fatal(err)
		}
		line, hash, err := d.Seal(uint64(i), prev)
		if err != nil {
			t.Fatal(err)
		}
		// The definition: canonical = json.Marshal(event without hash),
		// hash = SHA-256(raw(prev) || canonical), stored = json.Marshal(event).
		e.Seq, e.PrevHash = uint64(i), prev
		canonical, err := Canonical(e)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ChainHash(prev, canonical)
		if err != nil {
			t.Fatal(err)
		}
		if hash != want {
			t.Fatalf("seq %d: Seal hash %s, definition gives %s", i, hash, want)
		}
		e.Hash = hash
		stored, _ := json.Marshal(e)
		if !bytes.Equal(line, stored) {
			t.Fatalf("seq %d: sealed line differs from json.Marshal:\n%s\n%s", i, line, stored)
		}
		// An offline verifier may also strip the hash member instead of
		// re-encoding.
		stripped := append(bytes.Clone(line[:len(line)-hashSuffix]), '}')
		if !bytes.Equal(stripped, canonical) {
			t.Fatalf("seq %d: stripping the hash member does not give the canonical bytes", i)
		}
		// Decoding and re-encoding is stable, so re-marshalling verifiers agree.
		var back Event
		if err := json.Unmarshal(line, &back); err != nil {
			t.Fatal(err)
		}
		again, _ := json.Marshal(&back)
		if !bytes.Equal(again, line) {
			t.Fatalf("seq %d: decode/encode round trip changed the bytes:\n%s\n%s", i, line, again)
		}
		prev = hash
	}
}

func TestSealIsRepeatable(t *testing.T) {
	// A bbolt batch may run the append function again: sealing the same
	// draft at the same place must give the same bytes.
	d, err := NewDraft(sampleEvent(3), t0)
	if err != nil {
		t.Fatal(err)
	}
	// A record is written in the draft's buffer: it is valid until the
	// next seal, so what is kept past it is copied.
	a, ha, _ := d.Seal(5, GenesisHash)
	a = bytes.Clone(a)
	b, hb, _ := d.Seal(5, GenesisHash)
	if !bytes.Equal(a, b) || ha != hb {
		t.Fatal("sealing twice gave different results")
	}
	c, hc, _ := d.Seal(6, GenesisHash)
	if bytes.Equal(a, c) || ha == hc {
		t.Fatal("seq is not covered by the hash")
	}
	c = bytes.Clone(c)
	if again, _, _ := d.Seal(5, GenesisHash); !bytes.Equal(again, a) {
		t.Fatalf("sealing again after another seq gave\n%s\nwant\n%s", again, a)
	}
	// In place or not (an envelope longer than the room), the line is
	// json.Marshal of the event with seq, prev_hash and hash, HTML
	// escaped as Marshal does, whatever the seq's length.
	for _, e := range []*Event{sampleEvent(3), {Type: TypeProxyCall, Prompt: "<a href='x'>&amp;</a> \u2028", Response: strings.Repeat("r", 5000)}} {
		d, err := NewDraft(e, t0)
		if err != nil {
			t.Fatal(err)
		}
		for _, seq := range []uint64{1, 6, 1234567, 18446744073709551615} {
			for _, env := range [][2]string{{"", ""}, {`{"v":1,"d":`, "}"}, {strings.Repeat("p", 40), strings.Repeat("s", 40)}} {
				rec, line, hash, err := d.SealWrapped(seq, GenesisHash, env[0], env[1])
				if err != nil {
					t.Fatal(err)
				}
				ev := d.Event(seq, GenesisHash, hash)
				want, _ := json.Marshal(&ev)
				if !bytes.Equal(line, want) || string(rec) != env[0]+string(want)+env[1] {
					t.Fatalf("seq %d, envelope %q: line\n%s\nwant\n%s", seq, env, line, want)
				}
			}
		}
	}
	if again, _, _ := d.Seal(6, GenesisHash); !bytes.Equal(again, c) {
		t.Fatal("a draft sealed in another envelope in between seals differently")
	}
	if _, _, err := d.Seal(1, "not-a-hash"); err == nil {
		t.Fatal("Seal accepted a malformed prev hash")
	}
}

func TestChainHashUsesRawPrevHash(t *testing.T) {
	canonical := []byte(`{"seq":1}`)
	got, err := ChainHash(GenesisHash, canonical)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(append(make([]byte, 32), canonical...))
	if got != hex.EncodeToString(sum[:]) {
		t.Fatalf("ChainHash = %s, want SHA-256(32 zero bytes || canonical)", got)
	}
}

func TestHeadAndAnchorSignatures(t *testing.T) {
	h := &SignedHead{Seq: 10, Hash: GenesisHash, Time: t0}
	if err := h.Sign(testSigner); err != nil {
		t.Fatal(err)
	}
	pub, _ := testKeys("k1")
	if h.KID != "k1" || !ed25519.Verify(pub, h.Message(), h.Sig) {
		t.Fatal("head signature does not verify")
	}
	a := &Anchor{Seq: 10, Hash: GenesisHash, Before: t0, Time: t0}
	if err := a.Sign(testSigner); err != nil {
		t.Fatal(err)
	}
	if ed25519.Verify(pub, a.Message(), h.Sig) {
		t.Fatal("a head signature verifies as an anchor signature: messages need domain separation")
	}
	h2 := *h
	h2.Seq = 11
	if ed25519.Verify(pub, h2.Message(), h.Sig) {
		t.Fatal("the signature does not cover seq")
	}
	if _, _, err := (Ed25519Signer{KID: "x"}).SignHead([]byte("m")); err == nil {
		t.Fatal("a signer without key signed")
	}
}

// SealWrapped puts exactly Seal's line between the prefix and the suffix.
func TestSealWrappedIsSealInAnEnvelope(t *testing.T) {
	e := &Event{Type: TypeProxyCall, Actor: &Actor{Subject: "alice"}, Prompt: "a <b> & \"c\""}
	d, err := NewDraft(e, time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	prev := strings.Repeat("ab", 32)
	line, hash, err := d.Seal(42, prev)
	if err != nil {
		t.Fatal(err)
	}
	rec, wline, whash, err := d.SealWrapped(42, prev, `{"v":1,"d":`, "}")
	if err != nil {
		t.Fatal(err)
	}
	if string(wline) != string(line) || whash != hash || string(rec) != `{"v":1,"d":`+string(line)+"}" {
		t.Fatalf("SealWrapped = %s / %s / %s, Seal = %s / %s", rec, wline, whash, line, hash)
	}
	if _, _, _, err := d.SealWrapped(1, "nothex", "", ""); err == nil {
		t.Fatal("a bad prev hash was sealed")
	}
}

// A stored line decodes and encodes again, with Go, to the same bytes and
// hash, even where the event held invalid UTF-8: encoding/json would write
// each bad byte as \ufffd, which decodes to U+FFFD and encodes as the
// character itself, and a verifier that re-encodes would see tampering. So
// invalid UTF-8 is stored as U+FFFD, in every string of the event; a valid
// event is stored as before.
func TestStoredLineReencodesToItself(t *testing.T) {
	const bad = "bad\xff\xfe"
	const want = "bad\uFFFD"
	cases := []struct {
		name string
		set  func(e *Event)
		get  func(e *Event) string // the field as a verifier decodes it: want
	}{
		{"grant", func(e *Event) { e.Grant = bad }, func(e *Event) string { return e.Grant }},
		{"request", func(e *Event) { e.Request = bad }, func(e *Event) string { return e.Request }},
		{"review", func(e *Event) { e.Review = bad }, func(e *Event) string { return e.Review }},
		{"target", func(e *Event) { e.Target = bad }, func(e *Event) string { return e.Target }},
		{"decision", func(e *Event) { e.Decision = bad }, func(e *Event) string { return e.Decision }},
		{"model", func(e *Event) { e.Model = bad }, func(e *Event) string { return e.Model }},
		{"endpoint", func(e *Event) { e.Endpoint = bad }, func(e *Event) string { return e.Endpoint }},
		{"prompt", func(e *Event) { e.Prompt = bad }, func(e *Event) string { return e.Prompt }},
		{"prompt_sha256", func(e *Event) { e.PromptSHA256 = bad }, func(e *Event) string { return e.PromptSHA256 }},
		{"response", func(e *Event) { e.Response = bad }, func(e *Event) string { return e.Response }},
		{"error", func(e *Event) { e.Error = bad }, func(e *Event) string { return e.Error }},
		{"actor subject", func(e *Event) { e.Actor.Subject = bad }, func(e *Event) string { return e.Actor.Subject }},
		{"actor display", func(e *Event) { e.Actor.Display = bad }, func(e *Event) string { return e.Actor.Display }},
		{"actor email", func(e *Event) { e.Actor.Email = bad }, func(e *Event) string { return e.Actor.Email }},
		{"actor group", func(e *Event) { e.Actor.Groups = []string{"ml", bad} }, func(e *Event) string { return e.Actor.Groups[1] }},
		{"actor issuer", func(e *Event) { e.Actor.Issuer = bad }, func(e *Event) string { return e.Actor.Issuer }},
		{"actor token id", func(e *Event) { e.Actor.TokenID = bad }, func(e *Event) string { return e.Actor.TokenID }},
		{"actor act", func(e *Event) { e.Actor.Act = bad }, func(e *Event) string { return e.Actor.Act }},
		{"reason", func(e *Event) { e.Reasons = []string{bad} }, func(e *Event) string { return e.Reasons[0] }},
		{"unscanned", func(e *Event) { e.Unscanned = []string{"input", bad} }, func(e *Event) string { return e.Unscanned[1] }},
		{"masked key", func(e *Event) { e.Masked = map[string]int{bad: 4} }, func(e *Event) string { return fmt.Sprint(e.Masked) }},
		{"details key", func(e *Event) { e.Details = map[string]string{bad: "v"} }, func(e *Event) string { return fmt.Sprint(e.Details) }},
		{"details value", func(e *Event) { e.Details = map[string]string{"upstream_request_id": bad} }, func(e *Event) string { return e.Details["upstream_request_id"] }},
		{"client remote addr", func(e *Event) { e.Client.RemoteAddr = bad }, func(e *Event) string { return e.Client.RemoteAddr }},
		{"client user agent", func(e *Event) { e.Client.UserAgent = bad }, func(e *Event) string { return e.Client.UserAgent }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := sampleEvent(1)
			c.set(e)
			line, back := sealAndReencode(t, e)
			if got := c.get(back); !strings.Contains(got, want) || strings.Contains(got, bad) || bytes.Contains(line, []byte(`\ufffd`)) {
				t.Errorf("decoded %q, want %q; line %s", got, want, line)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		const golden = `{"seq":1,"time":"2025-01-02T03:04:06.600000007Z","type":"login","code":"PAM-A001","actor":{"subject":"user-1","email":"ada@example.com","groups":["ml","eng"],"issuer":"https://idp.example.com","kind":"user","token_id":"jti-1"},"grant":"g1","request":"r1","review":"v1","target":"openai","decision":"allow","reasons":["ml-models"],"model":"gpt-4o","endpoint":"/v1/chat/completions","prompt":"\u003cb\u003ehi\u003c/b\u003e \u0026 \"quoted\" \u2028 ünïcødé 1 \u0001","prompt_sha256":"0682c5f2076f099c34cfdd15a9e063849ed437a49677e6fcc5b4198c76575be5","response":"ok\n\ttab","usage":{"input_tokens":10,"output_tokens":20,"total_tokens":30},"masked":{"AWS_KEY":3,"EMAIL":2,"SSN":1},"status":200,"latency_ms":1,"client":{"remote_addr":"127.0.0.1:1","user_agent":"curl/8"},"details":{"a":"2","k":"v","z":"1"},"prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","hash":"661c4846c29f132312308d3370a3f36cc572bef44185c2da3192af1683206d14"}`
		if line, _ := sealAndReencode(t, sampleEvent(1)); string(line) != golden {
			t.Errorf("a valid event is stored as\n%s\nnot as before\n%s", line, golden)
		}
	})
}

// sealAndReencode seals e as the first event of a chain and checks that
// the line decoded into an Event encodes to the same line, canonical bytes
// and hash; it returns the line and the decoded event.
func sealAndReencode(t *testing.T, e *Event) ([]byte, *Event) {
	t.Helper()
	d, err := NewDraft(e, t0)
	if err != nil {
		t.Fatal(err)
	}
	line, hash, err := d.Seal(1, GenesisHash)
	if err != nil {
		t.Fatal(err)
	}
	var back Event
	if err := json.Unmarshal(line, &back); err != nil {
		t.Fatal(err)
	}
	again, err := json.Marshal(&back)
	if err != nil || !bytes.Equal(again, line) {
		t.Fatalf("decoding and encoding again changed the line (%v):\n%s\n%s", err, line, again)
	}
	canonical, err := Canonical(&back)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(canonical, append(bytes.Clone(line[:len(line)-hashSuffix]), '}')) {
		t.Fatalf("Canonical of the decoded event is not the line without its hash:\n%s", canonical)
	}
	if h, err := ChainHash(GenesisHash, canonical); err != nil || h != hash || back.Hash != hash {
		t.Fatalf("decoded event hashes to %s (%v), stored %s, sealed %s", h, err, back.Hash, hash)
	}
	return line, &back
}
