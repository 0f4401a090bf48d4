// Command mockupstream serves pamctl's OpenAI-compatible mock upstream
// (github.com/pamctl/pamctl/proxy/devupstream) on its own, for the end-to-end load benchmark
// in pamctl/bench.
//
//	mockupstream [-addr 127.0.0.1:0] [-latency 0] [-deltas 50] [-delta-gap 0]
//
// It prints "listening http://ADDR" on stdout once it accepts connections
// and stops on SIGINT or SIGTERM. GET /_bench/stats answers
// {"conns":N,"open":M}: the TCP connections accepted so far and those open
// now, which shows whether a proxy in front reuses its upstream connections.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/pamctl/pamctl/bench/internal/serve"
	"github.com/pamctl/pamctl/proxy/devupstream"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	latency := flag.Duration("latency", 0, "wait before answering (time to first byte)")
	deltas := flag.Int("deltas", 50, "content deltas per streamed answer")
	gap := flag.Duration("delta-gap", 0, "pause between two streamed deltas")
	flag.Parse()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mockupstream:", err)
		os.Exit(1)
	}
	var conns, open atomic.Int64
	mock := devupstream.New(devupstream.Options{Latency: *latency, Deltas: *deltas, DeltaGap: *gap})
	mux := http.NewServeMux()
	mux.Handle("/v1/", mock)
	mux.HandleFunc("GET /_bench/stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int64{"conns": conns.Load(), "open": open.Load()})
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				conns.Add(1)
				open.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		},
	}
	serve.Run("mockupstream", srv, ln)
}
