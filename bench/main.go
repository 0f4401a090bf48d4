// Command bench is pamctl's end-to-end load benchmark. Run it from the
// repository root:
//
//	go run ./bench            # the full run (about 2.5 minutes on 2 cores)
//	go run ./bench -quick     # a smoke run of a few hundred requests
//
// It builds and starts, on loopback, an OpenAI-compatible mock upstream
// (bench/cmd/mockupstream, its own process), a bare httputil.ReverseProxy
// that only swaps the Authorization header (bench/cmd/bareproxy, its own
// process) and `pamctl serve` as deployed (trusting an OIDC issuer the
// harness serves, a fake provider key vaulted) with token checks, scope,
// prompt rules, masking in both directions and durable audit — plus two
// more pamctl processes, one with masking off and one with async audit, so
// the cost of each feature shows (-baseline adds another pamctl build, for
// before/after in the same run). A closed-loop load generator drives each
// target in turn, interleaved over several rounds, and prints one table:
// requests per second, p50, p90, p99 and max latency, the overhead over the
// mock (direct) and over the bare proxy, and CPU per request, for
// non-streamed chat completions (~1 KB prompt; -api responses sends
// Responses API calls instead) at each concurrency and paced at a fixed
// rate, and for streams (time to first byte and total time); then
// pamctl's memory, file descriptors and goroutines with 1,000 streams open
// at once, and how the run compares with the targets.
// docs/performance.md ("End-to-end load") explains the method and records
// a run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

func main() {
	os.Exit(mainErr())
}

func mainErr() int {
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := runBench(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	rep.write(os.Stdout, o.format)
	if n := rep.errors(); n > 0 {
		fmt.Fprintf(os.Stderr, "bench: %d requests failed\n", n)
		return 1
	}
	return 0
}

func parseFlags(args []string) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	quick := false
	for _, a := range args {
		if a == "-quick" || a == "--quick" || a == "-quick=true" || a == "--quick=true" {
			quick = true
		}
	}
	o := defaultOptions()
	if quick {
		o = quickOptions()
	}
	fs.Bool("quick", false, "a smoke run: a few hundred requests at concurrency 1 and 4, 50 open streams")
	conc := fs.String("c", joinInts(o.conc), "concurrency levels, comma-separated")
	fs.Float64Var(&o.rate, "rate", o.rate, "requests per second of the paced chat scenario at the highest concurrency (0 skips it)")
	fs.IntVar(&o.rateN, "rate-n", o.rateN, "requests per target of the paced chat scenario")
	fs.IntVar(&o.chatN, "n", o.chatN, "chat requests per target at concurrency > 1")
	fs.IntVar(&o.chatN1, "n1", o.chatN1, "chat requests per target at concurrency 1")
	fs.IntVar(&o.streamN, "stream-n", o.streamN, "streams per target at concurrency > 1")
	fs.IntVar(&o.streamN1, "stream-n1", o.streamN1, "streams per target at concurrency 1")
	fs.IntVar(&o.rounds, "rounds", o.rounds, "interleaved rounds per scenario")
	fs.IntVar(&o.warmup, "warmup", o.warmup, "unmeasured requests per target before each scenario")
	fs.StringVar(&o.api, "api", o.api, "the API every scenario calls: chat (POST /v1/chat/completions) or responses (POST /v1/responses, the OpenAI Agents SDK's default)")
	fs.IntVar(&o.deltas, "deltas", o.deltas, "content deltas per streamed answer")
	fs.DurationVar(&o.latency, "latency", o.latency, "mock upstream latency before answering")
	fs.IntVar(&o.streams, "streams", o.streams, "concurrent open streams for the memory phase (0 skips it)")
	fs.DurationVar(&o.streamGap, "stream-gap", o.streamGap, "pause between deltas in the memory phase, so streams stay open")
	fs.BoolVar(&o.variants, "variants", o.variants, "also run pamctl with masking off and with async audit")
	fs.StringVar(&o.memLimit, "memory-limit", "", "GOMEMLIMIT of the pamctl of the open-streams phase (e.g. 100MiB): what memory_limit's default takes from a container limited to 10/9 of it; empty: none, as outside a container")
	fs.StringVar(&o.profileDir, "profile", "", "write CPU and allocation profiles of pamctl under load to this directory")
	fs.DurationVar(&o.profileTime, "profile-time", o.profileTime, "length of each profiled load")
	fs.BoolVar(&o.dev, "dev", false, "run pamctl serve --dev (embedded issuer, dev upstream transport) instead of as deployed")
	fs.StringVar(&o.sync, "sync", o.sync, "audit.sync of the all-on pamctl (the one profiled): durable or async")
	fs.StringVar(&o.config, "config", o.config, "rules of every pamctl: profile security (four rules that can match, a deny among them; the default), minimal (none), or a YAML file with a rules: list")
	fs.StringVar(&o.format, "format", o.format, "table format: text or md")
	fs.BoolVar(&o.keep, "keep", false, "keep the work dir (process logs, data dirs)")
	fs.StringVar(&o.pamctl, "pamctl", "", "use this pamctl binary instead of building ./cmd/pamctl")
	fs.StringVar(&o.pamctlPprof, "pamctl-pprof", "", "use this pamctl binary, built with the bench's pprof overlay, for goroutine counts and profiles")
	fs.StringVar(&o.baseline, "baseline", "", "also run this pamctl binary (all on, as pamctl-baseline) for a before/after comparison in the same run")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if o.conc, err = parseInts(*conc); err != nil {
		return o, fmt.Errorf("-c: %w", err)
	}
	switch {
	case o.rounds < 1:
		return o, fmt.Errorf("-rounds must be at least 1")
	case o.deltas < 1:
		return o, fmt.Errorf("-deltas must be at least 1")
	case o.api != apiChat && o.api != apiResponses:
		return o, fmt.Errorf("-api must be %s or %s, not %q", apiChat, apiResponses, o.api)
	case o.sync != "durable" && o.sync != "async":
		return o, fmt.Errorf("-sync must be durable or async")
	case o.config == "":
		return o, fmt.Errorf("-config must name a profile (security, minimal) or a rules file")
	case o.format != "text" && o.format != "md":
		return o, fmt.Errorf("-format must be text or md")
	}
	return o, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func joinInts(n []int) string {
	s := make([]string, len(n))
	for i, v := range n {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}
