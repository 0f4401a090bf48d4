// Package metrics exposes pamctl's Prometheus metrics: a proxy.Observer
// for the data path (calls, latencies, tokens, holds, token checks), an
// audit-event counter for what the trail already says (requests by state,
// tokens issued, revocations), hooks for the store's audit log, and
// collectors read at scrape time (audit queue depth, sink lag).
//
// Labels are bounded: no subject, grant or request ids; models outside
// Options.Models are counted as "other".
package metrics

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/auditsink"
	"github.com/pamctl/pamctl/proxy"
)

// OtherModel is the model label of every model not in Options.Models.
const OtherModel = "other"

// maxModels bounds the model label's values whatever the config says.
const maxModels = 256

// Options configure Metrics.
type Options struct {
	// Models are the model names that get a label of their own (the
	// models named by policies' scopes, as sent upstream); others are
	// "other". Names with a wildcard are skipped.
	Models []string
	// Sinks reports the audit sinks' status at scrape time (nil: none).
	Sinks func() []auditsink.Status
	// QueueDepth reports the audit log's async queue at scrape time.
	QueueDepth func() int
	// Proxies reports the enrolled local proxies at scrape time (nil:
	// the broker serves none).
	Proxies func() []ProxyStatus
	// Link reports a proxy-role process's link to its broker at scrape
	// time (nil: not the proxy role).
	Link func() LinkStatus
	// RecordKinds are the store's record kinds (store.RecordKinds), the
	// values of pamctl_store_forged_records_total's kind label; the last
	// is what any other kind counts as.
	RecordKinds []string
	// Now is the clock for latencies (default time.Now).
	Now func() time.Time
}

// Metrics is the registry and every pamctl_ collector.
type Metrics struct {
	reg    *prometheus.Registry
	now    func() time.Time
	models atomic.Pointer[map[string]string] // each name to itself: the config's copy

	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	own         *prometheus.HistogramVec
	upstream    *prometheus.HistogramVec
	ttfb        *prometheus.HistogramVec
	tokens      *prometheus.CounterVec
	holdPending prometheus.Gauge
	holdSeconds prometheus.Histogram
	masked      *prometheus.CounterVec
	rules       *prometheus.CounterVec
	limits      *prometheus.CounterVec
	verify      *prometheus.CounterVec
	events      *prometheus.CounterVec
	reqStates   *prometheus.CounterVec
	issued      prometheus.Counter
	revoked     *prometheus.CounterVec
	appendSecs  prometheus.Histogram
	appendErrs  prometheus.Counter
	batch       prometheus.Histogram
	forged      *prometheus.CounterVec
	forgedKinds []string // Options.RecordKinds
}

// New registers every collector on a fresh registry (with the Go and
// process collectors).
func New(o Options) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), now: o.Now}
	if m.now == nil {
		m.now = time.Now
	}
	m.SetModels(o.Models)
	latency := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}
	f := factory{m.reg}
	m.requests = f.counterVec("pamctl_proxy_requests_total", "Proxied calls by endpoint, model, HTTP status and rule decision.", "endpoint", "model", "status", "decision")
	m.duration = f.histVec("pamctl_proxy_request_duration_seconds", "Whole proxied calls, from arrival to the end of the answer.", latency, "endpoint")
	m.own = f.histVec("pamctl_proxy_overhead_seconds", "pamctl's own time per call: the whole call less the upstream's time and the time held for approval.", latency, "endpoint")
	m.upstream = f.histVec("pamctl_proxy_upstream_duration_seconds", "From forwarding a call until its answer was read to the end.", latency, "upstream")
	m.ttfb = f.histVec("pamctl_proxy_time_to_first_byte_seconds", "From a call's arrival until the upstream's response headers, when the client's first byte can leave.", latency, "upstream")
	m.tokens = f.counterVec("pamctl_proxy_tokens_total", "Upstream-reported tokens by model and direction (in: prompt, out: completion).", "model", "direction")
	m.holdPending = f.gauge("pamctl_proxy_held_calls", "Calls waiting for an approver now.")
	m.holdSeconds = f.hist("pamctl_proxy_hold_duration_seconds", "How long held calls waited for a decision.", []float64{1, 5, 15, 30, 60, 120, 300, 600})
	m.masked = f.counterVec("pamctl_proxy_masked_total", "Masking findings by detector and direction (prompt, response).", "detector", "direction")
	m.rules = f.counterVec("pamctl_proxy_rule_decisions_total", "Calls a prompt rule decided, by rule and decision.", "rule", "decision")
	m.limits = f.counterVec("pamctl_proxy_limit_rejections_total", "Calls refused by a limit, by error code.", "code")
	m.verify = f.counterVec("pamctl_proxy_token_verifications_total", "Access token checks by result (valid, invalid) and whether the verified-token cache answered.", "result", "cached")
	m.events = f.counterVec("pamctl_audit_events_total", "Audit events appended, by type.", "type")
	m.reqStates = f.counterVec("pamctl_requests_total", "Access requests by the state they reached (created, approved, denied, expired).", "state")
	m.issued = f.counter("pamctl_tokens_issued_total", "Access tokens the broker issued.")
	m.revoked = f.counterVec("pamctl_revocations_total", "Revocations by kind (grant, session).", "kind")
	m.appendSecs = f.hist("pamctl_audit_append_duration_seconds", "Audit appends, until the event is durable (or queued in async mode).", latency)
	m.appendErrs = f.counter("pamctl_audit_append_errors_total", "Audit appends that failed.")
	m.batch = f.hist("pamctl_audit_commit_batch_events", "Events written per commit of the trail.", []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024})
	m.forged = f.counterVec("pamctl_store_forged_records_total", "Records read from the store that failed their authenticator (written without the master key), by record kind.", "kind")
	m.forgedKinds = o.RecordKinds
	for _, k := range m.forgedKinds {
		m.forged.WithLabelValues(k) // exported at 0, so the first one shows as an increase
	}
	if o.QueueDepth != nil {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "pamctl_audit_queue_depth",
			Help: "Events queued for an async commit, not yet in the trail."}, func() float64 { return float64(o.QueueDepth()) }))
	}
	if o.Sinks != nil {
		m.reg.MustRegister(&sinkCollector{status: o.Sinks})
	}
	if o.Proxies != nil {
		m.reg.MustRegister(&proxyCollector{status: o.Proxies})
	}
	if o.Link != nil {
		m.reg.MustRegister(&linkCollector{status: o.Link})
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// RecordForged counts a record the store refused because its
// authenticator is missing or wrong (store.RecordKey.OnForged). kind is
// the record's kind; one not in Options.RecordKinds counts as the last of
// them, so the label stays bounded.
func (m *Metrics) RecordForged(kind string) {
	if len(m.forgedKinds) == 0 {
		return
	}
	if !slices.Contains(m.forgedKinds, kind) {
		kind = m.forgedKinds[len(m.forgedKinds)-1]
	}
	m.forged.WithLabelValues(kind).Inc()
}

// SetModels replaces the models that get a label of their own (config
// reload); series already exported stay.
func (m *Metrics) SetModels(models []string) {
	set := map[string]string{}
	for _, name := range models {
		if name == "" || strings.ContainsAny(name, "*?[") || len(set) >= maxModels {
			continue
		}
		set[name] = strings.Clone(name)
	}
	m.models.Store(&set)
}

// Registry is where the collectors live (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in Prometheus' exposition formats.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	return mux
}

// model bounds the model label. A known name is the config's copy: a
// series keeps its label for good, and the call's name may be a slice of
// its whole body.
func (m *Metrics) model(name string) string {
	if name == "" {
		return "none"
	}
	if own, ok := (*m.models.Load())[name]; ok {
		return own
	}
	return OtherModel
}

// callState is one call's timestamps, kept in the Observer's context.
type callState struct {
	begin, upBegin, upEnd, firstByte time.Time
	holdBegin                        time.Time
	held                             time.Duration
	upstreamOpen                     bool
}

type stateKey struct{}

var statePool = sync.Pool{New: func() any { return new(callState) }}

// CallBegin implements proxy.Observer.
func (m *Metrics) CallBegin(ctx context.Context, _ http.Header) context.Context {
	s := statePool.Get().(*callState)
	*s = callState{begin: m.now()}
	return context.WithValue(ctx, stateKey{}, s)
}

func stateOf(ctx context.Context) *callState {
	s, _ := ctx.Value(stateKey{}).(*callState)
	return s
}

// StageBegin implements proxy.Observer.
func (m *Metrics) StageBegin(ctx context.Context, st proxy.Stage) {
	s := stateOf(ctx)
	if s == nil {
		return
	}
	now := m.now()
	switch st {
	case proxy.StageHold:
		s.holdBegin = now
		m.holdPending.Inc()
	case proxy.StageUpstream:
		s.upBegin, s.upstreamOpen = now, true
	case proxy.StageMask, proxy.StageAudit:
		s.endUpstream(now)
	}
}

func (s *callState) endUpstream(now time.Time) {
	if s.upstreamOpen {
		s.upEnd, s.upstreamOpen = now, false
	}
}

// StageEnd implements proxy.Observer.
func (m *Metrics) StageEnd(ctx context.Context, st proxy.Stage) {
	s := stateOf(ctx)
	if s == nil || st != proxy.StageHold || s.holdBegin.IsZero() {
		return
	}
	d := m.now().Sub(s.holdBegin)
	s.held += d
	s.holdBegin = time.Time{}
	m.holdPending.Dec()
	m.holdSeconds.Observe(d.Seconds())
}

// Forward implements proxy.Observer.
func (m *Metrics) Forward(context.Context, http.Header) {}

// FirstByte implements proxy.Observer.
func (m *Metrics) FirstByte(ctx context.Context) {
	if s := stateOf(ctx); s != nil && s.firstByte.IsZero() {
		s.firstByte = m.now()
	}
}

// CallEnd implements proxy.Observer.
func (m *Metrics) CallEnd(ctx context.Context, st *proxy.CallStats) {
	s := stateOf(ctx)
	if s == nil {
		return
	}
	defer statePool.Put(s)
	now := m.now()
	if !s.holdBegin.IsZero() { // a hold that never saw its end
		m.StageEnd(ctx, proxy.StageHold)
	}
	s.endUpstream(now)
	model := m.model(st.Model)
	decision := st.Decision
	switch {
	case decision != "":
	case st.Code != "": // pamctl answered with an error of its own (5xx) before deciding
		decision = "error"
	default: // forwarded; the upstream's status is in the status label
		decision = "allow"
	}
	m.requests.WithLabelValues(st.Endpoint, model, strconv.Itoa(st.Status), decision).Inc()
	total := now.Sub(s.begin)
	m.duration.WithLabelValues(st.Endpoint).Observe(total.Seconds())
	own := total - s.held
	if !s.upBegin.IsZero() {
		up := s.upEnd.Sub(s.upBegin)
		own -= up
		m.upstream.WithLabelValues(st.Upstream).Observe(up.Seconds())
		if !s.firstByte.IsZero() {
			m.ttfb.WithLabelValues(st.Upstream).Observe(s.firstByte.Sub(s.begin).Seconds())
		}
	}
	m.own.WithLabelValues(st.Endpoint).Observe(max(own, 0).Seconds())
	if st.HasUsage {
		m.tokens.WithLabelValues(model, "in").Add(float64(st.TokensIn))
		m.tokens.WithLabelValues(model, "out").Add(float64(st.TokensOut))
	}
	for det, n := range st.MaskedIn {
		m.masked.WithLabelValues(det, "prompt").Add(float64(n))
	}
	for det, n := range st.MaskedOut {
		m.masked.WithLabelValues(det, "response").Add(float64(n))
	}
	if st.Rule != "" {
		m.rules.WithLabelValues(st.Rule, decision).Inc()
	}
	switch st.Code {
	case proxy.CodeRateLimitExceeded, proxy.CodeTokenBudgetExceeded, proxy.CodeLimitsUnavailable, proxy.CodeTooManyBodies, proxy.CodeProxyBusy:
		m.limits.WithLabelValues(st.Code).Inc()
	}
}

// TokenVerified implements proxy.Observer.
func (m *Metrics) TokenVerified(cached, ok bool) {
	result := "invalid"
	if ok {
		result = "valid"
	}
	m.verify.WithLabelValues(result, strconv.FormatBool(cached)).Inc()
}

// Appended counts one audit append: its latency, and when it succeeded
// what the event says (requests by state, tokens issued, revocations).
func (m *Metrics) Appended(e *audit.Event, took time.Duration, err error) {
	m.appendSecs.Observe(took.Seconds())
	if err != nil {
		m.appendErrs.Inc()
		return
	}
	m.events.WithLabelValues(string(e.Type)).Inc()
	switch e.Type {
	case audit.TypeRequestCreated:
		m.reqStates.WithLabelValues("created").Inc()
	case audit.TypeRequestApproved:
		m.reqStates.WithLabelValues("approved").Inc()
	case audit.TypeRequestDenied:
		m.reqStates.WithLabelValues("denied").Inc()
	case audit.TypeRequestExpired:
		m.reqStates.WithLabelValues("expired").Inc()
	case audit.TypeTokenIssued:
		m.issued.Inc()
	case audit.TypeGrantRevoked:
		m.revoked.WithLabelValues("grant").Inc()
	case audit.TypeSessionRevoked:
		m.revoked.WithLabelValues("session").Inc()
	}
}

// Committed records the size of one commit of the trail
// (store.AuditOptions.OnBatch).
func (m *Metrics) Committed(events int) { m.batch.Observe(float64(events)) }

var _ proxy.Observer = (*Metrics)(nil)

// sinkCollector reads each sink's lag when scraped.
type sinkCollector struct{ status func() []auditsink.Status }

var (
	sinkLagDesc  = prometheus.NewDesc("pamctl_audit_sink_lag_events", "Events (heads for the anchor) not yet delivered to each audit sink.", []string{"sink", "type"}, nil)
	sinkLastDesc = prometheus.NewDesc("pamctl_audit_sink_last_delivery_timestamp_seconds",
		"When each audit sink last took a delivery (Unix time; 0: never).", []string{"sink", "type"}, nil)
	sinkErrDesc = prometheus.NewDesc("pamctl_audit_sink_failing", "1 when the sink's last delivery attempt failed.", []string{"sink", "type"}, nil)
	sinkCurDesc = prometheus.NewDesc("pamctl_audit_sink_cursor_rejected",
		"1 when the sink's stored cursor was not trusted at start (past the end of the trail, or a missing or wrong authenticator) and delivery restarted at the first retained event.", []string{"sink", "type"}, nil)
	sinkLegacyDesc = prometheus.NewDesc("pamctl_audit_sink_cursor_unauthenticated",
		"1 when the sink's stored cursor had no authenticator and was taken as one written before cursors were authenticated: expected once, after that upgrade; at any other time someone stripped the authenticators.", []string{"sink", "type"}, nil)
	sinkOversizeDesc = prometheus.NewDesc("pamctl_audit_sink_oversize_events_total",
		"Events sent to the sink as an audit.oversize stand-in because they were too large for it, or the collector refused them alone.", []string{"sink", "type"}, nil)
	sinkRecentDesc = prometheus.NewDesc("pamctl_audit_sink_recent_stand_ins",
		"Stand-ins among the last 20 events sent to the sink; 10 or more makes the sink degraded in /readyz: the SIEM gets little event content.", []string{"sink", "type"}, nil)
)

func (c *sinkCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- sinkLagDesc
	ch <- sinkLastDesc
	ch <- sinkErrDesc
	ch <- sinkCurDesc
	ch <- sinkLegacyDesc
	ch <- sinkOversizeDesc
	ch <- sinkRecentDesc
}

func (c *sinkCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.status() {
		typ := s.Type
		if s.Anchor {
			typ = "anchor"
		}
		ch <- prometheus.MustNewConstMetric(sinkLagDesc, prometheus.GaugeValue, float64(s.Lag), s.Name, typ)
		last := 0.0
		if !s.LastDeliveryAt.IsZero() {
			last = float64(s.LastDeliveryAt.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(sinkLastDesc, prometheus.GaugeValue, last, s.Name, typ)
		failing := 0.0
		if s.LastError != "" && s.LastErrorAt.After(s.LastDeliveryAt) {
			failing = 1
		}
		ch <- prometheus.MustNewConstMetric(sinkErrDesc, prometheus.GaugeValue, failing, s.Name, typ)
		rejected := 0.0
		if s.CursorError != "" {
			rejected = 1
		}
		ch <- prometheus.MustNewConstMetric(sinkCurDesc, prometheus.GaugeValue, rejected, s.Name, typ)
		legacy := 0.0
		if s.CursorNote != "" {
			legacy = 1
		}
		ch <- prometheus.MustNewConstMetric(sinkLegacyDesc, prometheus.GaugeValue, legacy, s.Name, typ)
		ch <- prometheus.MustNewConstMetric(sinkOversizeDesc, prometheus.CounterValue, float64(s.Oversize), s.Name, typ)
		ch <- prometheus.MustNewConstMetric(sinkRecentDesc, prometheus.GaugeValue, float64(s.RecentStandIns), s.Name, typ)
	}
}

// factory registers as it builds.
type factory struct{ reg *prometheus.Registry }

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) histVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}

func (f factory) hist(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

// ProxyStatus is one enrollment of a local proxy, as the metrics see it.
type ProxyStatus struct {
	// Label names the proxy on the unauthenticated /metrics: the
	// enrollment's fingerprint (link.Fingerprint), never its id; one per
	// proxy, bounded by the fleet.
	Label       string
	State       string // live | revoked | expired
	LastContact time.Time
}

// proxyCollector reads the enrolled proxies when scraped.
type proxyCollector struct{ status func() []ProxyStatus }

var (
	proxiesDesc = prometheus.NewDesc("pamctl_proxies_enrolled", "Enrollments of local proxies by state.", []string{"state"}, nil)
	contactDesc = prometheus.NewDesc("pamctl_proxy_last_contact_timestamp_seconds",
		"When each live local proxy last reached the broker (Unix time).", []string{"proxy"}, nil)
)

func (c *proxyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- proxiesDesc
	ch <- contactDesc
}

func (c *proxyCollector) Collect(ch chan<- prometheus.Metric) {
	n := map[string]int{"live": 0, "revoked": 0, "expired": 0}
	for _, p := range c.status() {
		n[p.State]++
		if p.State == "live" {
			ch <- prometheus.MustNewConstMetric(contactDesc, prometheus.GaugeValue, float64(p.LastContact.Unix()), p.Label)
		}
	}
	for state, k := range n {
		ch <- prometheus.MustNewConstMetric(proxiesDesc, prometheus.GaugeValue, float64(k), state)
	}
}

// LinkStatus is a proxy-role process's link to its broker.
type LinkStatus struct {
	// Refusal is the code the proxy's gate answers 503 with now
	// (proxy_not_enrolled, revocations_stale, audit_spool_full), empty
	// while calls pass.
	Refusal string
	// SpoolBytes are the audit events spooled and not yet shipped.
	SpoolBytes int64
}

// linkRefusals are the gate's codes: the refusal label's bounded values.
var linkRefusals = []string{"proxy_not_enrolled", "revocations_stale", "audit_spool_full"}

// linkCollector reads the proxy role's link when scraped.
type linkCollector struct{ status func() LinkStatus }

var (
	linkReadyDesc = prometheus.NewDesc("pamctl_proxy_link_ready", "1 while this proxy's gate lets calls through (enrolled, revocations fresh, spool within proxy.spool_max).", nil, nil)
	linkRefDesc   = prometheus.NewDesc("pamctl_proxy_link_refusing", "1 for the reason this proxy's gate refuses calls now, 0 for the others.", []string{"code"}, nil)
	spoolDesc     = prometheus.NewDesc("pamctl_proxy_spool_bytes", "Audit events spooled by this proxy and not yet taken by the broker, in bytes.", nil, nil)
)

func (c *linkCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- linkReadyDesc
	ch <- linkRefDesc
	ch <- spoolDesc
}

func (c *linkCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	ready := 0.0
	if st.Refusal == "" {
		ready = 1
	}
	ch <- prometheus.MustNewConstMetric(linkReadyDesc, prometheus.GaugeValue, ready)
	for _, code := range linkRefusals {
		v := 0.0
		if code == st.Refusal {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(linkRefDesc, prometheus.GaugeValue, v, code)
	}
	ch <- prometheus.MustNewConstMetric(spoolDesc, prometheus.GaugeValue, float64(st.SpoolBytes))
}
