package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

func readAll(t testing.TB, r io.Reader, lim Limits) ([]Event, []string, error) {
	t.Helper()
	rd := NewReader(r, lim)
	var comments []string
	rd.OnComment = func(c string) { comments = append(comments, c) }
	var evs []Event
	for {
		ev, err := rd.Next()
		if err == io.EOF {
			return evs, comments, nil
		}
		if err != nil {
			return evs, comments, err
		}
		evs = append(evs, ev)
	}
}

func TestReaderSpec(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want []Event
	}{
		{"multi-line data", "data: YHOO\ndata: +2\ndata: 10\n\n", []Event{{Data: "YHOO\n+2\n10"}}},
		// The standard's example: comments, ids, a data-less block.
		{"spec example", ": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n",
			[]Event{{Data: "first event", ID: "1", HasID: true}, {Data: "second event", HasID: true}, {Data: " third event"}}},
		{"empty data fields", "data\n\ndata\ndata\n\ndata:\n", []Event{{Data: ""}, {Data: "\n"}}},
		{"event type and retry", "event: add\nretry: 1500\ndata: 73857293\n\nevent: remove\ndata: 2153\n\n",
			[]Event{{Type: "add", Data: "73857293", Retry: 1500}, {Type: "remove", Data: "2153"}}},
		{"CRLF and CR", "data: a\r\ndata: b\r\r\ndata: c\rdata: d\r\r", []Event{{Data: "a\nb"}, {Data: "c\nd"}}},
		{"BOM", "\xef\xbb\xbfdata: x\n\n", []Event{{Data: "x"}}},
		{"no space and colons in value", "data:a: b\n\n", []Event{{Data: "a: b"}}},
		{"unknown fields and bad retry ignored", "foo: bar\nretry: 12a\ndata: x\n\n", []Event{{Data: "x"}}},
		{"id with NUL ignored", "id: a\x00b\ndata: x\n\n", []Event{{Data: "x"}}},
		{"type without data is reset", "event: ping\n\ndata: x\n\n", []Event{{Data: "x"}}},
		{"unterminated last event discarded", "data: x\n\ndata: y\n", []Event{{Data: "x"}}},
		{"openai chat", "data: {\"a\":1}\n\ndata: [DONE]\n\n", []Event{{Data: `{"a":1}`}, {Data: "[DONE]"}}},
	}
	for _, c := range cases {
		for _, split := range []string{"whole", "bytes"} {
			var r io.Reader = strings.NewReader(c.in)
			if split == "bytes" {
				r = iotest.OneByteReader(r)
			}
			got, _, err := readAll(t, r, Limits{})
			if err != nil {
				t.Fatalf("%s/%s: %v", c.name, split, err)
			}
			if !reflect.DeepEqual(got, c.want) && !(len(got) == 0 && len(c.want) == 0) {
				t.Errorf("%s/%s:\n got %+v\nwant %+v", c.name, split, got, c.want)
			}
		}
	}
}

func TestReaderComments(t *testing.T) {
	_, comments, err := readAll(t, strings.NewReader(": ping\n:\n:  two spaces\ndata: x\n\n"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ping", "", " two spaces"}; !reflect.DeepEqual(comments, want) {
		t.Errorf("comments %q, want %q", comments, want)
	}
}

func TestReaderLimits(t *testing.T) {
	long := "data: " + strings.Repeat("x", 100) + "\n\n"
	if _, _, err := readAll(t, strings.NewReader(long), Limits{MaxLine: 50}); !errors.Is(err, ErrLineTooLong) {
		t.Errorf("long line: err %v", err)
	}
	if _, _, err := readAll(t, iotest.HalfReader(strings.NewReader(long)), Limits{MaxLine: 50}); !errors.Is(err, ErrLineTooLong) {
		t.Errorf("long line in pieces: err %v", err)
	}
	many := strings.Repeat("data: 0123456789\n", 20) + "\n"
	if _, _, err := readAll(t, strings.NewReader(many), Limits{MaxEvent: 100}); !errors.Is(err, ErrEventTooLarge) {
		t.Errorf("large event: err %v", err)
	}
	// A long line within limits, longer than the read buffer.
	big := strings.Repeat("y", 100<<10)
	evs, _, err := readAll(t, strings.NewReader("data: "+big+"\n\n"), Limits{})
	if err != nil || len(evs) != 1 || evs[0].Data != big {
		t.Errorf("100 KiB line: %v, %d events", err, len(evs))
	}
}

func TestReaderError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("data: x\n\ndata: y"), iotest.ErrReader(boom))
	evs, _, err := readAll(t, r, Limits{})
	if !errors.Is(err, boom) || len(evs) != 1 {
		t.Errorf("got %d events, err %v", len(evs), err)
	}
}

func TestWriter(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.WriteEvent(Event{Type: "response.output_text.delta", Data: `{"delta":"hi"}`}))
	must(w.WriteEvent(Event{Data: "a\nb\r\nc\rd", ID: "7", HasID: true, Retry: 3000}))
	must(w.WriteEvent(Event{Data: " leading space"}))
	must(w.WriteComment("keep-alive"))
	must(w.WriteEvent(Event{Data: "[DONE]"}))
	want := "event: response.output_text.delta\ndata: {\"delta\":\"hi\"}\n\n" +
		"id: 7\nretry: 3000\ndata: a\ndata: b\ndata: c\ndata: d\n\n" +
		"data:  leading space\n\n" +
		": keep-alive\n" +
		"data: [DONE]\n\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
	for _, bad := range []Event{{Type: "a\nb", Data: "x"}, {ID: "1\r", HasID: true, Data: "x"}, {ID: "\x00", HasID: true, Data: "x"}} {
		if err := w.WriteEvent(bad); !errors.Is(err, ErrInvalidField) {
			t.Errorf("WriteEvent(%+v) err %v", bad, err)
		}
	}
	if err := NewWriter(failWriter{}).WriteEvent(Event{Data: "x"}); err == nil {
		t.Error("write error not reported")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("closed") }

// FuzzRoundTrip parses arbitrary input, re-emits every event with Writer and
// parses that again: framing must survive (same events, data with CR and
// CRLF normalised to LF), whatever the input, and nothing may panic.
func FuzzRoundTrip(f *testing.F) {
	f.Add("data: x\n\n", uint8(1))
	f.Add("event: a\r\nid: 1\r\ndata: b\r\ndata: c\r\n\r\n", uint8(3))
	f.Add(": c\ndata\n\nretry: 10\ndata:\r\r", uint8(2))
	f.Add("\xef\xbb\xbfdata: {\"choices\":[{\"delta\":{\"content\":\"a\\nb\"}}]}\n\ndata: [DONE]\n\n", uint8(5))
	f.Fuzz(func(t *testing.T, in string, chunk uint8) {
		lim := Limits{MaxLine: 1 << 12, MaxEvent: 1 << 13}
		var r io.Reader = strings.NewReader(in)
		if chunk%2 == 1 {
			r = iotest.OneByteReader(r)
		}
		evs, _, err := readAll(t, r, lim)
		if err != nil && !errors.Is(err, ErrLineTooLong) && !errors.Is(err, ErrEventTooLarge) {
			t.Fatalf("unexpected error %v", err)
		}
		for _, ev := range evs {
			if len(ev.Data) > lim.MaxEvent+lim.MaxLine {
				t.Fatalf("event of %d bytes exceeds limits", len(ev.Data))
			}
		}
		var b bytes.Buffer
		w := NewWriter(&b)
		var kept []Event
		for _, ev := range evs {
			if w.WriteEvent(ev) == nil {
				kept = append(kept, ev)
			}
		}
		again, _, err := readAll(t, &b, Limits{})
		if err != nil {
			t.Fatalf("re-read: %v", err)
		}
		if len(again) != len(kept) {
			t.Fatalf("re-read %d events, wrote %d\n%q", len(again), len(kept), b.String())
		}
		for i := range kept {
			if !reflect.DeepEqual(again[i], kept[i]) {
				t.Fatalf("event %d: %+v became %+v", i, kept[i], again[i])
			}
		}
	})
}

// blockingReader returns ErrWouldBlock before every piece of its input,
// as a proxy's source does when it would rather flush first.
type blockingReader struct {
	r       io.Reader
	blocked bool
}

func (b *blockingReader) Read(p []byte) (int, error) {
	if !b.blocked {
		b.blocked = true
		return 0, ErrWouldBlock
	}
	b.blocked = false
	return b.r.Read(p)
}

// readAllBlocking is readAll over a source that declines to wait before
// every byte; Next must resume where it stopped.
func readAllBlocking(t testing.TB, in string, lim Limits) ([]Event, []string, error) {
	t.Helper()
	rd := NewReader(&blockingReader{r: iotest.OneByteReader(strings.NewReader(in))}, lim)
	var comments []string
	rd.OnComment = func(c string) { comments = append(comments, c) }
	var evs []Event
	for {
		ev, err := rd.Next()
		switch {
		case errors.Is(err, ErrWouldBlock):
			continue
		case err == io.EOF:
			return evs, comments, nil
		case err != nil:
			return evs, comments, err
		}
		evs = append(evs, ev)
	}
}

func TestWouldBlockResumes(t *testing.T) {
	for _, in := range []string{
		"data: x\n\n",
		"\xef\xbb\xbfevent: a\r\nid: 1\r\ndata: b\r\ndata: c\r\n\r\n: note\rdata: d\r\r",
		": c\ndata\n\nretry: 10\ndata:\r\rdata: " + strings.Repeat("long line ", 300) + "\n\n",
		"data: unterminated",
	} {
		want, wantC, wantErr := readAll(t, strings.NewReader(in), Limits{})
		got, gotC, gotErr := readAllBlocking(t, in, Limits{})
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotC, wantC) || !errors.Is(gotErr, wantErr) {
			t.Fatalf("%q: blocking source gave %+v %q %v, want %+v %q %v", in, got, gotC, gotErr, want, wantC, wantErr)
		}
	}
}

func FuzzWouldBlock(f *testing.F) {
	f.Add("data: x\n\n")
	f.Add("event: a\r\nid: 1\r\ndata: b\r\ndata: c\r\n\r\n")
	f.Add("\xef\xbb\xbf: c\ndata\n\nretry: 10\ndata:\r\r")
	f.Fuzz(func(t *testing.T, in string) {
		lim := Limits{MaxLine: 1 << 10, MaxEvent: 1 << 11}
		want, wantC, wantErr := readAll(t, strings.NewReader(in), lim)
		got, gotC, gotErr := readAllBlocking(t, in, lim)
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotC, wantC) || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Fatalf("%q: blocking source gave %+v %q %v, want %+v %q %v", in, got, gotC, gotErr, want, wantC, wantErr)
		}
	})
}

// TestNextLent: a lent event reads as Next's until the next call, which
// spoils its bytes and reuses them; Next after NextLent is a copy again,
// and a huge event's buffer is let go with its data intact.
func TestNextLent(t *testing.T) {
	huge := strings.Repeat("h", 70<<10)
	in := "event: a\ndata: first\ndata: line\n\ndata: second\n\ndata: third\n\ndata: " + huge + "\n\ndata: fifth\n\n"
	rd := NewReader(strings.NewReader(in), Limits{})
	first, err := rd.NextLent()
	if err != nil || first.Type != "a" || first.Data != "first\nline" {
		t.Fatalf("first lent event %+v, %v", first, err)
	}
	second, err := rd.NextLent()
	if err != nil || second.Data != "second" {
		t.Fatalf("second lent event %+v, %v", second, err)
	}
	if first.Data != "second\xff\xff\xff\xff" {
		t.Errorf("a lent event read past its time gives %q, want its bytes spoiled", first.Data)
	}
	third, err := rd.Next()
	if err != nil || third.Data != "third" {
		t.Fatalf("third event %+v, %v", third, err)
	}
	if second.Data != "third\xff" { // Next copies out of the same buffer
		t.Errorf("second lent event read past its time gives %q", second.Data)
	}
	fourth, err := rd.NextLent()
	if err != nil || fourth.Data != huge {
		t.Fatalf("huge lent event: %d bytes, %v", len(fourth.Data), err)
	}
	fifth, err := rd.NextLent()
	if err != nil || fifth.Data != "fifth" {
		t.Fatalf("fifth lent event %+v, %v", fifth, err)
	}
	if third.Data != "third" {
		t.Errorf("a copied event changed: %q", third.Data)
	}
	if fourth.Data != huge {
		t.Errorf("the huge event's buffer was reused while lent")
	}
	if _, err := rd.NextLent(); err != io.EOF {
		t.Errorf("end: %v, want EOF", err)
	}
}
