package audit

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// appendEventAgrees fails unless appendEvent writes json.Marshal's bytes
// for e, or declines (ok false) exactly where json.Marshal fails.
func appendEventAgrees(t *testing.T, e *Event) {
	t.Helper()
	want, err := json.Marshal(e)
	got, ok := appendEvent(nil, e)
	if (err == nil) != ok {
		t.Fatalf("appendEvent ok %v, json.Marshal error %v, for %+v", ok, err, e)
	}
	if ok && !bytes.Equal(got, want) {
		t.Fatalf("appendEvent wrote\n%s\njson.Marshal\n%s", got, want)
	}
}

func TestAppendEventIsJSONMarshal(t *testing.T) {
	full := proxyCallEvent()
	full.Seq, full.Time, full.Code = 42, time.Date(2026, 12, 6, 3, 58, 47, 998611167, time.UTC), "PAM-P001"
	full.PrevHash, full.Hash = GenesisHash, strings.Repeat("ab", 32)
	full.Actor.Display, full.Actor.Email, full.Actor.Act = "Ann <ann@example.com>", "ann@example.com", "bob"
	full.Review, full.Unscanned, full.Error = "rev_1", []string{"messages[1].content[0] (image_url)"}, "a \"quoted\" error"
	for _, e := range []*Event{
		{},
		{Type: TypeLogin, Time: time.Unix(0, 0).UTC()},
		full,
		// Empty but not nil: omitted, as encoding/json omits them.
		{Type: TypeLogin, Reasons: []string{}, Masked: map[string]int{}, Details: map[string]string{}, Actor: &Actor{Groups: []string{}}},
		{Actor: &Actor{}, Client: &Client{}, Usage: &Usage{}},
		{Actor: &Actor{Kind: KindUser}, Client: &Client{UserAgent: "x"}},
		// Every escape: HTML, control bytes, separators, invalid UTF-8.
		{Prompt: "<a href=\"x\">&amp;</a>\x00\x01\b\f\n\r\t\x1f\x7f \u2028\u2029 é 😀 \xff\xfe\xc3 \\ /",
			Details: map[string]string{"z": "1", "a<": "&", "é": "\u2028", "\xff": "x", "": ""},
			Masked:  map[string]int{"PHONE": -3, "EMAIL": 1 << 40}},
		{Status: -1, LatencyMS: -5, Seq: 1<<64 - 1},
		// Times: zones, the years json.Marshal refuses, nanoseconds.
		{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 5*3600+1800))},
		{Time: time.Date(2026, 1, 2, 3, 4, 5, 100, time.FixedZone("x", -23*3600-59*60))},
		{Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 24*3600))},
		{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Time: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)},
	} {
		appendEventAgrees(t, e)
	}
	if got, _ := appendEvent(nil, full); len(got) > encodedSize(full) {
		t.Errorf("a proxied call's event is %d bytes, more than the %d encodedSize gives its buffer", len(got), encodedSize(full))
	}
}

func FuzzAppendEvent(f *testing.F) {
	f.Add("hello", "<&>", "\xff\u2028", int64(0), int64(0), uint8(0))
	f.Add("", "", "", int64(-62135596800), int64(7), uint8(255))
	f.Fuzz(func(t *testing.T, a, b, c string, sec, nsec int64, shape uint8) {
		e := &Event{Type: Type(a), Code: b, Prompt: c, Response: a + c, Time: time.Unix(sec, nsec)}
		if shape&1 != 0 {
			e.Time = e.Time.UTC()
		}
		if shape&2 != 0 {
			e.Actor = &Actor{Subject: b, Groups: []string{a, c}, Kind: ActorKind(c)}
		}
		if shape&4 != 0 {
			e.Details = map[string]string{a: b, c: a, b + "x": ""}
			e.Masked = map[string]int{a: int(nsec), c: int(sec)}
		}
		if shape&8 != 0 {
			e.Reasons, e.Unscanned = []string{a, b}, []string{c}
		}
		if shape&16 != 0 {
			e.Client, e.Usage = &Client{RemoteAddr: a, UserAgent: c}, &Usage{InputTokens: sec, TotalTokens: nsec}
		}
		if shape&32 != 0 {
			e.PrevHash, e.Hash, e.Error = b, c, a
		}
		appendEventAgrees(t, e)
	})
}

// A released draft cannot be sealed, and a draft that reuses its buffer
// seals the bytes a fresh one does.
func TestDraftRelease(t *testing.T) {
	now := time.Date(2026, 12, 6, 3, 58, 47, 1, time.UTC)
	first, err := NewDraft(proxyCallEvent(), now)
	if err != nil {
		t.Fatal(err)
	}
	_, want, wantHash, err := first.SealWrapped(7, GenesisHash, "", "\n")
	if err != nil {
		t.Fatal(err)
	}
	want = bytes.Clone(want)
	first.Release()
	first.Release() // twice is harmless
	if _, _, _, err := first.SealWrapped(7, GenesisHash, "", ""); err == nil {
		t.Fatal("a released draft was sealed")
	}
	for range 3 {
		d, err := NewDraft(proxyCallEvent(), now)
		if err != nil {
			t.Fatal(err)
		}
		_, line, hash, err := d.SealWrapped(7, GenesisHash, "", "\n")
		if err != nil || !bytes.Equal(line, want) || hash != wantHash {
			t.Fatalf("a draft in a reused buffer sealed\n%s (%v)\nnot\n%s", line, err, want)
		}
		d.Release()
	}
}
