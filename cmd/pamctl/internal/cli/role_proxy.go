package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"sync"
	"time"

	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/link"
	"github.com/pamctl/pamctl/broker/tlsconf"
	"github.com/pamctl/pamctl/proxy"
	"github.com/pamctl/pamctl/store"
)

// newProxyApp assembles the proxy role: the data path only. It opens no
// master key and no vault; its data dir holds only the audit spool. The
// broker given by `server:` vouches for tokens (JWKS), revocations
// (stream), provider keys (sealed to a key made here in memory), rules,
// masking and upstreams, and chains the spooled audit events.
func newProxyApp(ctx context.Context, a *App, o AppOptions) (*App, error) {
	cfg := a.cfg
	if err := cfg.CheckPrivate(); err != nil {
		return nil, err
	}
	var err error
	if a.spool, err = store.OpenSpool(cfg.DataDir); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			a.Close()
		}
	}()
	// The same rule as the all-in-one proxy: TLS off loopback unless a
	// terminating load balancer is declared (proxy.insecure_plaintext).
	if a.proxyTLS, err = a.tlsFor("proxy", cfg.Proxy.Addr, cfg.Proxy.TLS, cfg.Proxy.InsecurePlaintext); err != nil {
		return nil, err
	}
	if a.proxyLn, err = net.Listen("tcp", cfg.Proxy.Addr); err != nil {
		return nil, fmt.Errorf("proxy: %w (is another pamctl running? use --proxy-addr)", err)
	}
	a.proxyLn = withTLS(a.proxyLn, a.proxyTLS)
	if err := a.newTelemetry(ctx); err != nil {
		return nil, err
	}
	if err := a.listenMetrics(); err != nil {
		return nil, err
	}
	// The broker is trusted by the system roots plus ca_file, as the CLI
	// trusts it, and sees client_cert_file when it asks for a client
	// certificate; no overall timeout: the revocation stream lasts.
	brokerHTTP := o.BrokerHTTP
	if brokerHTTP == nil {
		tr, err := cfg.brokerTransport()
		if err != nil {
			return nil, err
		}
		brokerHTTP = &http.Client{Transport: tr}
	}
	// Follow no redirect that would carry the proxy's credentials to
	// another scheme or host (an https broker redirecting to http://).
	guarded := *brokerHTTP
	guarded.CheckRedirect = api.CheckRedirect
	brokerHTTP = &guarded
	var running *Config // the broker's document in force
	var mu sync.Mutex
	a.link, err = link.NewClient(link.ClientOptions{
		BrokerURL: cfg.Server, HTTP: brokerHTTP, IDTokenFile: cfg.Proxy.Identity.IDTokenFile,
		Version: version, Address: a.ProxyURL() + "/v1", Staleness: cfg.Proxy.RevocationStaleness, SpoolMax: cfg.Proxy.SpoolMax,
		Spool: a.spool, Logger: a.log.With("component", "link"),
		OnConfig: func(pc link.ProxyConfig) error {
			mu.Lock()
			defer mu.Unlock()
			next, models, err := decodeProxyDocument(cfg, pc)
			if err != nil {
				return err
			}
			insp, _ := next.Inspection() // decodeProxyDocument compiled it
			if p := a.live.Load(); p != nil && reflect.DeepEqual(running.Upstreams, next.Upstreams) &&
				running.Proxy.Timeout == next.Proxy.Timeout && running.Proxy.HoldTimeout == next.Proxy.HoldTimeout {
				p.SetInspection(insp)
			} else {
				p, err := a.newRemoteProxy(next, insp)
				if err != nil {
					return err
				}
				if old := a.live.Swap(p); old != nil {
					_ = old.Close()
				}
			}
			running = next
			if a.metrics != nil {
				a.metrics.SetModels(models)
			}
			a.log.Info("proxy configuration from the broker applied", "version", pc.Version)
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	ok = true
	return a, nil
}

// newRemoteProxy builds the data path over the link.
func (a *App) newRemoteProxy(cfg *Config, insp proxy.Inspection) (*proxy.Proxy, error) {
	var ups []proxy.Upstream
	for _, u := range cfg.Upstreams {
		if u.Timeout == 0 {
			u.Timeout = cfg.Proxy.Timeout
		}
		ups = append(ups, u.proxyUpstream())
	}
	return proxy.New(proxy.Options{
		Verifier: a.link.Verifier(), Revoked: a.link, Keys: a.link, Upstreams: ups, Audit: observedSink{a.link, a.observeAppend()}, Logger: a.log,
		MaxBody: cfg.Proxy.MaxBody, MaxInflight: cfg.Proxy.MaxInflightBytes, BodyTimeout: cfg.Proxy.BodyTimeout,
		AllowedHosts: a.proxyHosts(), AllowIPHosts: true,
		Rules: insp.Rules, PromptMask: insp.PromptMask, ResponseMask: insp.ResponseMask,
		Holds: remoteHolder{a.link}, HoldTimeout: cfg.Proxy.HoldTimeout, SummaryBytes: cfg.Audit.SummaryBytes,
		Observer: a.observer(), ReviewURL: reviewURL(cfg),
	})
}

// observedSink is the spool with every append reported to the metrics
// (observe nil: nothing).
type observedSink struct {
	proxy.AuditSink
	observe func(*audit.Event, time.Duration, error)
}

func (s observedSink) Append(ctx context.Context, e *audit.Event) error {
	if s.observe == nil {
		return s.AuditSink.Append(ctx, e)
	}
	start := time.Now()
	err := s.AuditSink.Append(ctx, e)
	s.observe(e, time.Since(start), err)
	return err
}

// serveProxyRole serves the proxy listener (with /healthz and /readyz)
// and keeps the link to the broker up until ctx ends.
func (a *App) serveProxyRole(ctx context.Context) error {
	checks := a.health.readyz(a.stopping) // the TLS reload check, when the listener has TLS
	readyz := func(w http.ResponseWriter, r *http.Request) {
		if code, msg := a.link.Refusal(); code != "" {
			http.Error(w, code+": "+msg, http.StatusServiceUnavailable)
			return
		}
		checks(w, r)
	}
	// The probes behind the Host check a call's Host passes (DNS rebinding).
	probes, perr := a.proxyProbes(readyz)
	if perr != nil {
		return perr
	}
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", probes)
	mux.Handle("GET /readyz", probes)
	mux.Handle("/", a.link.Gate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.live.Load().ServeHTTP(w, r) // the gate passes only once a configuration is in force
	})))
	mk := func(h http.Handler) *http.Server {
		// `OPTIONS *` goes to h, behind its Host check (optionsStar).
		return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 5 * time.Minute, IdleTimeout: 2 * time.Minute,
			DisableGeneralOptionsHandler: true}
	}
	a.servers = []*http.Server{mk(optionsStar(probes, mux))}
	lns := []net.Listener{a.proxyLn}
	if a.metricsLn != nil {
		a.servers, lns = append(a.servers, mk(a.metricsHostCheck(withHealth(a.metrics.Handler(), readyz)))), append(lns, a.metricsLn)
	}
	lctx, stopLink := context.WithCancel(context.Background())
	// The certificate watches are in place before anything is served.
	for _, t := range []*tlsconf.Server{a.proxyTLS, a.metricsTLS} {
		if t != nil {
			t.Watch(lctx)
		}
	}
	errc := make(chan error, len(a.servers))
	for i, srv := range a.servers {
		go func() {
			if err := srv.Serve(lns[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	done := make(chan struct{})
	go func() { defer close(done); a.link.Run(lctx) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		a.log.Error("server failed", "err", err)
	}
	close(a.stopping)
	sctx, cancel := context.WithTimeout(context.Background(), gracePeriod)
	defer cancel()
	for _, srv := range a.servers {
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
	}
	stopLink()
	<-done
	if cerr := a.Close(); err == nil {
		err = cerr
	}
	return err
}
