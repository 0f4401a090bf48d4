// Package tracing turns proxied calls into OpenTelemetry spans: one span
// per call ("pamctl.proxy <endpoint>") with pamctl's stages as children
// (auth, rules, hold, upstream, mask, audit). A W3C traceparent from a
// client whose token verified is honoured (the call span is its child; a
// caller refused for its token gets a trace of its own) and the upstream
// gets one naming the upstream span. Spans carry no prompt or answer text and
// no subject or grant id: only the endpoint, model, status, decision,
// rule, error code and token counts.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/pamctl/pamctl/broker/safetext"
	"github.com/pamctl/pamctl/proxy"
)

// Config is the tracing: section.
type Config struct {
	// OTLPEndpoint is the collector's OTLP/HTTP base URL, e.g.
	// https://otel-collector:4318 (spans go to /v1/traces). Empty turns
	// tracing off.
	OTLPEndpoint string `mapstructure:"otlp_endpoint"`
	// Insecure allows an http:// endpoint (plaintext).
	Insecure bool `mapstructure:"insecure"`
	// SampleRatio is the share of calls traced when the client sent no
	// traceparent, or its token did not verify (0 to 1; pamctl's config
	// defaults it to 1). The sampling decision of a client whose token
	// verified is honoured.
	SampleRatio float64 `mapstructure:"sample_ratio"`
}

// Enabled reports whether tracing is configured.
func (c Config) Enabled() bool { return c.OTLPEndpoint != "" }

// Validate checks the section; field names in errors are the config keys.
func (c Config) Validate() error {
	var errs []error
	if c.SampleRatio < 0 || c.SampleRatio > 1 {
		errs = append(errs, fmt.Errorf("tracing.sample_ratio: %v must be between 0 and 1", c.SampleRatio))
	}
	if c.OTLPEndpoint == "" {
		return errors.Join(errs...)
	}
	// Credentials are judged first, and errors show the endpoint without
	// its user info, query and fragment: config check and serve print them.
	u, err := url.Parse(c.OTLPEndpoint)
	switch {
	case err != nil:
		errs = append(errs, errors.New("tracing.otlp_endpoint: is not a URL; set the collector's base URL, such as https://otel-collector:4318"))
	case u.User != nil:
		errs = append(errs, errors.New("tracing.otlp_endpoint: must not carry credentials (put a collector's token in OTEL_EXPORTER_OTLP_HEADERS)"))
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		// A token in the query would be sent, if at all, to a URL with
		// /v1/traces inside its query: refuse it, as credentials are.
		errs = append(errs, errors.New("tracing.otlp_endpoint: must not carry a query or fragment (credentials do not belong in the URL; the collector's base URL only, e.g. https://otel-collector:4318)"))
	case u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
		errs = append(errs, fmt.Errorf("tracing.otlp_endpoint: %q must be an http(s) URL such as https://otel-collector:4318", shownEndpoint(u)))
	case u.Scheme == "http" && !c.Insecure:
		errs = append(errs, fmt.Errorf("tracing.otlp_endpoint: %q is plaintext; use https, or set tracing.insecure: true", shownEndpoint(u)))
	}
	return errors.Join(errs...)
}

// shownEndpoint is u without user info, query and fragment.
func shownEndpoint(u *url.URL) string {
	return (&url.URL{Scheme: u.Scheme, Opaque: u.Opaque, Host: u.Host, Path: u.Path, RawPath: u.RawPath}).String()
}

// Tracer is a proxy.Observer that records spans.
type Tracer struct {
	tp     trace.TracerProvider
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	stop   func(context.Context) error
}

// New builds a Tracer that exports to c's collector over OTLP/HTTP. The
// exporter's errors, which the SDK hands to OpenTelemetry's global error
// handler (log.Print to stderr, unescaped, unless one is set), go to log
// (nil: slog's default) as one warning: its handlers escape what a
// collector wrote, once.
func New(ctx context.Context, c Config, version string, log *slog.Logger) (*Tracer, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing: spans could not be exported", "err", err.Error())
	}))
	u, _ := url.Parse(c.OTLPEndpoint)
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(strings.TrimSuffix(u.String(), "/") + "/v1/traces")}
	if c.Insecure {
		opts = append(opts, otlptracehttp.WithInsecure())
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	safe := safeExporter{SpanExporter: exp, secrets: headerSecrets()}
	tp := sdktrace.NewTracerProvider(append(providerOptions(c.SampleRatio, version), sdktrace.WithBatcher(safe))...)
	return NewWithProvider(tp, tp.Shutdown), nil
}

// maxErrorBytes bounds an export error: the exporter reads up to 4 MiB
// of a collector's answer into it (a larger one is an error that says so).
const maxErrorBytes = 300

// safeExporter hands on the exporter's errors (which the SDK passes to
// OpenTelemetry's global error handler, the log New names; Shutdown's
// goes to the CLI, which prints it) cut to maxErrorBytes and without the
// collector's credentials: the OTLP exporter quotes the collector's
// answer, which a collector (or a proxy in front of it) may fill with
// megabytes or an echo of the request's headers. Line breaks, escape
// sequences and bidi controls stay as they are, for the log's handlers
// and the CLI to escape where they are read, once: escaped here as well,
// a U+202E would read \\u202e, as if the collector had typed \u202e.
type safeExporter struct {
	sdktrace.SpanExporter
	secrets []string
}

func (e safeExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	return e.clean(e.SpanExporter.ExportSpans(ctx, spans))
}

func (e safeExporter) Shutdown(ctx context.Context) error {
	return e.clean(e.SpanExporter.Shutdown(ctx))
}

func (e safeExporter) clean(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	msg = safetext.Cut(safetext.Redact(msg, e.secrets), maxErrorBytes)
	return fmt.Errorf("tracing: %s (check tracing.otlp_endpoint and the collector's log)", msg)
}

// headerSecrets are the values of the headers the exporter sends from
// OTEL_EXPORTER_OTLP_HEADERS and OTEL_EXPORTER_OTLP_TRACES_HEADERS
// ("name=value,…", values percent-encoded), whole and word by word
// ("Bearer <token>"), for safetext.Redact.
func headerSecrets() []string {
	var out []string
	for _, env := range []string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"} {
		for _, kv := range strings.Split(os.Getenv(env), ",") {
			_, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			vals := []string{strings.TrimSpace(v)}
			if dec, err := url.PathUnescape(vals[0]); err == nil {
				vals = append(vals, dec)
			}
			for _, v := range vals {
				out = append(out, v)
				out = append(out, strings.Fields(v)...)
			}
		}
	}
	return out
}

// maxAttributeBytes bounds every span attribute's value. pamctl's own are
// short (the model's name is at most 256 bytes, the proxy refuses longer
// ones); the bound keeps a span that a client's input reaches from holding
// megabytes while it waits in the exporter's queue.
const maxAttributeBytes = 1024

// providerOptions are the tracer provider's options but its exporter.
func providerOptions(ratio float64, version string) []sdktrace.TracerProviderOption {
	limits := sdktrace.NewSpanLimits()
	limits.AttributeValueLengthLimit = maxAttributeBytes
	res := resource.NewSchemaless(semconv.ServiceName("pamctl"), semconv.ServiceVersion(version))
	return []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithRawSpanLimits(limits),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)))}
}

// NewWithProvider builds a Tracer on tp (tests use an in-memory
// exporter); stop, if not nil, is called by Shutdown.
func NewWithProvider(tp trace.TracerProvider, stop func(context.Context) error) *Tracer {
	return &Tracer{tp: tp, tracer: tp.Tracer("github.com/pamctl/pamctl/proxy"), prop: propagation.TraceContext{}, stop: stop}
}

// Shutdown flushes the spans still buffered.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t.stop == nil {
		return nil
	}
	return t.stop(ctx)
}

// callSpans is one call's spans, kept in the Observer's context. No span
// exists until the caller is known to hold a valid access token (a stage
// after auth begins, or the call ends past auth): only then may it join
// the trace its traceparent names, and its sampling decision; a caller
// refused without one gets a trace of pamctl's own, sampled at
// sample_ratio. local and remote are the contexts the call span starts
// from (without and with the caller's traceparent), begin the arrival,
// and pending the times of the stages that ran before the call span
// (auth, and the audit of a refusal), replayed into their spans.
type callSpans struct {
	mu            sync.Mutex
	root          trace.Span
	stages        [proxy.NumStages]trace.Span
	local, remote context.Context
	begin         time.Time
	pending       [proxy.NumStages]struct{ begin, end time.Time }
}

// remoteParent is the client's span context without its tracestate: the
// call span would inherit it and Forward inject it upstream, a header's
// worth of the agent's text past the proxy's header allowlist (up to 32
// members of 256 bytes). The trace id, parent span and sampling decision
// are what joining the client's trace needs.
func remoteParent(ctx, extracted context.Context) context.Context {
	sc := trace.SpanContextFromContext(extracted)
	if !sc.IsValid() || sc.TraceState().Len() == 0 {
		return extracted
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc.WithTraceState(trace.TraceState{}))
}

// rootLocked starts the call span, once: the caller's traceparent is its
// parent only when authenticated. The stages that ran before it get
// their spans with the times they had.
func (t *Tracer) rootLocked(s *callSpans, authenticated bool) {
	if s.root != nil {
		return
	}
	parent := s.local
	if authenticated {
		parent = s.remote
	}
	_, s.root = t.tracer.Start(parent, "pamctl.proxy", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(s.begin))
	for i, p := range s.pending {
		if p.begin.IsZero() {
			continue
		}
		_, sp := t.tracer.Start(trace.ContextWithSpan(s.local, s.root), "pamctl."+proxy.Stage(i).String(),
			trace.WithSpanKind(trace.SpanKindInternal), trace.WithTimestamp(p.begin))
		if p.end.IsZero() {
			s.stages[i] = sp
			continue
		}
		sp.End(trace.WithTimestamp(p.end))
	}
}

type spansKey struct{}

func spansOf(ctx context.Context) *callSpans {
	s, _ := ctx.Value(spansKey{}).(*callSpans)
	return s
}

// CallBegin implements proxy.Observer: it notes the arrival and the
// client's traceparent; the call span starts once the caller is known to
// hold a valid token (callSpans), as the traceparent's child.
func (t *Tracer) CallBegin(ctx context.Context, h http.Header) context.Context {
	s := &callSpans{local: ctx, remote: remoteParent(ctx, t.prop.Extract(ctx, propagation.HeaderCarrier(h))), begin: time.Now()}
	return context.WithValue(ctx, spansKey{}, s)
}

// StageBegin implements proxy.Observer.
func (t *Tracer) StageBegin(ctx context.Context, st proxy.Stage) {
	s := spansOf(ctx)
	if s == nil || st >= proxy.NumStages {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.root == nil {
		if st == proxy.StageAuth || st == proxy.StageAudit {
			// Auth runs for every caller, and refusals are audited:
			// neither says the token verified. CallEnd decides.
			if s.pending[st].begin.IsZero() {
				s.pending[st].begin = time.Now()
			}
			return
		}
		// Rules, hold, upstream and mask run for a caller whose token
		// verified.
		t.rootLocked(s, true)
	}
	if st == proxy.StageMask || st == proxy.StageAudit {
		s.endLocked(proxy.StageUpstream, time.Now())
	}
	if s.stages[st] != nil {
		return
	}
	kind := trace.SpanKindInternal
	if st == proxy.StageUpstream {
		kind = trace.SpanKindClient
	}
	_, sp := t.tracer.Start(trace.ContextWithSpan(ctx, s.root), "pamctl."+st.String(), trace.WithSpanKind(kind))
	s.stages[st] = sp
}

func (s *callSpans) endLocked(st proxy.Stage, at time.Time) {
	if sp := s.stages[st]; sp != nil {
		sp.End(trace.WithTimestamp(at))
		s.stages[st] = nil
	}
}

// StageEnd implements proxy.Observer.
func (t *Tracer) StageEnd(ctx context.Context, st proxy.Stage) {
	s := spansOf(ctx)
	if s == nil || st >= proxy.NumStages {
		return
	}
	s.mu.Lock()
	if p := &s.pending[st]; s.root == nil && !p.begin.IsZero() && p.end.IsZero() {
		p.end = time.Now()
	}
	s.endLocked(st, time.Now())
	s.mu.Unlock()
}

// Forward implements proxy.Observer: the upstream gets a traceparent
// naming the upstream span (or the call span if that was not begun).
func (t *Tracer) Forward(ctx context.Context, h http.Header) {
	s := spansOf(ctx)
	if s == nil {
		return
	}
	s.mu.Lock()
	t.rootLocked(s, true) // forwarded: the token verified
	sp := s.stages[proxy.StageUpstream]
	if sp == nil {
		sp = s.root
	}
	s.mu.Unlock()
	h.Del("Traceparent")
	h.Del("Tracestate")
	t.prop.Inject(trace.ContextWithSpan(ctx, sp), propagation.HeaderCarrier(h))
}

// FirstByte implements proxy.Observer.
func (t *Tracer) FirstByte(ctx context.Context) {
	s := spansOf(ctx)
	if s == nil {
		return
	}
	s.mu.Lock()
	if sp := s.stages[proxy.StageUpstream]; sp != nil {
		sp.AddEvent("response headers")
	}
	s.mu.Unlock()
}

// CallEnd implements proxy.Observer: the attributes, then every span
// still open ends.
func (t *Tracer) CallEnd(ctx context.Context, st *proxy.CallStats) {
	s := spansOf(ctx)
	if s == nil {
		return
	}
	now := time.Now()
	s.mu.Lock()
	// A call refused for its token (401, 421), or before its token was
	// checked, never joins the caller's trace.
	t.rootLocked(s, !s.pending[proxy.StageAuth].end.IsZero() && st.Status != http.StatusUnauthorized && st.Status != http.StatusMisdirectedRequest)
	for i := range s.stages {
		s.endLocked(proxy.Stage(i), now)
	}
	root := s.root
	s.mu.Unlock()
	if !root.IsRecording() {
		root.End()
		return
	}
	root.SetName("pamctl.proxy " + st.Endpoint)
	attrs := []attribute.KeyValue{
		attribute.String("pamctl.endpoint", st.Endpoint),
		semconv.HTTPResponseStatusCode(st.Status),
		attribute.Bool("pamctl.stream", st.Stream),
	}
	if st.Upstream != "" {
		attrs = append(attrs, attribute.String("pamctl.upstream", st.Upstream))
	}
	if st.Model != "" {
		attrs = append(attrs, attribute.String("gen_ai.request.model", st.Model))
	}
	if st.Decision != "" {
		attrs = append(attrs, attribute.String("pamctl.decision", st.Decision))
	}
	if st.Rule != "" {
		attrs = append(attrs, attribute.String("pamctl.rule", st.Rule))
	}
	if st.HasUsage {
		attrs = append(attrs, attribute.Int64("gen_ai.usage.input_tokens", st.TokensIn), attribute.Int64("gen_ai.usage.output_tokens", st.TokensOut))
	}
	n := 0
	for _, v := range st.MaskedIn {
		n += v
	}
	for _, v := range st.MaskedOut {
		n += v
	}
	if n > 0 {
		attrs = append(attrs, attribute.Int("pamctl.masked", n))
	}
	if st.Code != "" {
		attrs = append(attrs, attribute.String("pamctl.error_code", st.Code))
	}
	root.SetAttributes(attrs...)
	if st.Status >= 500 || st.AuditFailed {
		root.SetStatus(codes.Error, st.Code)
	}
	root.End(trace.WithTimestamp(now))
}

// TokenVerified implements proxy.Observer.
func (t *Tracer) TokenVerified(bool, bool) {}

var _ proxy.Observer = (*Tracer)(nil)
