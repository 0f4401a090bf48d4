package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// options configure one run of the benchmark.
type options struct {
	conc        []int         // concurrency levels of the chat and stream scenarios
	rate        float64       // paced chat scenario at the highest concurrency, requests per second (0: none)
	rateN       int           // requests per target of the paced scenario
	chatN       int           // chat requests per target at concurrency > 1
	chatN1      int           // chat requests per target at concurrency 1
	streamN     int           // streams per target at concurrency > 1
	streamN1    int           // streams per target at concurrency 1
	memLimit    string        // GOMEMLIMIT of the open-streams pamctl ("" none)
	rounds      int           // interleaved rounds the counts are split into
	warmup      int           // unmeasured requests per target before each scenario
	api         string        // -api: the API every scenario calls, apiChat or apiResponses
	deltas      int           // content deltas per stream (events: streamEvents)
	latency     time.Duration // mock upstream latency
	streams     int           // concurrent open streams of the resource phase (0: skip)
	streamGap   time.Duration // DeltaGap of the resource phase's mock
	variants    bool          // also run pamctl with masking off and with async audit
	profileDir  string        // write pprof CPU and allocation profiles of pamctl here
	profileTime time.Duration // length of each profiled load
	dev         bool          // run pamctl serve --dev instead of as deployed
	sync        string        // audit.sync of the all-on pamctl: durable or async
	config      string        // -config: a profile (security, minimal) or a rules file
	format      string        // text or md
	keep        bool          // keep the work dir (logs, data dirs)
	pamctl      string        // prebuilt pamctl binary (default: build it)
	pamctlPprof string        // prebuilt pamctl with the pprof overlay (default: build it)
	baseline    string        // another pamctl binary to run all-on next to this one ("pamctl-baseline")
	progress    io.Writer     // progress lines
}

// The APIs of -api: every scenario sends chat completions, or OpenAI
// Responses API calls (what the OpenAI Agents SDK sends by default).
const (
	apiChat      = "chat"      // POST /v1/chat/completions
	apiResponses = "responses" // POST /v1/responses
)

// apiPath is the request path of api's calls.
func apiPath(api string) string {
	if api == apiResponses {
		return "/v1/responses"
	}
	return "/v1/chat/completions"
}

// streamEvents is the number of events of the mock's stream of deltas
// content deltas (proxy/devupstream): for chat completions the role chunk,
// the deltas, the finish chunk and [DONE]; for the Responses API
// response.created, response.in_progress, response.output_item.added,
// response.content_part.added, the deltas (response.output_text.delta),
// response.output_text.done, response.content_part.done,
// response.output_item.done and response.completed. (A reply shorter than
// deltas runes has fewer deltas; the benchmark's is not.)
func streamEvents(api string, deltas int) int {
	if api == apiResponses {
		return deltas + 8
	}
	return deltas + 3
}

// issueDeltas is the stream of issue 16's total-time target, "a 43-event
// stream": a chat completion's 40 content deltas, the role chunk, the
// finish chunk and [DONE].
const issueDeltas = 40

// issueStream notes, for a target line, whether the stream is the issue's:
// a chat stream of issueDeltas deltas.
func issueStream(api string, deltas int) string {
	switch {
	case api == apiResponses:
		return fmt.Sprintf(", Responses API, not the issue's %d-event chat stream", streamEvents(apiChat, issueDeltas))
	case deltas == issueDeltas:
		return ", the issue's stream"
	}
	return fmt.Sprintf(", not the issue's %d", streamEvents(apiChat, issueDeltas))
}

func defaultOptions() options {
	return options{
		conc: []int{1, 32}, rate: 500, rateN: 3000, chatN: 12000, chatN1: 2000, streamN: 3200, streamN1: 400,
		rounds: 4, warmup: 200, api: apiChat, deltas: issueDeltas, streams: 1000, streamGap: 100 * time.Millisecond,
		variants: true, profileTime: 10 * time.Second, format: "text", progress: os.Stderr, sync: "durable", config: profileSecurity,
	}
}

// quickOptions is the smoke run CI uses: a few hundred requests.
func quickOptions() options {
	o := defaultOptions()
	o.conc = []int{1, 4}
	o.rate, o.rateN = 100, 100
	o.chatN, o.chatN1, o.streamN, o.streamN1 = 200, 100, 100, 40
	o.rounds, o.warmup = 2, 20
	o.streams, o.streamGap = 50, 20*time.Millisecond
	o.profileTime = 2 * time.Second
	return o
}

// target is something the load generator drives.
type target struct {
	name  string
	url   string
	token string
	cl    *http.Client
	inst  *instance // pamctl targets
}

// scenario is one kind of load.
type scenario struct {
	stream bool
	conc   int
	count  int
	rate   float64 // paced: requests per second in all
}

func (s scenario) name() string {
	switch {
	case s.stream:
		return fmt.Sprintf("stream c=%d", s.conc)
	case s.rate > 0:
		return fmt.Sprintf("chat c=%d @%.0f/s", s.conc, s.rate)
	}
	return fmt.Sprintf("chat c=%d", s.conc)
}

// cell is what one target measured in one scenario.
type cell struct {
	s         *samples
	rounds    []*samples    // each round's samples, in round order (s holds them all)
	upConns   int64         // TCP connections the mock accepted during the measured runs
	cpu       time.Duration // CPU time of the target's process (the mock for direct) during the measured runs
	syscalls  int64         // read and write system calls of that process during the measured runs (/proc/PID/io)
	sysN      int           // requests of the runs whose system calls were read
	rssPeakKB int64         // pamctl's VmHWM after the scenario (0 for others)
}

// resources is what the open-streams phase measured.
type resources struct {
	streams                    int
	all                        *samples
	rssBase, rssOpen, rssAfter int64 // kB
	hwm                        int64 // kB
	bareBase, bareOpen         int64 // kB, the bare proxy's with the same streams
	bareHWM                    int64 // kB
	fdBase, fdOpen, fdAfter    int
	thrBase, thrOpen, thrAfter int
	goBase, goOpen, goAfter    int // -1 when unknown
	upOpenMax                  int64
	upIdleBase, upIdleAfter    int64 // upstream connections pamctl keeps open, idle
	gap                        time.Duration
	openedIn                   time.Duration
	goErr                      string
}

// report is a whole run.
type report struct {
	o         options
	machine   string
	loadStart string
	loadEnd   string
	started   time.Time
	took      time.Duration
	targets   []string
	scenarios []scenario
	cells     map[string]map[string]*cell // scenario name -> target -> cell
	res       *resources
	profiles  []string
}

// bench is the running benchmark.
type bench struct {
	o        options
	ctx      context.Context
	work     string
	bins     struct{ mock, bare, pamctl, pamctlPprof string }
	mock     *proc
	bare     *proc
	iss      *benchIssuer
	insts    []*instance
	targets  []*target
	profiles []string
}

func (b *bench) logf(format string, args ...any) {
	if b.o.progress != nil {
		fmt.Fprintf(b.o.progress, "bench: "+format+"\n", args...)
	}
}

// runBench runs the whole benchmark and returns its report.
func runBench(ctx context.Context, o options) (rep *report, err error) {
	if runtime.GOOS != "linux" {
		return nil, errors.New("the benchmark reads /proc: it runs on Linux only")
	}
	b := &bench{o: o, ctx: ctx}
	if b.work, err = os.MkdirTemp("", "pamctl-bench-"); err != nil {
		return nil, err
	}
	defer func() {
		b.stopAll()
		if o.keep || err != nil {
			b.logf("work dir kept: %s", b.work)
		} else {
			os.RemoveAll(b.work)
		}
	}()
	rep = &report{o: o, started: time.Now(), loadStart: loadAvg(), cells: map[string]map[string]*cell{}}
	rep.machine = fmt.Sprintf("%s, %d CPUs (%s), %s %s/%s", hostname(), runtime.NumCPU(), cpuModel(), runtime.Version(), runtime.GOOS, runtime.GOARCH)

	if err := b.build(); err != nil {
		return nil, err
	}
	if err := b.startTargets(); err != nil {
		return nil, err
	}
	for _, t := range b.targets {
		rep.targets = append(rep.targets, t.name)
	}
	var scenarios []scenario
	for _, stream := range []bool{false, true} {
		for _, c := range o.conc {
			s := scenario{stream: stream, conc: c}
			switch {
			case !stream && c == 1:
				s.count = o.chatN1
			case !stream:
				s.count = o.chatN
			case c == 1:
				s.count = o.streamN1
			default:
				s.count = o.streamN
			}
			if s.count <= 0 {
				continue
			}
			scenarios = append(scenarios, s)
		}
		if !stream && o.rate > 0 && o.rateN > 0 {
			// The same calls at a fixed rate every target keeps up with:
			// what each adds per call, without the queue of saturation.
			scenarios = append(scenarios, scenario{conc: slices.Max(o.conc), count: o.rateN, rate: o.rate})
		}
	}
	for _, s := range scenarios {
		rep.scenarios = append(rep.scenarios, s)
		if err := b.runScenario(rep, s); err != nil {
			return nil, err
		}
	}
	if o.profileDir != "" {
		if rep.profiles, err = b.profile(); err != nil {
			return nil, err
		}
	}
	b.stopAll()
	if o.streams > 0 {
		if rep.res, err = b.openStreamsPhase(); err != nil {
			return nil, err
		}
	}
	rep.profiles = append(rep.profiles, b.profiles...)
	rep.loadEnd = loadAvg()
	rep.took = time.Since(rep.started)
	return rep, nil
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "?"
	}
	return h
}

// build compiles the mock, the bare proxy and pamctl (plain, and with the
// pprof overlay for goroutine counts and profiles).
func (b *bench) build() error {
	root, err := moduleRoot(b.ctx)
	if err != nil {
		return err
	}
	bin := filepath.Join(b.work, "bin")
	b.bins.mock = filepath.Join(bin, "mockupstream")
	b.bins.bare = filepath.Join(bin, "bareproxy")
	b.bins.pamctl = filepath.Join(bin, "pamctl")
	b.bins.pamctlPprof = filepath.Join(bin, "pamctl-pprof")
	b.logf("building mockupstream, bareproxy and pamctl in %s", bin)
	builds := [][]string{
		{"build", "-o", b.bins.mock, "./bench/cmd/mockupstream"},
		{"build", "-o", b.bins.bare, "./bench/cmd/bareproxy"},
	}
	if b.o.pamctl != "" {
		b.bins.pamctl = b.o.pamctl
	} else {
		builds = append(builds, []string{"build", "-o", b.bins.pamctl, "./cmd/pamctl"})
	}
	if b.o.pamctlPprof != "" {
		b.bins.pamctlPprof = b.o.pamctlPprof
	} else if b.o.streams > 0 || b.o.profileDir != "" {
		src := filepath.Join(b.work, "zz_bench_pprof.go")
		if err := os.WriteFile(src, []byte(pprofOverlay), 0o600); err != nil {
			return err
		}
		ov, _ := json.Marshal(map[string]map[string]string{"Replace": {filepath.Join(root, "cmd", "pamctl", "zz_bench_pprof.go"): src}})
		ovFile := filepath.Join(b.work, "overlay.json")
		if err := os.WriteFile(ovFile, ov, 0o600); err != nil {
			return err
		}
		builds = append(builds, []string{"build", "-overlay", ovFile, "-o", b.bins.pamctlPprof, "./cmd/pamctl"})
	}
	for _, args := range builds {
		cmd := exec.CommandContext(b.ctx, "go", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// moduleRoot is the directory of pamctl's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w (run the benchmark inside the pamctl module)", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the pamctl module: run the benchmark from the repository (go run ./bench)")
	}
	return filepath.Dir(mod), nil
}

// startTargets starts the mock, the bare proxy and the pamctl variants.
func (b *bench) startTargets() error {
	var err error
	if !b.o.dev {
		if b.iss, err = startIssuer(); err != nil {
			return err
		}
	}
	b.logf("starting mock upstream, bare proxy and pamctl")
	b.mock, err = startProc("mockupstream", b.bins.mock, []string{
		"-deltas", fmt.Sprint(b.o.deltas), "-latency", b.o.latency.String()}, nil, b.work, true)
	if err != nil {
		return err
	}
	up := "http://" + b.mock.addr + "/v1"
	b.bare, err = startProc("bareproxy", b.bins.bare, []string{"-upstream", up, "-key", "sk-bench-not-a-real-key"}, nil, b.work, true)
	if err != nil {
		return err
	}
	variants := []variant{{name: "pamctl", mask: true, sync: b.o.sync, pprof: b.o.profileDir != ""}}
	if b.o.baseline != "" {
		variants = append(variants, variant{name: "pamctl-baseline", mask: true, sync: "durable", bin: b.o.baseline})
	}
	if b.o.variants {
		variants = append(variants,
			variant{name: "pamctl-nomask", mask: false, sync: "durable"},
			variant{name: "pamctl-async", mask: true, sync: "async"})
	}
	rules, err := profileRules(b.o.config)
	if err != nil {
		return err
	}
	var tok string
	for _, v := range variants {
		v.rules = rules
		bin := b.bins.pamctl
		switch {
		case v.bin != "":
			bin = v.bin
		case v.pprof:
			bin = b.bins.pamctlPprof
		}
		v.upstream, v.dev = up, b.o.dev
		if b.iss != nil {
			v.issuer = b.iss.url()
		}
		in, err := startPamctl(b.ctx, bin, b.work, v, b.iss)
		if err != nil {
			return err
		}
		b.insts = append(b.insts, in)
		tok = b.insts[0].token
	}
	maxC := 1
	for _, c := range b.o.conc {
		maxC = max(maxC, c)
	}
	path := apiPath(b.o.api)
	b.targets = []*target{
		{name: "direct", url: up + strings.TrimPrefix(path, "/v1"), token: tok, cl: newClient(maxC)},
		{name: "bare", url: "http://" + b.bare.addr + path, token: tok, cl: newClient(maxC)},
	}
	for _, in := range b.insts {
		b.targets = append(b.targets, &target{name: in.v.name, url: in.url(path), token: in.token, cl: newClient(maxC), inst: in})
	}
	return nil
}

func (b *bench) stopAll() {
	for _, in := range b.insts {
		in.stop()
	}
	b.insts = nil
	for _, p := range []*proc{b.bare, b.mock} {
		if p != nil {
			p.stop()
		}
	}
	b.bare, b.mock = nil, nil
	b.iss.close()
	b.iss = nil
	for _, t := range b.targets {
		t.cl.CloseIdleConnections()
	}
}

// mockConns is the number of connections a mock has accepted so far.
func mockConns(ctx context.Context, addr string) (conns, open int64) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/_bench/stats", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1, -1
	}
	defer res.Body.Close()
	var st struct{ Conns, Open int64 }
	if json.NewDecoder(res.Body).Decode(&st) != nil {
		return -1, -1
	}
	return st.Conns, st.Open
}

// runScenario warms every target up, then drives them in turn, round by
// round (A B C … then … C B A), so drift in the machine's load hits every
// target alike.
func (b *bench) runScenario(rep *report, s scenario) error {
	j := job{body: requestBody(b.o.api, s.stream), api: b.o.api, stream: s.stream, rate: s.rate}
	b.logf("%s: %d requests per target in %d rounds", s.name(), s.count, b.o.rounds)
	cells := map[string]*cell{}
	rep.cells[s.name()] = cells
	for _, t := range b.targets {
		cells[t.name] = &cell{s: &samples{}}
		w := max(b.o.warmup, 2*s.conc)
		if s.stream {
			w = max(b.o.warmup/4, 2*s.conc)
		}
		jt := j
		jt.url, jt.token, jt.rate = t.url, t.token, 0
		if r := drive(b.ctx, t.cl, jt, s.conc, w, time.Time{}); r.errs > 0 {
			return fmt.Errorf("%s warm-up against %s: %d of %d failed, first: %s%s", s.name(), t.name, r.errs, r.n, r.firstE, b.procTail(t))
		}
	}
	per := max(1, s.count/b.o.rounds)
	for round := range b.o.rounds {
		order := b.targets
		if round%2 == 1 {
			order = reversed(b.targets)
		}
		for _, t := range order {
			jt := j
			jt.url, jt.token = t.url, t.token
			pid := b.pidOf(t)
			c0, _ := mockConns(b.ctx, b.mock.addr)
			u0, _ := cpuTime(pid)
			io0, ioErr0 := ioCalls(pid)
			r := drive(b.ctx, t.cl, jt, s.conc, per, time.Time{})
			u1, _ := cpuTime(pid)
			io1, ioErr1 := ioCalls(pid)
			c1, _ := mockConns(b.ctx, b.mock.addr)
			cl := cells[t.name]
			cl.s.add(r)
			cl.rounds = append(cl.rounds, r)
			cl.cpu += u1 - u0
			if ioErr0 == nil && ioErr1 == nil {
				cl.syscalls += io1 - io0
				cl.sysN += r.n
			}
			if c0 >= 0 && c1 >= 0 {
				cl.upConns += c1 - c0
			}
			if err := b.ctx.Err(); err != nil {
				return err
			}
			if t.inst != nil && !t.inst.p.alive() {
				return fmt.Errorf("%s exited during %s%s", t.name, s.name(), t.inst.p.tail())
			}
		}
	}
	for _, t := range b.targets {
		if t.inst != nil {
			cells[t.name].rssPeakKB, _ = procStatus(t.inst.p.pid(), "VmHWM")
		}
	}
	return nil
}

// pidOf is the process serving t: the mock for direct.
func (b *bench) pidOf(t *target) int {
	switch {
	case t.inst != nil:
		return t.inst.p.pid()
	case t.name == "bare":
		return b.bare.pid()
	}
	return b.mock.pid()
}

func (b *bench) procTail(t *target) string {
	switch {
	case t.inst != nil:
		return t.inst.p.tail()
	case t.name == "bare" && b.bare != nil:
		return b.bare.tail()
	case b.mock != nil:
		return b.mock.tail()
	}
	return ""
}

func reversed[T any](s []T) []T {
	out := make([]T, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

// openStreamsPhase starts a mock whose streams pause between deltas and a
// fresh pamctl (all on, pprof overlay for goroutine counts), opens
// o.streams streams at once, and reads pamctl's memory, descriptors,
// threads and goroutines before, while they are all open, and after.
func (b *bench) openStreamsPhase() (*resources, error) {
	o := b.o
	res := &resources{streams: o.streams, gap: o.streamGap}
	b.logf("open streams: %d concurrent streams, %s between deltas", o.streams, o.streamGap)
	mock, err := startProc("mockupstream-slow", b.bins.mock, []string{
		"-deltas", fmt.Sprint(o.deltas), "-delta-gap", o.streamGap.String()}, nil, b.work, true)
	if err != nil {
		return nil, err
	}
	defer mock.stop()
	rules, err := profileRules(o.config)
	if err != nil {
		return nil, err
	}
	v := variant{name: "pamctl-streams", mask: true, sync: "durable", upstream: "http://" + mock.addr + "/v1", pprof: true, dev: o.dev, rules: rules, memLimit: o.memLimit}
	var iss *benchIssuer
	if !o.dev {
		if iss, err = startIssuer(); err != nil {
			return nil, err
		}
		defer iss.close()
		v.issuer = iss.url()
	}
	in, err := startPamctl(b.ctx, b.bins.pamctlPprof, b.work, v, iss)
	if err != nil {
		return nil, err
	}
	defer in.stop()
	pid := in.p.pid()
	cl := newClient(o.streams)
	defer cl.CloseIdleConnections()
	j := job{url: in.url(apiPath(o.api)), token: in.token, body: requestBody(o.api, true), api: o.api, stream: true}
	// Warm up with a few streams, then let everything settle: the baseline
	// includes what the first calls set up once (pools, caches).
	if r := drive(b.ctx, cl, j, 4, 8, time.Time{}); r.errs > 0 {
		return nil, fmt.Errorf("open streams warm-up: %d failed, first: %s%s", r.errs, r.firstE, in.p.tail())
	}
	cl.CloseIdleConnections()
	time.Sleep(1500 * time.Millisecond)
	memstats := func(when string) {
		if b.o.progress == nil {
			return
		}
		req, _ := http.NewRequestWithContext(b.ctx, http.MethodGet, "http://"+in.pprofAddr+"/debug/memstats", nil)
		if res, err := http.DefaultClient.Do(req); err == nil {
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			b.logf("pamctl memstats %s: %s", when, strings.TrimSpace(string(body)))
		}
	}
	sample := func(rss *int64, fd, thr, gor *int) {
		*rss, _ = procStatus(pid, "VmRSS")
		*fd, _ = fdCount(pid)
		*thr, _ = threadCount(pid)
		n, err := goroutines(b.ctx, in.pprofAddr)
		if err != nil {
			n, res.goErr = -1, err.Error()
		}
		*gor = n
	}
	sample(&res.rssBase, &res.fdBase, &res.thrBase, &res.goBase)
	memstats("before")
	_, res.upIdleBase = mockConns(b.ctx, mock.addr)
	t0 := time.Now()
	wait := openStreams(b.ctx, cl, j, o.streams)
	res.openedIn = time.Since(t0)
	_, res.upOpenMax = mockConns(b.ctx, mock.addr)
	sample(&res.rssOpen, &res.fdOpen, &res.thrOpen, &res.goOpen)
	memstats("all open")
	if o.profileDir != "" {
		// What the open streams hold: live heap and every goroutine.
		for _, p := range []struct{ name, path string }{
			{"heap-open-streams.pprof", "/debug/pprof/heap?gc=1"},
			{"goroutines-open-streams.txt", "/debug/pprof/goroutine?debug=1"},
		} {
			file := filepath.Join(o.profileDir, p.name)
			if err := fetch(b.ctx, "http://"+in.pprofAddr+p.path, file); err != nil {
				return nil, fmt.Errorf("profile: %w", err)
			}
			b.profiles = append(b.profiles, file)
		}
	}
	res.all = wait()
	res.hwm, _ = procStatus(pid, "VmHWM")
	memstats("all ended")
	if o.profileDir != "" {
		// What the streams allocated while they ran (and ended): go tool
		// pprof -sample_index=alloc_space -base heap-open-streams.pprof.
		file := filepath.Join(o.profileDir, "heap-streams-ended.pprof")
		if err := fetch(b.ctx, "http://"+in.pprofAddr+"/debug/pprof/heap?gc=1", file); err != nil {
			return nil, fmt.Errorf("profile: %w", err)
		}
		b.profiles = append(b.profiles, file)
	}
	// The client closes its idle connections, so pamctl's side of them
	// ends; then give the server a moment to reap them.
	cl.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for {
		time.Sleep(500 * time.Millisecond)
		sample(&res.rssAfter, &res.fdAfter, &res.thrAfter, &res.goAfter)
		_, res.upIdleAfter = mockConns(b.ctx, mock.addr)
		if res.settled() || time.Now().After(deadline) {
			break
		}
	}
	if res.all.errs > 0 {
		return nil, fmt.Errorf("open streams: %d of %d failed, first: %s%s", res.all.errs, res.all.n, res.all.firstE, in.p.tail())
	}
	in.stop()
	if err := b.bareOpenStreams(res, mock); err != nil {
		return nil, err
	}
	return res, nil
}

// bareOpenStreams opens the same streams through the bare proxy (Go's
// httputil.ReverseProxy, nothing else) and reads its memory: what net/http
// alone holds for them, the floor under pamctl's figure.
func (b *bench) bareOpenStreams(res *resources, mock *proc) error {
	bare, err := startProc("bareproxy-streams", b.bins.bare, []string{"-upstream", "http://" + mock.addr + "/v1", "-key", "sk-bench-not-a-real-key"}, nil, b.work, true)
	if err != nil {
		return err
	}
	defer bare.stop()
	cl := newClient(res.streams)
	defer cl.CloseIdleConnections()
	j := job{url: "http://" + bare.addr + apiPath(b.o.api), token: "bench", body: requestBody(b.o.api, true), api: b.o.api, stream: true}
	if r := drive(b.ctx, cl, j, 4, 8, time.Time{}); r.errs > 0 {
		return fmt.Errorf("bare open streams warm-up: %d failed, first: %s%s", r.errs, r.firstE, bare.tail())
	}
	cl.CloseIdleConnections()
	time.Sleep(1500 * time.Millisecond)
	res.bareBase, _ = procStatus(bare.pid(), "VmRSS")
	wait := openStreams(b.ctx, cl, j, res.streams)
	res.bareOpen, _ = procStatus(bare.pid(), "VmRSS")
	all := wait()
	res.bareHWM, _ = procStatus(bare.pid(), "VmHWM")
	if all.errs > 0 {
		return fmt.Errorf("bare open streams: %d of %d failed, first: %s%s", all.errs, all.n, all.firstE, bare.tail())
	}
	return nil
}

// settled reports whether pamctl's goroutines and descriptors are back to
// the baseline once the upstream connections its transport keeps idle for
// reuse (one descriptor and two goroutines each: read and write loop) are
// accounted for; a small slack covers timers and the like.
func (res *resources) settled() bool {
	idle := res.upIdleAfter - res.upIdleBase
	return int64(res.goAfter) <= int64(res.goBase)+2*idle+2 && int64(res.fdAfter) <= int64(res.fdBase)+idle+1
}

// profile drives the all-on pamctl (the pprof build) at the highest
// concurrency for profileTime per scenario while taking a CPU profile and
// an allocation profile of it.
func (b *bench) profile() ([]string, error) {
	var in *instance
	var t *target
	for _, x := range b.targets {
		if x.inst != nil && x.inst.v.pprof {
			in, t = x.inst, x
		}
	}
	if in == nil {
		return nil, errors.New("profile: no pamctl with a pprof listener")
	}
	if err := os.MkdirAll(b.o.profileDir, 0o755); err != nil {
		return nil, err
	}
	conc := b.o.conc[len(b.o.conc)-1]
	secs := int(max(1, b.o.profileTime.Seconds()))
	var files []string
	for _, stream := range []bool{false, true} {
		kind := "chat"
		if stream {
			kind = "stream"
		}
		b.logf("profiling pamctl: %s c=%d for %ds", kind, conc, secs)
		j := job{url: t.url, token: t.token, body: requestBody(b.o.api, stream), api: b.o.api, stream: stream}
		type got struct {
			name string
			err  error
		}
		done := make(chan got, 2)
		for _, p := range []struct{ name, path string }{
			{"cpu", fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs)},
			{"allocs", fmt.Sprintf("/debug/pprof/allocs?seconds=%d", secs)},
		} {
			file := filepath.Join(b.o.profileDir, fmt.Sprintf("%s-%s.pprof", p.name, kind))
			go func() { done <- got{file, fetch(b.ctx, "http://"+in.pprofAddr+p.path, file)} }()
		}
		time.Sleep(100 * time.Millisecond)
		u0, _ := cpuTime(in.p.pid())
		r := drive(b.ctx, t.cl, j, conc, 0, time.Now().Add(time.Duration(secs)*time.Second+300*time.Millisecond))
		u1, _ := cpuTime(in.p.pid())
		for range 2 {
			g := <-done
			if g.err != nil {
				return nil, fmt.Errorf("profile: %w", g.err)
			}
			files = append(files, g.name)
		}
		if r.errs > 0 {
			return nil, fmt.Errorf("profile %s: %d of %d failed, first: %s", kind, r.errs, r.n, r.firstE)
		}
		b.logf("profiled %s: %.0f req/s, %.0f µs CPU per request", kind, r.rps(), float64((u1-u0).Microseconds())/float64(max(1, r.n)))
	}
	return files, nil
}

func fetch(ctx context.Context, url, file string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	res, err := (&http.Client{Timeout: 5 * time.Minute}).Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(res.Body, 500))
		return fmt.Errorf("%s: %s %s", url, res.Status, msg)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// requestBody is the benchmark's request for api: chatBody or
// responsesBody.
func requestBody(api string, stream bool) []byte {
	if api == apiResponses {
		return responsesBody(stream)
	}
	return chatBody(stream)
}

// chatBody is the benchmark's request: about 1 KB of ordinary prose that
// no rule matches and no detector flags. Streams ask for "stream": true
// only, as the SDKs do by default (pamctl then asks upstream for usage and
// drops the usage chunk on the way back).
func chatBody(stream bool) []byte {
	body := map[string]any{
		"model": "gpt-4o-mini",
		"messages": []map[string]string{
			{"role": "system", "content": benchSystem},
			{"role": "user", "content": benchPrompt},
		},
	}
	if stream {
		body["stream"] = true
	}
	b, _ := json.Marshal(body)
	return b
}

// responsesBody is chatBody's request as a Responses API call, the same
// texts: the system message as instructions, the prompt as input.
func responsesBody(stream bool) []byte {
	body := map[string]any{
		"model":        "gpt-4o-mini",
		"instructions": benchSystem,
		"input":        benchPrompt,
	}
	if stream {
		body["stream"] = true
	}
	b, _ := json.Marshal(body)
	return b
}

// benchSystem is the system text of every request.
const benchSystem = "You are a careful assistant for an engineering team. Answer briefly and cite the section you rely on."

const benchPrompt = `Please review the following design notes for our internal ticket router and tell me ` +
	`whether the retry policy is sound. The router receives tickets from the web form and the mail ` +
	`gateway, normalises them, and hands them to one of several queues by product area. When a queue ` +
	`is unavailable the router waits a little, tries again, and after a few attempts parks the ticket ` +
	`in a holding area that an operator reviews every morning. We are worried about three things. ` +
	`First, whether waiting a little longer after each failed attempt is enough to avoid a storm of ` +
	`retries when a queue comes back after an outage. Second, whether parking tickets could hide a ` +
	`real problem for too long, since nobody looks at the holding area at night or during holidays. ` +
	`Third, whether the router should tell the person who filed the ticket that it is delayed, or ` +
	`whether that would only create more tickets asking about the first one. Keep the answer short, ` +
	`list the risks in order of importance, and suggest one change for each of them.`
