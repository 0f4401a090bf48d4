package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/proxy/devupstream"
)

// TestQuickRun is CI's smoke run of the benchmark (go run ./bench -quick):
// it builds and starts the mock upstream, the bare proxy and three pamctl
// servers, drives a few hundred requests through each, opens 50 streams at
// once, and checks that the table has every row and no request failed. It
// proves the harness works; its numbers mean nothing on a busy CI machine.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts processes; runs without -short")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the benchmark reads /proc")
	}
	rep, out, have := quickRun(t, quickOptions())
	targets := []string{"direct", "bare", "pamctl", "pamctl-nomask", "pamctl-async"}
	var want []string
	for _, c := range []string{"1", "4"} {
		for _, t := range targets {
			want = append(want, "chat c="+c+"|"+t, "stream c="+c+" ttfb|"+t, "stream c="+c+" total|"+t)
		}
	}
	for _, t := range targets {
		want = append(want, "chat c=4 @100/s|"+t)
	}
	want = append(want, "50 open streams ttfb|pamctl")
	for _, w := range want {
		if !have[w] {
			t.Errorf("table has no row %q", w)
		}
	}
	for _, s := range []string{"machine:", "api chat (POST /v1/chat/completions)", "open streams: 50 streams", "target: pamctl peak RSS", "goroutines", "(43 events, the issue's stream)"} {
		if !strings.Contains(out, s) {
			t.Errorf("report lacks %q", s)
		}
	}
	if rep.res == nil || rep.res.goBase <= 0 || rep.res.hwm <= 0 {
		t.Errorf("open streams phase measured nothing: %+v", rep.res)
	}
}

// TestQuickRunResponses is TestQuickRun's smoke run with -api responses,
// trimmed for CI: one concurrency, no paced scenario, no variants, 20 open
// streams. Every call is a Responses API call through the mock, the bare
// proxy and pamctl, and every answer passed the Responses end check.
func TestQuickRunResponses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts processes; runs without -short")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the benchmark reads /proc")
	}
	o := quickOptions()
	o.api = apiResponses
	o.conc, o.rate, o.variants = []int{2}, 0, false
	o.chatN, o.streamN, o.warmup, o.streams = 100, 40, 10, 20
	rep, out, have := quickRun(t, o)
	for _, tg := range []string{"direct", "bare", "pamctl"} {
		for _, s := range []string{"chat c=2", "stream c=2 ttfb", "stream c=2 total"} {
			if !have[s+"|"+tg] {
				t.Errorf("table has no row %q", s+"|"+tg)
			}
		}
	}
	if !have["20 open streams ttfb|pamctl"] {
		t.Error("table has no open streams row")
	}
	for _, s := range []string{"api responses (POST /v1/responses)", "40 deltas per stream (48 events)",
		"(48 events, Responses API, not the issue's 43-event chat stream)", "open streams: 20 streams"} {
		if !strings.Contains(out, s) {
			t.Errorf("report lacks %q", s)
		}
	}
	if rep.res == nil || rep.res.all.n != 20 {
		t.Errorf("open streams phase: %+v", rep.res)
	}
}

// quickRun runs the benchmark with o and returns its report, the report
// as text and the table's rows by "scenario|target"; it fails t when a
// request failed.
func quickRun(t *testing.T, o options) (*report, string, map[string]bool) {
	t.Helper()
	o.progress = testWriter{t}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := runBench(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.write(&out, "text")
	t.Logf("\n%s", out.String())
	if n := rep.errors(); n > 0 {
		t.Fatalf("%d requests failed", n)
	}
	have := map[string]bool{}
	for _, row := range rep.rows() {
		have[row[0]+"|"+row[1]] = true
	}
	return rep, out.String(), have
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-quick", "-c", "2,8", "-n", "10"})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.conc) != 2 || o.conc[1] != 8 || o.chatN != 10 || o.streams != quickOptions().streams {
		t.Fatalf("quick flags: %+v", o)
	}
	if o.api != apiChat {
		t.Errorf("-api defaults to %q, want chat", o.api)
	}
	for _, api := range []string{"chat", "responses"} {
		o, err := parseFlags([]string{"-quick", "-api", api})
		if err != nil || o.api != api {
			t.Errorf("-api %s: %q, %v", api, o.api, err)
		}
	}
	for _, bad := range [][]string{{"-c", "0"}, {"-rounds", "0"}, {"-format", "csv"}, {"-sync", "never"}, {"extra"},
		{"-api", "completions"}, {"-api", ""}, {"-api", "Responses"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, err := parseFlags([]string{"-api", "embeddings"}); err == nil || !strings.Contains(err.Error(), "-api must be chat or responses") {
		t.Errorf("-api embeddings: %v", err)
	}
}

func TestSummarize(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	got := summarize(d)
	if got.p50 != 50*time.Millisecond || got.p90 != 90*time.Millisecond || got.p99 != 99*time.Millisecond || got.max != 100*time.Millisecond {
		t.Fatalf("summarize: %+v", got)
	}
	if summarize(nil) != (dist{}) {
		t.Fatal("summarize(nil) is not zero")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// The mock's stream at the default -deltas is the one issue 16's total
// time target names: 43 events, [DONE] included, for the bench's prompt.
func TestDefaultStreamIsTheIssues(t *testing.T) {
	body := mockAnswer(t, apiChat, true, defaultOptions().deltas)
	if n := strings.Count(body, "\ndata: ") + 1; !strings.HasPrefix(body, "data: ") || n != 43 || n != streamEvents(apiChat, issueDeltas) {
		t.Fatalf("%d events, want 43:\n%s", n, body)
	}
}

// streamEvents counts the Responses API stream's events as the mock sends
// them: named events, response.completed last.
func TestResponsesStreamEvents(t *testing.T) {
	for _, deltas := range []int{1, 5, issueDeltas} {
		body := mockAnswer(t, apiResponses, true, deltas)
		events := strings.Split(strings.TrimSuffix(body, "\n\n"), "\n\n")
		if len(events) != streamEvents(apiResponses, deltas) {
			t.Errorf("%d deltas: %d events, streamEvents says %d", deltas, len(events), streamEvents(apiResponses, deltas))
		}
		if n := strings.Count(body, "event: response.output_text.delta\n"); n != deltas {
			t.Errorf("%d deltas: %d delta events", deltas, n)
		}
		if !strings.HasPrefix(events[len(events)-1], "event: response.completed\n") {
			t.Errorf("%d deltas: the last event is %.60q", deltas, events[len(events)-1])
		}
	}
	if got := issueStream(apiResponses, issueDeltas); strings.Contains(got, "the issue's stream") {
		t.Errorf("a Responses stream is called the issue's: %q", got)
	}
	if got := issueStream(apiChat, issueDeltas); got != ", the issue's stream" {
		t.Errorf("issueStream(chat, 40) = %q", got)
	}
}

// mockAnswer is the mock's answer to the benchmark's request for api.
func mockAnswer(t *testing.T, api string, stream bool, deltas int) string {
	t.Helper()
	mock := devupstream.New(devupstream.Options{Deltas: deltas})
	req := httptest.NewRequest(http.MethodPost, apiPath(api), bytes.NewReader(requestBody(api, stream)))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	mock.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("mock answered %s with %d: %s", api, rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// The load generator's end check: a chat stream must end with [DONE], a
// Responses API stream with a complete response.completed event (it sends
// no [DONE]), a non-streamed answer must be a JSON object, whatever the
// sizes of the reads.
func TestAnswerEnd(t *testing.T) {
	chatStream := mockAnswer(t, apiChat, true, issueDeltas)
	respStream := mockAnswer(t, apiResponses, true, issueDeltas)
	respJSON := mockAnswer(t, apiResponses, false, issueDeltas)
	chatJSON := mockAnswer(t, apiChat, false, issueDeltas)
	completed := strings.LastIndex(respStream, "event: response.completed\n")
	lastDelta := strings.LastIndex(respStream, "event: response.output_text.delta\n")
	data := strings.Index(respStream[completed:], "data: ") + completed
	// The completed event as pamctl re-encodes it: keys sorted, "type" last.
	sorted := respStream[:completed] + `event: response.completed` + "\n" +
		`data: {"response":{"id":"resp_1","status":"completed"},"sequence_number":47,"type":"response.completed"}` + "\n\n"
	unnamed := func(s string) string { // the same events without their names
		var out []string
		for _, line := range strings.Split(s, "\n") {
			if !strings.HasPrefix(line, "event: ") {
				out = append(out, line)
			}
		}
		return strings.Join(out, "\n")
	}
	errorEvent := "event: error\ndata: {\"error\":{\"message\":\"upstream stream ended early\",\"type\":\"upstream_error\"}}\n\n"
	for _, c := range []struct {
		name, api string
		stream    bool
		body      string
		status    int
		want      string // "" ok, or a part of the error
	}{
		{"chat stream", apiChat, true, chatStream, 200, ""},
		{"chat stream without [DONE]", apiChat, true, strings.TrimSuffix(chatStream, "data: [DONE]\n\n"), 200, "did not end with [DONE]"},
		{"a Responses stream read as chat", apiChat, true, respStream, 200, "did not end with [DONE]"},
		{"responses stream", apiResponses, true, respStream, 200, ""},
		{"responses stream, keys sorted", apiResponses, true, sorted, 200, ""},
		{"responses stream, no event names", apiResponses, true, unnamed(respStream), 200, ""},
		{"responses stream, no event names, keys sorted", apiResponses, true, unnamed(sorted), 200, ""},
		{"responses stream and a keep-alive comment", apiResponses, true, respStream + ": keep-alive\n\n", 200, ""},
		{"responses stream cut before response.completed", apiResponses, true, respStream[:completed], 200, `last event is "response.output_item.done"`},
		{"responses stream cut after a delta", apiResponses, true, respStream[:strings.Index(respStream[lastDelta:], "\n\n")+lastDelta+2], 200, `last event is "response.output_text.delta"`},
		{"responses stream cut inside response.completed", apiResponses, true, respStream[:data+40], 200, "ended inside an event"},
		{"responses stream cut before its blank line", apiResponses, true, strings.TrimSuffix(respStream, "\n\n"), 200, "ended inside an event"},
		{"responses stream cut, pamctl's error event", apiResponses, true, respStream[:completed] + errorEvent, 200, `last event is "error"`},
		{"responses stream then [DONE]", apiResponses, true, respStream + "data: [DONE]\n\n", 200, "not response.completed"},
		{"a chat stream read as responses", apiResponses, true, chatStream, 200, "not response.completed"},
		{"empty responses stream", apiResponses, true, "", 200, "not response.completed"},
		{"response", apiResponses, false, respJSON, 200, ""},
		{"chat completion", apiChat, false, chatJSON, 200, ""},
		{"response cut", apiResponses, false, respJSON[:len(respJSON)/2], 200, "not a JSON object"},
		{"refused", apiResponses, false, `{"error":{"message":"no"}}`, 403, "status 403"},
		{"refused stream", apiResponses, true, `{"error":{"message":"no"}}`, 403, "status 403"},
	} {
		for _, size := range []int{1, 2, 7, 64, 100, 4 << 10, 1 << 20} {
			var e answerEnd
			for b := []byte(c.body); len(b) > 0; {
				n := min(size, len(b))
				e.feed(b[:n], c.stream && c.api == apiResponses)
				b = b[n:]
			}
			err := e.check(c.status, c.api, c.stream)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("%s (reads of %d): %v", c.name, size, err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("%s (reads of %d): %v, want an error with %q", c.name, size, err, c.want)
			}
		}
	}
}
