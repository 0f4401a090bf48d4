package cli

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/link"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/metrics"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/tracing"
	"github.com/pamctl/pamctl/proxy"
	"github.com/pamctl/pamctl/store"
)

// newTelemetry builds the metrics (metrics.addr set) and the tracer
// (tracing.otlp_endpoint set); either may stay nil.
func (a *App) newTelemetry(ctx context.Context) error {
	if a.cfg.Metrics.Addr != "" {
		o := metrics.Options{Models: metricModels(a.cfg), RecordKinds: store.RecordKinds()}
		if a.cfg.Role == RoleProxy {
			// The proxy role has no trail of its own: its events wait in
			// the spool until the broker takes them.
			o.Link = a.linkStatus
		} else {
			o.Sinks, o.Proxies = a.SinkStatus, a.proxyStatus
			o.QueueDepth = func() int {
				if a.auditLog == nil {
					return 0
				}
				return a.auditLog.QueueDepth()
			}
		}
		a.metrics = metrics.New(o)
	}
	if a.cfg.Tracing.Enabled() {
		t, err := tracing.New(ctx, a.cfg.Tracing, version, a.log)
		if err != nil {
			return withCode(ExitUsage, err)
		}
		a.tracer = t
	}
	return nil
}

// linkStatus is the proxy role's link to its broker, for the metrics.
func (a *App) linkStatus() metrics.LinkStatus {
	if a.link == nil {
		return metrics.LinkStatus{Refusal: "proxy_not_enrolled"}
	}
	code, _ := a.link.Refusal()
	return metrics.LinkStatus{Refusal: code, SpoolBytes: a.spool.Size()}
}

// proxyStatus lists the enrolled local proxies for the metrics.
func (a *App) proxyStatus() []metrics.ProxyStatus {
	if a.fleet == nil {
		return nil
	}
	es, err := a.fleet.List(context.Background())
	if err != nil {
		return nil
	}
	now := time.Now()
	out := make([]metrics.ProxyStatus, 0, len(es))
	for _, e := range es {
		st := "live"
		switch {
		case e.RevokedAt != nil:
			st = "revoked"
		case !e.ExpiresAt.IsZero() && !now.Before(e.ExpiresAt):
			st = "expired"
		}
		// /metrics is unauthenticated: a fingerprint, not the id.
		out = append(out, metrics.ProxyStatus{Label: link.Fingerprint(e.ID), State: st, LastContact: e.LastContact})
	}
	return out
}

// observer is what the proxy reports its calls to (nil: nothing).
func (a *App) observer() proxy.Observer {
	var m, t proxy.Observer
	if a.metrics != nil {
		m = a.metrics
	}
	if a.tracer != nil {
		t = a.tracer
	}
	return proxy.Observers(m, t)
}

// observeAppend is watchedAudit's hook for the metrics (nil without them).
func (a *App) observeAppend() func(*audit.Event, time.Duration, error) {
	if a.metrics == nil {
		return nil
	}
	return a.metrics.Appended
}

// observeBatch is the store's commit hook for the metrics.
func (a *App) observeBatch() func(int) {
	if a.metrics == nil {
		return nil
	}
	return a.metrics.Committed
}

// listenMetrics binds metrics.addr, TLS like the other listeners.
func (a *App) listenMetrics() error {
	if a.metrics == nil {
		return nil
	}
	var err error
	if a.metricsTLS, err = a.tlsFor("metrics", a.cfg.Metrics.Addr, a.cfg.Metrics.TLS, a.cfg.Metrics.InsecurePlaintext); err != nil {
		return err
	}
	if a.metricsLn, err = net.Listen("tcp", a.cfg.Metrics.Addr); err != nil {
		return fmt.Errorf("metrics: %w (is another pamctl running? change metrics.addr)", err)
	}
	a.metricsLn = withTLS(a.metricsLn, a.metricsTLS)
	return nil
}

// MetricsURL is the metrics listener's base URL ("" when off).
func (a *App) MetricsURL() string {
	if a.metricsLn == nil {
		return ""
	}
	return scheme(a.cfg.Metrics.TLS) + a.metricsLn.Addr().String()
}

// metricModels are the model names that get a label of their own: those
// policies name in model: scopes, without an upstream/ prefix (as the
// proxy sends them upstream). Patterns are skipped; their models count
// as "other".
func metricModels(cfg *Config) []string {
	var out []string
	for _, p := range cfg.Policies {
		for _, s := range p.Scopes {
			m, ok := strings.CutPrefix(s, "model:")
			if !ok {
				continue
			}
			if i := strings.IndexByte(m, '/'); i >= 0 {
				m = m[i+1:]
			}
			out = append(out, m)
		}
	}
	return out
}
