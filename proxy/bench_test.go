package proxy

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/proxy/mask"
)

// countSink is an audit sink that only counts, so the benchmark measures
// the proxy rather than a store.
type countSink struct{ n atomic.Int64 }

func (s *countSink) Append(_ context.Context, e *audit.Event) error {
	if err := e.Normalize(time.Now()); err != nil {
		return err
	}
	s.n.Add(1)
	return nil
}

// cannedTransport answers every request in memory, as the upstream would,
// so a benchmark over it measures only the proxies' own work.
type cannedTransport struct{ json, stream, responses, responsesJSON []byte }

func (t cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	body, _ := io.ReadAll(r.Body)
	_ = r.Body.Close()
	res := &http.Response{StatusCode: 200, ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}, Request: r}
	if strings.Contains(string(body), `"stream":true`) {
		res.Header.Set("Content-Type", "text/event-stream")
		s := t.stream
		if strings.HasSuffix(r.URL.Path, "/responses") {
			s = t.responses
		}
		res.Body, res.ContentLength = io.NopCloser(bytes.NewReader(s)), -1
		return res, nil
	}
	res.Header.Set("Content-Type", "application/json")
	j := t.json
	if strings.HasSuffix(r.URL.Path, "/responses") {
		j = t.responsesJSON
	}
	res.Body, res.ContentLength = io.NopCloser(bytes.NewReader(j)), int64(len(j))
	return res, nil
}

const benchAnswer = `{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o",` +
	`"choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, how can I help?"},"finish_reason":"stop"}],` +
	`"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}`

// BenchmarkProxyOverhead compares pamctl's proxy with a bare
// httputil.ReverseProxy that only swaps Authorization, in the same run, for
// a chat completion and a streamed one: over loopback to an in-process
// httptest upstream ("net"), and over an in-memory transport ("mem") that
// leaves only the proxies' own work. "pamctl-masked" adds response masking
// with every detector on, the shipped default. docs/performance.md records
// the results.
func BenchmarkProxyOverhead(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		switch {
		case strings.Contains(string(body), `"stream":true`) && strings.HasSuffix(r.URL.Path, "/responses"):
			writeBenchResponsesStream(w)
		case strings.Contains(string(body), `"stream":true`):
			writeChatStream(w, "gpt-4o", true, nil)
		case strings.HasSuffix(r.URL.Path, "/responses"):
			writeJSON(w, responseJSON("gpt-4o", "completed"))
		default:
			writeJSON(w, benchAnswer)
		}
	}))
	defer up.Close()
	rec := httptest.NewRecorder()
	writeChatStream(rec, "gpt-4o", true, nil)
	rrec := httptest.NewRecorder()
	writeBenchResponsesStream(rrec)
	canned := cannedTransport{json: []byte(benchAnswer), stream: rec.Body.Bytes(), responses: rrec.Body.Bytes(), responsesJSON: []byte(responseJSON("gpt-4o", "completed"))}

	netTransport := http.DefaultTransport.(*http.Transport).Clone()
	netTransport.MaxIdleConnsPerHost = 64
	for _, tr := range []struct {
		name string
		rt   http.RoundTripper
	}{{"net", netTransport}, {"mem", canned}} {
		b.Run(tr.name, func(b *testing.B) { benchProxies(b, up.URL+"/v1", tr.rt) })
	}
}

// benchTargets returns pamctl's proxy with every response detector masking
// (the shipped default), a bare ReverseProxy that only swaps the key, both
// to upstreamURL over rt, and a token for pamctl.
func benchTargets(b *testing.B, upstreamURL string, rt http.RoundTripper) (masked, bare http.Handler, tok string) {
	ps, bare, tok := benchProxySet(b, upstreamURL, rt)
	return ps[1], bare, tok
}

func benchProxies(b *testing.B, upstreamURL string, rt http.RoundTripper) {
	ps, bare, tok := benchProxySet(b, upstreamURL, rt)
	p, masked, observed := ps[0], ps[1], ps[2]
	for _, kind := range []string{"chat", "stream", "responses", "responses-stream"} {
		benchKind(b, kind, bare, p, masked, observed, tok)
	}
}

// writeBenchResponsesStream writes a Responses stream as the API sends one
// for a short answer: created, the item and part opened, 20 text deltas,
// the part, item and response done.
func writeBenchResponsesStream(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	seq := 0
	ev := func(typ, data string) {
		sseWrite(w, typ, `{"type":"`+typ+`","sequence_number":`+strconv.Itoa(seq)+`,`+data+`}`)
		seq++
	}
	ev("response.created", `"response":`+responseJSON("gpt-4o", "in_progress"))
	ev("response.output_item.added", `"output_index":0,"item":{"id":"msg_1","type":"message","status":"in_progress","role":"assistant","content":[]}`)
	ev("response.content_part.added", `"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}`)
	for i := 0; i < 20; i++ {
		ev("response.output_text.delta", `"item_id":"msg_1","output_index":0,"content_index":0,"delta":" word`+strconv.Itoa(i)+`","logprobs":[]`)
	}
	ev("response.output_text.done", `"item_id":"msg_1","output_index":0,"content_index":0,"text":"words","logprobs":[]`)
	ev("response.content_part.done", `"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":"words","annotations":[]}`)
	ev("response.output_item.done", `"output_index":0,"item":{"id":"msg_1","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","text":"words","annotations":[]}]}`)
	ev("response.completed", `"response":`+responseJSON("gpt-4o", "completed"))
}

// benchProxySet returns pamctl's proxy plain, masking and observed, a bare
// ReverseProxy, and a token.
func benchProxySet(b *testing.B, upstreamURL string, rt http.RoundTripper) ([3]http.Handler, http.Handler, string) {
	target, _ := url.Parse(upstreamURL)
	bare := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.URL.Path = target.Path + strings.TrimPrefix(pr.In.URL.Path, "/v1")
			pr.Out.Header.Set("Authorization", "Bearer "+vaultedKey)
		},
		Transport:     rt,
		FlushInterval: -1,
	}
	c := &clock{t: time.Now()}
	kr, minter := newKeyring(b, c)
	opts := Options{
		Verifier:  &token.Verifier{Keys: kr, Audience: token.AudienceProxy, Use: token.UseAccess, Now: c.Now},
		Revoked:   &revocations{},
		Keys:      keySource{"openai": vaultedKey},
		Upstreams: []Upstream{{Name: "openai", URL: upstreamURL, Transport: rt}},
		Audit:     &countSink{},
		Logger:    slog.New(slog.DiscardHandler),
		Now:       c.Now,
	}
	p, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	// The shipped default: every response detector masks.
	if opts.ResponseMask, err = mask.New(mask.Config{Default: mask.ActionMask}); err != nil {
		b.Fatal(err)
	}
	masked, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	// The shipped default with an Observer: the hooks' own cost.
	opts.Observer = &stampObserver{}
	observed, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	tok, err := minter.Mint(token.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: "bench", Audience: jwt.ClaimStrings{token.AudienceProxy}, ExpiresAt: jwt.NewNumericDate(c.Now().Add(time.Hour))},
		Use:              token.UseAccess, Scope: "model:gpt-4o", Req: "req_bench", Limits: &token.Limits{RPM: 1 << 30, Tokens: 1 << 60},
	})
	if err != nil {
		b.Fatal(err)
	}
	return [3]http.Handler{p, masked, observed}, bare, tok
}

// benchKind runs one kind of call (chat, stream) through each proxy.
func benchKind(b *testing.B, kind string, bare, p, masked, observed http.Handler, tok string) {
	bodies := map[string]string{
		"chat":             `{"model":"gpt-4o","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the benchmark."}]}`,
		"stream":           `{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello to the benchmark."}]}`,
		"responses":        `{"model":"gpt-4o","instructions":"You are terse.","input":"Say hello to the benchmark."}`,
		"responses-stream": `{"model":"gpt-4o","stream":true,"input":"Say hello to the benchmark."}`,
	}
	path := "/v1/chat/completions"
	if strings.HasPrefix(kind, "responses") {
		path = "/v1/responses"
	}
	{
		for _, impl := range []struct {
			name string
			h    http.Handler
		}{{"bare", bare}, {"pamctl", p}, {"pamctl-masked", masked}, {"pamctl-observed", observed}} {
			b.Run(kind+"/"+impl.name, func(b *testing.B) {
				body := bodies[kind]
				b.ReportAllocs()
				for b.Loop() {
					req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
					req.Header.Set("Authorization", "Bearer "+tok)
					req.Header.Set("Content-Type", "application/json")
					rec := httptest.NewRecorder()
					impl.h.ServeHTTP(rec, req)
					if rec.Code != 200 || rec.Body.Len() == 0 {
						b.Fatalf("%s: %d %s", impl.name, rec.Code, rec.Body)
					}
				}
			})
		}
	}
}

// stampObserver keeps per-call state in the context as a real Observer
// does (metrics, tracing) and reads the clock at every boundary, so the
// benchmark shows what the hooks cost beyond the observer's own work.
type stampObserver struct{ calls atomic.Int64 }

type stampKey struct{}

type stamps struct{ t [NumStages + 2]time.Time }

func (o *stampObserver) CallBegin(ctx context.Context, _ http.Header) context.Context {
	s := &stamps{}
	s.t[0] = time.Now()
	return context.WithValue(ctx, stampKey{}, s)
}

func (o *stampObserver) StageBegin(ctx context.Context, st Stage) {
	ctx.Value(stampKey{}).(*stamps).t[st+1] = time.Now()
}

func (o *stampObserver) StageEnd(ctx context.Context, st Stage) {
	ctx.Value(stampKey{}).(*stamps).t[st+1] = time.Now()
}

func (o *stampObserver) Forward(context.Context, http.Header) {}

func (o *stampObserver) FirstByte(ctx context.Context) {
	ctx.Value(stampKey{}).(*stamps).t[NumStages+1] = time.Now()
}

func (o *stampObserver) CallEnd(context.Context, *CallStats) { o.calls.Add(1) }

func (o *stampObserver) TokenVerified(bool, bool) {}

// BenchmarkOpenStreams measures what an open, idle stream holds: n streams
// are opened through each proxy and held after their first events (the
// upstream waits), then the heap and goroutine stacks in use are read after
// a GC. Client, proxy and upstream share the process, so "B/stream" counts
// all three; a proxy's own cost is its figure minus direct's (the client
// talking to the upstream) of the same run.
func BenchmarkOpenStreams(b *testing.B) {
	const n = 200
	var release chan struct{}
	var opened sync.WaitGroup
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		writeChatStream(w, "gpt-4o", true, func() bool {
			opened.Done()
			<-release
			return true
		})
	}))
	defer up.Close()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = n
	p, bare, tok := benchTargets(b, up.URL+"/v1", tr)
	for _, impl := range []struct {
		name string
		h    http.Handler
	}{{"direct", nil}, {"bare", bare}, {"pamctl-masked", p}} {
		b.Run(impl.name, func(b *testing.B) {
			base := up.URL // direct: client and upstream only
			if impl.h != nil {
				srv := httptest.NewServer(impl.h)
				defer srv.Close()
				base = srv.URL
			}
			cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n}}
			var perStream, goroutines float64
			for b.Loop() {
				release = make(chan struct{})
				opened.Add(n)
				var first, done sync.WaitGroup
				first.Add(n)
				done.Add(n)
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				g0 := runtime.NumGoroutine()
				for range n {
					go func() {
						defer done.Done()
						req, _ := http.NewRequest(http.MethodPost, base+"/v1/chat/completions", strings.NewReader(
							`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Say hello to the benchmark."}]}`))
						req.Header.Set("Authorization", "Bearer "+tok)
						req.Header.Set("Content-Type", "application/json")
						res, err := cl.Do(req)
						if err != nil {
							first.Done()
							b.Error(err)
							return
						}
						defer res.Body.Close()
						one := make([]byte, 1)
						_, err = io.ReadFull(res.Body, one)
						first.Done()
						if err != nil {
							b.Error(err)
							return
						}
						_, _ = io.Copy(io.Discard, res.Body)
					}()
				}
				opened.Wait()
				first.Wait()
				runtime.GC()
				var open runtime.MemStats
				runtime.ReadMemStats(&open)
				perStream += float64(int64(open.HeapInuse+open.StackInuse)-int64(before.HeapInuse+before.StackInuse)) / n
				goroutines += float64(runtime.NumGoroutine()-g0) / n
				close(release)
				done.Wait()
			}
			b.ReportMetric(perStream/float64(b.N), "B/stream")
			b.ReportMetric(goroutines/float64(b.N), "goroutines/stream")
		})
	}
}
