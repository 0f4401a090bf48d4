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
	o := quickOptions()
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
	for _, s := range []string{"machine:", "open streams: 50 streams", "target: pamctl peak RSS", "goroutines", "(43 events, the issue's stream)"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("report lacks %q", s)
		}
	}
	if rep.res == nil || rep.res.goBase <= 0 || rep.res.hwm <= 0 {
		t.Errorf("open streams phase measured nothing: %+v", rep.res)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-quick", "-c", "2,8", "-n", "10"})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.conc) != 2 || o.conc[1] != 8 || o.chatN != 10 || o.streams != quickOptions().streams {
		t.Fatalf("quick flags: %+v", o)
	}
	for _, bad := range [][]string{{"-c", "0"}, {"-rounds", "0"}, {"-format", "csv"}, {"-sync", "never"}, {"extra"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
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
	mock := devupstream.New(devupstream.Options{Deltas: defaultOptions().deltas})
	req := httptest.NewRequest(http.MethodPost, "/v1/chat/completions", bytes.NewReader(chatBody(true)))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	mock.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("mock answered %d: %s", rec.Code, rec.Body)
	}
	if n := strings.Count(rec.Body.String(), "\ndata: ") + 1; !strings.HasPrefix(rec.Body.String(), "data: ") || n != 43 {
		t.Fatalf("%d events, want 43:\n%s", n, rec.Body)
	}
}
