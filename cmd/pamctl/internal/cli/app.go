package cli

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/auditsink"
	"github.com/pamctl/pamctl/broker/link"
	"github.com/pamctl/pamctl/broker/notify"
	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/oidc/devissuer"
	"github.com/pamctl/pamctl/broker/policy"
	"github.com/pamctl/pamctl/broker/tlsconf"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/ui"
	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/metrics"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/tracing"
	"github.com/pamctl/pamctl/proxy"
	"github.com/pamctl/pamctl/proxy/devupstream"
	"github.com/pamctl/pamctl/proxy/rules"
	"github.com/pamctl/pamctl/proxy/scrub"
	"github.com/pamctl/pamctl/store"
	"github.com/pamctl/pamctl/store/etcdstore"
)

// DevIssuerPath is where the embedded development issuer is mounted on the broker.
const DevIssuerPath = "/dev/oidc"

// AppOptions tune NewApp.
type AppOptions struct {
	Dev    bool
	Logger *slog.Logger
	// Now is the broker's clock (tests inject one to expire sessions);
	// nil means time.Now.
	Now func() time.Time
	// ProbeEvery runs every /readyz probe this often (tests); 0: the
	// production intervals (probe*Every).
	ProbeEvery time.Duration
	// BrokerHTTP carries the proxy role's calls to the broker (TLS
	// settings go in its transport); nil: a default client.
	BrokerHTTP *http.Client
}

// App is one running pamctl server: the composition root that wires the
// store, vault, keyring, audit log, broker service and proxy together.
type App struct {
	cfg      *Config
	dev      bool
	log      *slog.Logger
	every    time.Duration // AppOptions.ProbeEvery
	db       *store.DB     // pamctl.db in data_dir (see openStore)
	state    stateStore    // the shared records: db, or etcd with store.backend etcd
	etcd     *etcdstore.DB
	vault    *vault.Vault
	keys     *token.Keyring
	audit    *watchedAudit // the log, its failures reported to health
	health   *health       // named checks behind /readyz
	counts   counterStore  // the proxy's limit counters (shared with etcd)
	broker   *broker.Service
	api      *api.Server
	proxy    *proxy.Proxy
	devIss   *devissuer.Issuer // dev mode only
	hooks    []*notify.Webhook // notify.webhook, notify.slack, notify.teams (docs/notifications.md)
	fleet    *link.Registry    // local proxies (roles all and broker)
	proxyCfg atomic.Pointer[link.ProxyConfig]

	// The proxy role (role_proxy.go).
	link  *link.Client
	spool *store.Spool
	live  atomic.Pointer[proxy.Proxy]

	// sinks ships the trail to audit.sinks and its heads to audit.anchor.
	sinks *auditsink.Manager

	// leader gates the cluster's background work (expiry sweeps,
	// retention) to one replica: an etcd election with store.backend etcd;
	// nil (bbolt, one process) always leads. The etcd audit log's
	// signed-head timer takes the same one (etcdstore.AuditOptions.Leader).
	leader   leader
	election *etcdstore.Election // the campaign behind leader (etcd)

	// metrics (metrics.addr) and tracer (tracing.otlp_endpoint) are nil
	// when off; auditLog is the store's log, for its queue depth.
	metrics *metrics.Metrics
	// forged counts and logs records the store refuses as forged.
	forged     *forgedRecords
	tracer     *tracing.Tracer
	auditLog   queuedLog
	metricsLn  net.Listener
	metricsTLS *tlsconf.Server

	brokerLn, proxyLn, adminLn net.Listener
	brokerTLS, proxyTLS        *tlsconf.Server // nil: plaintext on that listener
	mockLn                     net.Listener    // dev mock upstream
	servers                    []*http.Server
	stopping                   chan struct{}
	closeOnce                  sync.Once
}

// NewApp opens the data dir and builds every component. It fails fast (and
// clearly) when another process holds the data dir or the master key does
// not match it.
func NewApp(ctx context.Context, cfg *Config, o AppOptions) (*App, error) {
	a := &App{cfg: cfg, dev: o.Dev, log: o.Logger, every: o.ProbeEvery, stopping: make(chan struct{})}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.health = newHealth(a.log)
	warnings, filesErr := cfg.CheckNamedFiles()
	if filesErr != nil {
		return nil, withCode(ExitUsage, filesErr)
	}
	for _, w := range warnings {
		a.log.Warn(w)
	}
	if cfg.Role == RoleProxy {
		return newProxyApp(ctx, a, o)
	}
	a.health.registerAll(cfg.DataDir)
	if err := cfg.CheckPrivate(); err != nil {
		return nil, err
	}
	var err error
	ok := false
	defer func() {
		if !ok {
			a.Close()
		}
	}()
	if err := a.openStore(ctx); err != nil {
		return nil, err
	}
	var mk vault.MasterKey
	if cfg.MasterKeyFile == "" && o.Dev {
		mk, err = vault.GenerateMasterKey()
	} else {
		mk, err = vault.LoadMasterKey(os.Getenv(vault.EnvMasterKey), cfg.MasterKeyFile)
	}
	if err != nil {
		return nil, err
	}
	if a.vault, err = vault.Open(ctx, a.state, mk, nil); err != nil {
		if a.etcd != nil && errors.Is(err, vault.ErrWrongMasterKey) {
			return nil, fmt.Errorf("%w: with store.backend etcd every replica must use the same master key, and this one differs from the key the cluster's data (prefix %s) is sealed under; give this replica the others' key (PAMCTL_MASTER_KEY or master_key_file)", err, a.etcd.Prefix())
		}
		return nil, err
	}
	if a.keys, err = token.LoadKeyring(ctx, a.state, a.vault.Sealer(), maxTokenTTL, nil); err != nil {
		return nil, err
	}
	// Whether this start is the upgrade to sealed records, read before
	// useRecordKey marks them: only then may sink cursors without an
	// authenticator be ones an older pamctl wrote.
	legacyCursorsEnded := a.keys.RecordsSealed()
	a.forged = newForgedRecords(a.log)
	if err := useRecordKey(ctx, a.state.(recordStore), a.keys, a.vault, a.log, a.forged.observe); err != nil {
		return nil, err
	}
	syncMode, err := audit.ParseSyncMode(cfg.Audit.Sync)
	if err != nil {
		return nil, err
	}
	if err := a.newTelemetry(ctx); err != nil {
		return nil, err
	}
	if a.metrics != nil {
		a.forged.countWith(a.metrics.RecordForged)
	}
	lg, err := a.openAuditLog(ctx, syncMode)
	if err != nil {
		return nil, err
	}
	a.auditLog = lg
	a.audit = newWatchedAudit(lg, a.health)
	a.audit.observe = a.observeAppend()
	// Sinks read the trail on their own goroutines: appends never wait.
	// Their cursors are authenticated under a key of the master key, so a
	// writer of the data dir cannot move one past events.
	cursorKey, err := a.vault.DerivedKey(auditsink.CursorKeyPurpose)
	if err != nil {
		return nil, err
	}
	// On etcd only the elected replica delivers (a.leads); the others
	// stand by and show the shared cursor.
	if a.sinks, err = auditsink.Start(ctx, auditsink.Options{Source: lg, Cursors: a.state, CursorKey: cursorKey, LegacyCursorsEnded: legacyCursorsEnded,
		Sinks: cfg.Audit.Sinks, Anchor: cfg.Audit.Anchor, Logger: a.log, Leader: a.leads, OnCursor: a.recordCursor}); err != nil {
		return nil, err
	}
	if err := a.listen(); err != nil {
		return nil, err
	}
	brokerURL := a.issuerURL()
	if o.Dev {
		addDevIssuerAndPolicy(cfg, brokerURL)
	}
	var idTokens broker.IDTokenVerifier = noIssuers{}
	if len(cfg.Issuers) > 0 {
		// Issuers are verified with the system roots plus ca_file (the
		// dev issuer of serve --dev --tls is signed by the dev CA).
		hc, err := issuerClient(cfg, 15*time.Second)
		if err != nil {
			return nil, err
		}
		var now func() time.Time // time.Now
		if o.Dev {
			// The dev issuer mints on the server's clock (o.Now in
			// tests): verifying on another would find its tokens issued
			// in the future (oidc.ClockSkew).
			now = o.Now
		}
		if idTokens, err = oidc.NewVerifier(cfg.Issuers, hc, now); err != nil {
			return nil, err
		}
	} else {
		a.log.Warn("no OIDC issuers configured: nobody can log in until you add `issuers:` to the config (admin commands still work)")
	}
	a.hooks = a.notifyHooks(cfg)
	for _, w := range append(cfg.PolicyIssuerWarnings(), cfg.IssuerStepUpWarnings()...) {
		a.log.Warn(w)
	}
	notifier := notifierOf(a.hooks, uiPublicURL(cfg))
	a.broker, err = broker.New(ctx, broker.Config{
		Store: a.state, IDTokens: idTokens, Keys: a.keys, Issuer: brokerURL, Audit: a.audit,
		Policies: cfg.Policies, Rules: ruleApprovers(cfg.Rules), Logger: a.log, Notifier: notifier,
		SessionTTL: cfg.Sessions.MaxLifetime, IdleTimeout: idleTimeout(cfg.Sessions.IdleTimeout), Now: o.Now,
		RequestRetention: cfg.Requests.Retention, ReauthAfter: cfg.Approvals.ReauthAfter,
	})
	if err != nil {
		return nil, err
	}
	extra := map[string]http.Handler{}
	if o.Dev {
		opts := []devissuer.Option{devissuer.WithLoginForm()}
		if cfg.UI.Enabled {
			// The web page's callback, https under serve --dev --tls.
			opts = append(opts, devissuer.WithRedirectURIs(strings.TrimSuffix(cfg.UI.PublicURL, "/")+"/ui/callback"))
		}
		if o.Now != nil {
			// One clock for the server: auth_time and the step-up checks agree.
			opts = append(opts, devissuer.WithClock(o.Now))
		}
		iss, err := devissuer.New(brokerURL+DevIssuerPath, opts...)
		if err != nil {
			return nil, err
		}
		extra[DevIssuerPath+"/"] = iss
		a.devIss = iss
	}
	if cfg.UI.Enabled {
		h, err := a.webUI(idTokens, o.Now)
		if err != nil {
			return nil, err
		}
		extra["/ui/"] = h
	}
	a.api = &api.Server{Broker: a.broker, Keys: a.keys, Audit: a.audit, Logger: a.log, Info: a.info, Extra: extra, Stopping: a.stopping,
		AdminService: &broker.Admin{Vault: a.vault, Keys: a.keys, Audit: a.audit, Store: a.snapshotter(), Via: broker.ViaSocket},
		Hostnames:    append([]string{hostOf(cfg.Server)}, cfg.Broker.Hostnames...),
		Sinks:        a.SinkStatus}
	pc, err := proxyConfigOf(cfg)
	if err != nil {
		return nil, err
	}
	a.proxyCfg.Store(&pc)
	a.fleet = &link.Registry{Store: a.state, Grants: proxyGrants{a.broker}, Revoked: a.broker, Keys: linkKeys{vaultKeys{a.vault}}, Audit: a.audit,
		Config: func() link.ProxyConfig { return *a.proxyCfg.Load() }, Holds: brokerHolds(a.broker), TokenIssuer: brokerURL,
		SigningKeys: func() string { return a.keys.JWKS().Version() }}
	a.api.Proxies = a.fleet
	a.warnPersonEnrollments(ctx, cfg)
	if cfg.Role == RoleBroker {
		ok = true // no proxy listener: local proxies serve the data path
		return a, nil
	}
	ups, err := a.upstreams()
	if err != nil {
		return nil, err
	}
	var keys proxy.KeySource = vaultKeys{a.vault}
	if o.Dev {
		keys = devKeys{vaultKeys{a.vault}}
	}
	insp, err := cfg.Inspection()
	if err != nil {
		return nil, err
	}
	counts, err := a.openCounters()
	if err != nil {
		return nil, err
	}
	a.counts = counts
	a.proxy, err = proxy.New(proxy.Options{
		Verifier: &token.Verifier{Keys: a.keys, Issuer: brokerURL, Audience: token.AudienceProxy, Use: token.UseAccess},
		Revoked:  a.broker, Keys: keys, Upstreams: ups, Audit: a.audit, Logger: a.log, MaxBody: cfg.Proxy.MaxBody,
		MaxInflight: cfg.Proxy.MaxInflightBytes, BodyTimeout: cfg.Proxy.BodyTimeout, AllowedHosts: a.proxyHosts(), AllowIPHosts: true,
		Counters: a.counts,
		Rules:    insp.Rules, PromptMask: insp.PromptMask, ResponseMask: insp.ResponseMask,
		Holds: holder{a.broker}, HoldTimeout: cfg.Proxy.HoldTimeout, SummaryBytes: cfg.Audit.SummaryBytes, ReviewURL: reviewURL(cfg),
		Observer: a.observer(),
	})
	if err != nil {
		return nil, err
	}
	ok = true
	return a, nil
}

// webUI builds the web approval page (ui.enabled) over the broker, the
// audit log and the API's ID-token verifier, logging people in with the
// first interactive issuer.
func (a *App) webUI(idTokens broker.IDTokenVerifier, now func() time.Time) (http.Handler, error) {
	lv, ok := idTokens.(ui.LoginVerifier)
	var iss *oidc.IssuerConfig
	for i := range a.cfg.Issuers {
		if !a.cfg.Issuers[i].Workload && a.cfg.Issuers[i].ClientID != "" {
			iss = &a.cfg.Issuers[i]
			break
		}
	}
	if !ok || iss == nil {
		return nil, withCode(ExitUsage, errors.New("ui.enabled: the web UI logs people in with an interactive issuer: add one to issuers: (with client_id), or set ui.enabled: false"))
	}
	hc, err := issuerClient(a.cfg, 15*time.Second)
	if err != nil {
		return nil, err
	}
	// Logins in flight live sealed in the browser under a key every
	// replica derives from the shared master key: the IdP's callback may
	// reach any of them.
	sealer, err := a.vault.DerivedSealer("ui-login")
	if err != nil {
		return nil, err
	}
	if ui.PlainHTTP(a.cfg.UI.PublicURL) && !a.dev {
		a.log.Warn("ui.insecure_plaintext: the web approval page is on plain http; every other listener on this host is sent its session cookies (browsers do not keep cookies apart by port): use https unless nobody else runs anything here", "public_url", a.cfg.UI.PublicURL)
	}
	w, err := ui.New(ui.Config{Service: a.broker, Audit: a.audit, Verifier: lv, PublicURL: a.cfg.UI.PublicURL, InsecurePlaintext: a.cfg.UI.InsecurePlaintext || a.dev, HTTPClient: hc, LoginSealer: sealer,
		Issuer: ui.Issuer{Name: iss.Name, URL: iss.URL, ClientID: iss.ClientID, Scopes: iss.Scopes,
			SendAccessToken: iss.GroupsSource == oidc.GroupsFromUserinfo},
		Stopping: a.stopping, Logger: a.log, Now: now})
	if err != nil {
		return nil, withCode(ExitUsage, err)
	}
	return w.Handler(), nil
}

// reviewURL is the web page address of held calls without the id, for the
// proxy's refusals: from ui.public_url when the UI is on (role all), or
// when set at all on a proxy-role host (the central broker's page).
func reviewURL(cfg *Config) string {
	if cfg.UI.PublicURL == "" || (!cfg.UI.Enabled && cfg.Role != RoleProxy) {
		return ""
	}
	return strings.TrimSuffix(cfg.UI.PublicURL, "/") + broker.ItemPath
}

// uiPublicURL is ui.public_url when the web UI serves item pages here
// ("" when off): notifications link to them.
func uiPublicURL(cfg *Config) string {
	if !cfg.UI.Enabled {
		return ""
	}
	return cfg.UI.PublicURL
}

// uiURL is the web UI's address for /v1/info ("" when off).
func (a *App) uiURL() string {
	if !a.cfg.UI.Enabled || a.cfg.UI.PublicURL == "" {
		return ""
	}
	return strings.TrimSuffix(a.cfg.UI.PublicURL, "/") + "/ui/"
}

// idleTimeout maps sessions.idle_timeout (0: off) to broker.Config's
// IdleTimeout (0: default, negative: off).
func idleTimeout(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// hostOf is the host name of a URL ("" if it has none).
func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// proxyHosts is the Host names the proxy answers to besides IP addresses:
// proxy.hostnames and, when it listens on loopback or on every address
// (and always in dev mode), localhost, 127.0.0.1 and [::1] with its port.
// Any other name is refused, so a page whose hostname is rebound to the
// proxy's address cannot use it.
func (a *App) proxyHosts() []string {
	hosts := append([]string(nil), a.cfg.Proxy.Hostnames...)
	addr := a.cfg.Proxy.Addr
	if a.proxyLn != nil {
		addr = a.proxyLn.Addr().String()
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return hosts
	}
	if ip := net.ParseIP(host); a.dev || host == "" || host == "localhost" || (ip != nil && (ip.IsLoopback() || ip.IsUnspecified())) {
		for _, n := range []string{"localhost", "127.0.0.1", "::1"} {
			hosts = append(hosts, net.JoinHostPort(n, port))
		}
	}
	return hosts
}

// noIssuers refuses every login when the config trusts no issuer.
type noIssuers struct{}

func (noIssuers) Verify(context.Context, string, string) (oidc.Identity, error) {
	return oidc.Identity{}, oidc.ErrUnknownIssuer
}

// Trusts: no issuer, so no session or grant an issuer vouched for (say,
// the dev issuer of a data dir once served with --dev) stands.
func (noIssuers) Trusts(string, string) bool { return false }

var _ broker.IssuerTrust = noIssuers{}

func (a *App) info() api.Info {
	in := api.Info{Version: version, Dev: a.dev, ProxyURL: a.ProxyURL() + "/v1", UIURL: a.uiURL(), ReauthAfterSeconds: int64(a.broker.ReauthAfter() / time.Second)}
	if a.cfg.Role == RoleBroker {
		in.ProxyURL = "" // no proxy here: clients use their local one (proxy.addr)
	}
	for _, is := range a.cfg.Issuers {
		is = is.WithDefaults()
		in.Issuers = append(in.Issuers, api.IssuerInfo{Name: is.Name, URL: is.URL, ClientID: is.ClientID, Scopes: is.Scopes, Workload: is.Workload, Dev: a.dev && is.Name == DevIssuerName,
			RedirectPort: is.RedirectPort, ClientSecretFile: is.ClientSecretFile, GroupsSource: is.GroupsSource})
	}
	return in
}

// hasProviderKey reports whether the default upstream's key is vaulted.
func (a *App) hasProviderKey() bool {
	if len(a.cfg.Upstreams) == 0 {
		return false
	}
	_, err := a.vault.Get(context.Background(), a.cfg.Upstreams[0].Key)
	return err == nil
}

// Probe intervals: how stale a /readyz answer may be.
const (
	probeStoreEvery       = 30 * time.Second
	probeEtcdEvery        = 2 * time.Second // between the availability monitor's reads, a write
	probeIssuerEvery      = time.Minute
	probeIssuerTimeout    = 5 * time.Second
	probeProviderKeyEvery = 10 * time.Second
	probeSinkEvery        = 15 * time.Second
	// sinkLagBudget is how long an audit sink may go without a delivery
	// while events wait before /readyz lists it as degraded.
	sinkLagBudget = 5 * time.Minute
)

// probes are /readyz's background checks: the store takes writes (critical),
// each upstream's provider key is in the vault (critical: every call to it
// would fail, and during a rolling upgrade to a config naming a key not yet
// vaulted the new instance stays out of rotation), each issuer's discovery
// answers (degraded, not critical: an IdP outage hits every replica alike,
// and tokens already issued keep working, so taking the proxy out of
// rotation would only add an outage). The audit sinks engine adds its
// lag-budget check here, as one more probe.
func (a *App) probes() []probe {
	dir := a.cfg.DataDir
	ps := []probe{{
		name: checkStore, critical: true, every: probeStoreEvery,
		hint: "the data store cannot take writes (disk full, read-only mount, permissions): requests, approvals, vault changes and audit appends fail; free space in " + dir + " or fix the mount, and check the server log",
		run:  func(ctx context.Context) error { return a.state.Probe(ctx, time.Now()) },
	}}
	if a.etcd != nil {
		ps[0].every, ps[0].timeout = probeEtcdEvery, a.etcd.OpTimeout()
		ps[0].hint = etcdStoreHint
	}
	// The issuers' own client trust: system roots plus ca_file (the dev
	// issuer of serve --dev --tls is signed by the dev CA, its ca_file).
	client, clientErr := issuerClient(a.cfg, probeIssuerTimeout)
	for _, is := range a.cfg.Issuers {
		issURL := is.URL
		var warned atomic.Bool // the discovery's warnings, once per run
		ps = append(ps, probe{
			name: checkIssuer + is.Name, every: probeIssuerEvery, timeout: probeIssuerTimeout,
			hint: fmt.Sprintf("logins through issuer %s fail (tokens already issued keep working); check that %s/.well-known/openid-configuration answers from this host (DNS, egress firewall, HTTPS proxy, CA trust)", is.Name, strings.TrimRight(issURL, "/")),
			run: func(ctx context.Context) error {
				if clientErr != nil {
					return clientErr
				}
				d, err := oidc.CheckDiscovery(ctx, client, issURL)
				if ws := is.DiscoveryWarnings(d); err == nil && len(ws) > 0 && warned.CompareAndSwap(false, true) {
					for _, w := range ws {
						a.log.Warn(w)
					}
				}
				return err
			},
		})
	}
	// serve --dev answers from the built-in mock while an upstream's
	// provider key is not vaulted (devKeys): that is ready, and so is its
	// missing extra key then. A key too short to send, or a missing extra
	// key beside a vaulted provider key, fails every call as without
	// --dev.
	none, mockNote := "none, or shorter than 8 bytes", ""
	if a.dev {
		none, mockNote = "shorter than 8 bytes", " (with no provider key vaulted, serve --dev answers from its built-in mock)"
	}
	for _, u := range a.cfg.Upstreams {
		key := u.Key
		ps = append(ps, probe{
			name: checkProviderKey + u.Name, critical: true, every: probeProviderKeyEvery,
			hint: fmt.Sprintf("every call to upstream %s fails: the vault has no usable provider key %q (%s, too short to keep out of answers); store it with: printf %%s \"$KEY\" | pamctl vault set %s%s", u.Name, key, none, key, mockNote),
			run: func(ctx context.Context) error {
				err := usableKey(ctx, a.vault, key)
				if a.dev && errors.Is(err, vault.ErrNotFound) {
					return nil // the mock answers
				}
				return err
			},
		})
		if extra := u.ExtraKey.Key; extra != "" {
			ps = append(ps, probe{
				name: checkProviderKey + u.Name + "/extra_key", critical: true, every: probeProviderKeyEvery,
				hint: fmt.Sprintf("every call to upstream %s fails: the vault has no usable extra key %q (extra_key: none, or shorter than 8 bytes); store it with: printf %%s \"$KEY\" | pamctl vault set %s%s", u.Name, extra, extra, mockNote),
				run: func(ctx context.Context) error {
					err := usableKey(ctx, a.vault, extra)
					if a.dev && errors.Is(err, vault.ErrNotFound) {
						if _, kerr := a.vault.Get(ctx, key); errors.Is(kerr, vault.ErrNotFound) {
							return nil // the mock answers, without an extra key
						}
					}
					return err
				},
			})
		}
	}
	for _, st := range a.SinkStatus() {
		name := st.Name
		ps = append(ps, probe{
			name: checkSink + name, every: probeSinkEvery,
			hint: fmt.Sprintf("audit sink %s has fallen behind (nothing delivered for %s while events wait), or its stored cursor was not trusted at start (delivery restarted at the first retained event; until the next start), or its last %d events went as stand-ins (the collector takes no event content); undelivered events wait in the store until audit.retention prunes them: check `pamctl audit sinks`, the server log and the collector", name, sinkLagBudget, auditsink.StandInAlarm),
			run: func(context.Context) error {
				for _, st := range a.SinkStatus() {
					if st.Name == name {
						return st.Problem(time.Now(), sinkLagBudget)
					}
				}
				return nil
			},
		})
	}
	if a.every > 0 {
		for i := range ps {
			ps[i].every = a.every
		}
	}
	return ps
}

// holder lets the proxy hold calls for an approver through the broker.
type holder struct{ b *broker.Service }

func (h holder) Hold(ctx context.Context, req proxy.HoldRequest) (proxy.HoldDecision, error) {
	who := broker.Identity{Subject: req.Claims.Subject, Email: req.Claims.Email, Groups: req.Claims.Groups, Issuer: req.Claims.IdP, Kind: req.Claims.Kind}
	if req.Claims.Act != nil {
		who.Act = req.Claims.Act.Sub
	}
	var also []policy.Subjects
	var alsoRules []string
	for _, a := range req.Approvals {
		if a.Rule != req.Rule {
			also = append(also, policy.Subjects{Users: a.Approvers.Users, Groups: a.Approvers.Groups})
			alsoRules = append(alsoRules, a.Rule)
		}
	}
	var matches []broker.HeldMatch
	for _, m := range req.Matches {
		matches = append(matches, broker.HeldMatch{Where: m.Where, Text: m.Text})
	}
	r, err := h.b.HoldPrompt(ctx, broker.Hold{
		Caller: who, GrantID: req.GrantID, TokenID: req.Claims.ID, Rule: req.Rule, AlsoApprovedBy: also, AlsoRules: alsoRules,
		Approvers: policy.Subjects{Users: req.Approvers.Users, Groups: req.Approvers.Groups},
		Model:     req.Model, Method: req.Method, Endpoint: req.Endpoint, Excerpt: req.Excerpt, MatchSummary: req.MatchSummary, SHA256: req.PromptSHA256, CallSHA256: req.CallSHA256,
		Tool: req.Tool, Arguments: req.Arguments, Matches: matches,
	})
	if err != nil {
		return proxy.HoldDecision{}, err
	}
	d := proxy.HoldDecision{Approved: r.State == broker.StateApproved, ID: r.ID}
	if n := len(r.Reviews); r.State == broker.StateDenied && n > 0 {
		last := r.Reviews[n-1]
		d.Reason = "denied by " + PartyName(last.Reviewer)
		if last.Reason != "" {
			d.Reason += ": " + last.Reason
		}
	} else if r.State == broker.StateExpired && r.EndReason != "" {
		// Its grant ended while it waited (broker.HoldPrompt), or had ended
		// before (no ID: refused at once, never held, so not "not released").
		d.Reason = r.EndReason + "; ask for a new grant (pamctl request) and send the call again"
		if r.ID != "" {
			d.Reason = "not released: " + d.Reason
		}
	}
	return d, nil
}

// ruleApprovers tells the broker who may release calls held by each
// require_approval rule of the config in force.
func ruleApprovers(rs []rules.Rule) broker.RuleApproverMap {
	m := broker.RuleApproverMap{}
	for _, r := range rs {
		if r.Action == rules.RequireApproval {
			m[r.Name] = policy.Subjects{Users: r.Approvers.Users, Groups: r.Approvers.Groups}
		}
	}
	return m
}

// vaultKeys serves provider keys from the vault to the proxy.
type vaultKeys struct{ v *vault.Vault }

func (k vaultKeys) ProviderKey(ctx context.Context, entry string) (string, error) {
	s, err := k.v.Get(ctx, entry)
	if errors.Is(err, vault.ErrNotFound) {
		return "", fmt.Errorf("no provider key %q in the vault: an admin must run `pamctl vault set %s`", entry, entry)
	}
	if err != nil {
		return "", fmt.Errorf("%w: %w", proxy.ErrProviderKeyUnavailable, err)
	}
	return s.Reveal(), nil
}

// ProviderKeyValues lists every vaulted key's value, so the proxy scrubs
// all of them (not only the one a call uses) from what it relays and
// records.
func (k vaultKeys) ProviderKeyValues(ctx context.Context) ([]string, error) {
	entries, err := k.v.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		s, err := k.v.Get(ctx, e.Name)
		if errors.Is(err, vault.ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s.Reveal())
	}
	return out, nil
}

var _ proxy.KeyLister = vaultKeys{}

// devMockKey is what the dev proxy sends the built-in mock upstream.
const devMockKey = "pamctl-dev-mock"

// devKeys falls back to the mock's key while no provider key is vaulted;
// devRoute then sends those calls to the mock.
type devKeys struct{ vaultKeys }

func (k devKeys) ProviderKey(ctx context.Context, entry string) (string, error) {
	s, err := k.v.Get(ctx, entry)
	if errors.Is(err, vault.ErrNotFound) {
		return devMockKey, nil
	}
	if err != nil {
		return "", fmt.Errorf("%w: %w", proxy.ErrProviderKeyUnavailable, err)
	}
	return s.Reveal(), nil
}

// devRoute sends calls that carry the mock key to the built-in mock
// upstream, and everything else to the real upstream.
type devRoute struct {
	real        http.RoundTripper
	mock        *url.URL
	keyHeader   string // the upstream's key_header ("": Authorization)
	extraHeader string // the header of the upstream's extra_key ("": none)
}

func (d devRoute) RoundTrip(r *http.Request) (*http.Response, error) {
	mockKey := r.Header.Get("Authorization") == "Bearer "+devMockKey
	if d.keyHeader != "" && !strings.EqualFold(d.keyHeader, "Authorization") && r.Header.Get(d.keyHeader) == devMockKey {
		// The upstream takes its key in another header (key_header); the
		// mock wants it as Authorization.
		mockKey = true
		r = r.Clone(r.Context())
		r.Header.Del(d.keyHeader)
		r.Header.Set("Authorization", "Bearer "+devMockKey)
	}
	if mockKey {
		r = r.Clone(r.Context())
		r.URL.Scheme, r.URL.Host, r.Host = d.mock.Scheme, d.mock.Host, d.mock.Host
	} else if d.extraHeader != "" && r.Header.Get(d.extraHeader) == devMockKey {
		// A vaulted provider key with its extra key not vaulted: devKeys
		// gave the mock's key for it, which a real upstream must not get.
		// It goes without one, and answers 401 (upstream_auth_failed,
		// naming the extra key's vault entry).
		r = r.Clone(r.Context())
		r.Header.Del(d.extraHeader)
	}
	return d.real.RoundTrip(r)
}

func (a *App) upstreams() ([]proxy.Upstream, error) {
	var mock *url.URL
	if a.dev {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("dev mock upstream: %w", err)
		}
		a.mockLn = ln
		mock = &url.URL{Scheme: "http", Host: ln.Addr().String()}
	}
	var out []proxy.Upstream
	for _, u := range a.cfg.Upstreams {
		if u.Timeout == 0 {
			u.Timeout = a.cfg.Proxy.Timeout // proxy.timeout is every upstream's default
		}
		up := u.proxyUpstream()
		if mock != nil {
			tr := http.DefaultTransport.(*http.Transport).Clone()
			tr.MaxIdleConnsPerHost = 64 // as the proxy's own transport: keep-alive under load
			if up.Timeout > 0 {
				tr.ResponseHeaderTimeout = up.Timeout
			}
			up.Transport = devRoute{real: tr, mock: mock, keyHeader: u.KeyHeader, extraHeader: u.ExtraKey.Header}
		}
		out = append(out, up)
	}
	return out, nil
}

// tlsCheck names the health check of a listener's certificate reloads
// ("broker_tls", "proxy_tls").
func tlsCheck(listener string) string { return listener + "_tls" }

// listen binds the broker, proxy and admin socket. A TCP listener off
// loopback must serve TLS unless its insecure_plaintext says a load
// balancer terminates TLS in front of it.
func (a *App) listen() error {
	var err error
	if a.brokerTLS, err = a.tlsFor("broker", a.cfg.Broker.Addr, a.cfg.Broker.TLS, a.cfg.Broker.InsecurePlaintext); err != nil {
		return err
	}
	if a.proxyTLS, err = a.tlsFor("proxy", a.cfg.Proxy.Addr, a.cfg.Proxy.TLS, a.cfg.Proxy.InsecurePlaintext); err != nil {
		return err
	}
	if a.brokerLn, err = net.Listen("tcp", a.cfg.Broker.Addr); err != nil {
		return fmt.Errorf("broker: %w (is another pamctl running? use --broker-addr)", err)
	}
	a.brokerLn = withTLS(a.brokerLn, a.brokerTLS)
	if a.cfg.Role != RoleBroker {
		if a.proxyLn, err = net.Listen("tcp", a.cfg.Proxy.Addr); err != nil {
			return fmt.Errorf("proxy: %w (is another pamctl running? use --proxy-addr)", err)
		}
		a.proxyLn = withTLS(a.proxyLn, a.proxyTLS)
	}
	sock := SocketPath(a.cfg.DataDir)
	_ = os.Remove(sock) // stale socket from a crash: we hold the db lock, so it is ours
	if a.adminLn, err = listenAdmin(sock); err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	return a.listenMetrics()
}

// tlsFor refuses plaintext off loopback (see tlsconf.CheckListener) and
// loads the listener's certificate when it has one. Failed reloads keep
// the certificate in force and mark /readyz degraded.
func (a *App) tlsFor(name, addr string, c tlsconf.Config, insecure bool) (*tlsconf.Server, error) {
	warn, err := tlsconf.CheckListener(name, addr, c, insecure)
	if err != nil {
		return nil, withCode(ExitUsage, err)
	}
	if warn != "" {
		a.log.Warn(warn)
	}
	if !c.Enabled() {
		return nil, nil
	}
	check := tlsCheck(name)
	a.health.register(check, false, "a changed TLS certificate, key or client CA file of "+name+".tls could not be loaded; the previous certificate is still served: fix the files (see the error)")
	s, err := tlsconf.NewServer(c, tlsconf.Options{
		Logger:   a.log,
		OnError:  func(err error) { a.health.Fail(check, err) },
		OnReload: func() { a.health.OK(check); a.log.Info("TLS certificate reloaded", "listener", name) },
	})
	if err != nil {
		return nil, withCode(ExitUsage, fmt.Errorf("%s.tls: %w", name, err))
	}
	return s, nil
}

func withTLS(ln net.Listener, s *tlsconf.Server) net.Listener {
	if s == nil {
		return ln
	}
	return tls.NewListener(ln, s.TLSConfig())
}

// BrokerURL is the broker's base URL.
func (a *App) BrokerURL() string {
	addr := a.cfg.Broker.Addr
	if a.brokerLn != nil {
		addr = a.brokerLn.Addr().String()
	}
	return scheme(a.cfg.Broker.TLS) + addr
}

// ProxyURL is the proxy's base URL (without /v1).
func (a *App) ProxyURL() string {
	addr := a.cfg.Proxy.Addr
	if a.proxyLn != nil {
		addr = a.proxyLn.Addr().String()
	}
	return scheme(a.cfg.Proxy.TLS) + addr
}

func scheme(c tlsconf.Config) string {
	if c.Enabled() {
		return "https://"
	}
	return "http://"
}

// healthz answers liveness: the process serves.
func healthz(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) }

// proxyProbes serves /healthz and /readyz (readyz) on the proxy's
// listener behind its Host check (proxy.HostCheck, the names a call's
// Host is checked against): a web page rebound to the proxy's address
// reads neither.
func (a *App) proxyProbes(readyz http.HandlerFunc) (http.Handler, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", readyz)
	h, err := proxy.HostCheck(a.proxyHosts(), true, mux)
	if err != nil {
		return nil, withCode(ExitUsage, fmt.Errorf("proxy.hostnames: %w", err))
	}
	return h, nil
}

// metricsHostCheck serves h, the metrics listener's handler, to requests
// whose Host is an IP literal, localhost, or a name of the broker
// (server:'s host, broker.hostnames), of the proxy (proxy.hostnames) or of
// the metrics listener (metrics.hostnames); others get 421, as on the
// broker's listener: a web page rebound to a loopback metrics listener
// reads neither /metrics nor the probes. A request without a Host (an
// HTTP/1.0 check or scrape; no browser sends one) is served.
func (a *App) metricsHostCheck(h http.Handler) http.Handler {
	names := append([]string{hostOf(a.cfg.Server)}, a.cfg.Broker.Hostnames...)
	names = append(append(names, a.cfg.Proxy.Hostnames...), a.cfg.Metrics.Hostnames...)
	return api.HostCheckFor("metrics listener", "metrics.hostnames", names, api.AnyWithoutHost, h)
}

// optionsStar sends `OPTIONS *`, a request for the server rather than a
// path, to checked, the proxy listener's probes behind the proxy's Host
// check, and everything else to h. The listeners' http.Servers pass it to
// their handler (DisableGeneralOptionsHandler: Go's own answer is 200 to
// any Host), and a ServeMux answers a request for "*" itself, 400, before
// any handler it holds runs: the proxy's own Host check would never see
// it. So a foreign Host gets 421 as on every path, any other 400 and
// nothing more.
func optionsStar(checked, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.RequestURI == "*" {
			checked.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// withHealth serves /healthz and /readyz beside h, the metrics listener's
// handler, as Teleport's diagnostic address does: a probe that cannot
// present a client certificate (the kubelet's) to a listener that asks
// every client for one (a broker alone behind mTLS) reads readiness there.
func withHealth(h http.Handler, readyz http.HandlerFunc) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", readyz)
	mux.Handle("/", h)
	return mux
}

// Serve runs until ctx ends, then shuts down gracefully: listeners close,
// in-flight requests finish (up to gracePeriod), the store closes. reload
// is called on SIGHUP and when the config file changes.
// warnPersonEnrollments logs each live local-proxy enrollment a person
// made before only workloads could enroll: refused at every route now,
// it could read the provider keys before.
func (a *App) warnPersonEnrollments(ctx context.Context, cfg *Config) {
	workload := map[string]bool{}
	for _, is := range cfg.Issuers {
		workload[is.Name] = is.Workload
	}
	es, err := a.fleet.PersonEnrollments(ctx, func(name string) (bool, bool) { w, ok := workload[name]; return w, ok })
	if err != nil {
		a.log.Warn("could not look for local-proxy enrollments made by persons", "err", err)
		return
	}
	for _, e := range es {
		a.log.Warn("a person enrolled a local proxy before only workload identities could: it is refused at every route now, but it could read every vaulted provider key; "+
			"revoke it (pamctl proxies revoke ID, the row with this fingerprint) and replace the provider keys (pamctl vault set)",
			"proxy", link.Fingerprint(e.ID), "subject", e.Subject, "issuer", e.Issuer)
	}
}

func (a *App) Serve(ctx context.Context, reload func() (*Config, error)) error {
	if a.cfg.Role == RoleProxy {
		return a.serveProxyRole(ctx)
	}
	readyz := a.health.readyz(a.stopping)
	// Every listener checks the Host of every path, the probes included
	// (DNS rebinding: docs/operations.md, "Health and readiness").
	a.api.Readyz = readyz // the broker reports the same checks
	public := a.api.Public()
	mk := func(h http.Handler) *http.Server {
		// No WriteTimeout: streams and long-polls write for as long as they last.
		// `OPTIONS *` goes to h, behind its Host check (optionsStar).
		return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 5 * time.Minute, IdleTimeout: 2 * time.Minute,
			ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelWarn), DisableGeneralOptionsHandler: true}
	}
	// The broker's listeners bound slow bodies in seconds (api.HTTPServer).
	a.servers = []*http.Server{a.api.HTTPServer(public), a.api.HTTPServer(a.api.Admin())}
	lns := []net.Listener{a.brokerLn, a.adminLn}
	if a.proxy != nil {
		probes, err := a.proxyProbes(readyz)
		if err != nil {
			return err
		}
		health := http.NewServeMux()
		health.Handle("GET /healthz", probes)
		health.Handle("GET /readyz", probes)
		health.Handle("/", a.storeGate(a.proxy)) // the proxy checks a call's Host itself
		a.servers, lns = append(a.servers, mk(optionsStar(probes, health))), append(lns, a.proxyLn)
	}
	if a.mockLn != nil {
		a.servers, lns = append(a.servers, mk(devupstream.New(devupstream.Options{RequireKey: devMockKey}))), append(lns, a.mockLn)
	}
	if a.metricsLn != nil {
		a.servers, lns = append(a.servers, mk(a.metricsHostCheck(withHealth(a.metrics.Handler(), readyz)))), append(lns, a.metricsLn)
	}
	// The critical probes' first round runs before anything is served.
	bg, stopBg := context.WithCancel(context.Background())
	probesDone := a.health.runProbes(bg, a.probes())
	// The certificate and config file watches are in place before anything
	// is served, so a change made once the server answers is never missed.
	var watches []<-chan struct{}
	for _, t := range []*tlsconf.Server{a.brokerTLS, a.proxyTLS, a.metricsTLS} {
		if t != nil {
			watches = append(watches, t.Watch(bg))
		}
	}
	watches = append(watches, a.watchConfig(bg, reload))
	errc := make(chan error, len(a.servers))
	for i, s := range a.servers {
		go func() {
			if err := s.Serve(lns[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	var wg sync.WaitGroup
	for _, done := range watches {
		wg.Add(1)
		go func() { defer wg.Done(); <-done }()
	}
	wg.Add(3)
	go func() { defer wg.Done(); _ = a.broker.Follow(bg, a.state) }()
	go func() { defer wg.Done(); a.sweep(bg) }()
	go func() { defer wg.Done(); a.retain(bg) }()

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		a.log.Error("server failed", "err", err)
	}
	close(a.stopping)
	a.broker.Stop() // long-polls and held prompts answer now
	sctx, cancel := context.WithTimeout(context.Background(), gracePeriod)
	defer cancel()
	var down sync.WaitGroup
	for _, s := range a.servers {
		down.Add(1)
		go func() {
			defer down.Done()
			if s.Shutdown(sctx) != nil {
				s.Close() // grace period over: cut what is left
			}
		}()
	}
	down.Wait()
	stopBg()
	wg.Wait()
	<-probesDone
	if cerr := a.Close(); err == nil {
		err = cerr
	}
	return err
}

// leader says whether this replica runs the cluster's background work.
type leader interface{ IsLeader() bool }

// leads reports whether this replica runs background work now.
func (a *App) leads() bool { return a.leader == nil || a.leader.IsLeader() }

func (a *App) sweep(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if !a.leads() {
				continue // another replica sweeps
			}
			if err := a.broker.Sweep(ctx); err != nil && ctx.Err() == nil {
				a.health.Fail(checkSweep, err)
			} else if err == nil {
				a.health.OK(checkSweep)
			}
			if err := a.broker.SweepSessions(ctx); err != nil && ctx.Err() == nil {
				a.health.Fail(checkSessionSweep, err)
			} else if err == nil {
				a.health.OK(checkSessionSweep)
			}
		}
	}
}

// retain prunes audit events older than audit.retention and requests that
// ended longer ago than requests.retention, at start (or when this replica
// becomes the leader) and hourly. Pruning keeps the chain verifiable
// through a signed anchor; the broker records each request prune in the
// trail (requests.pruned).
func (a *App) retain(ctx context.Context) {
	if a.cfg.Audit.Retention <= 0 && a.cfg.Requests.Retention <= 0 {
		return
	}
	t := time.NewTicker(retainCheck)
	defer t.Stop()
	var last time.Time // last run while leading; zero: not yet in this term
	for {
		if !a.leads() {
			last = time.Time{}
		} else if last.IsZero() || time.Since(last) >= time.Hour {
			last = time.Now()
			a.retainOnce(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// retainCheck is how often retain looks whether it leads and is due.
const retainCheck = 5 * time.Second

func (a *App) retainOnce(ctx context.Context) {
	var errs []error
	if a.cfg.Audit.Retention > 0 {
		res, err := a.audit.Prune(ctx, time.Now().Add(-a.cfg.Audit.Retention))
		if err != nil {
			errs = append(errs, fmt.Errorf("audit: %w", err))
		} else if res.Deleted > 0 {
			a.log.Info("audit retention pruned old events", "deleted", res.Deleted, "anchor_seq", res.AnchorSeq)
		}
	}
	n, err := a.broker.PruneRequests(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("requests: %w", err))
	} else if n > 0 {
		a.log.Info("request retention pruned ended requests", "deleted", n)
	}
	switch err := errors.Join(errs...); {
	case err != nil && ctx.Err() == nil:
		a.health.Fail(checkRetention, err)
	case err == nil:
		a.health.OK(checkRetention)
	}
}

// watchConfig applies a new config on SIGHUP or file change (on Windows,
// which has no SIGHUP, on file change only: reloadHint). An invalid
// config is rejected with its reasons and the old one stays in force.
// SIGHUP is caught and the file watched when watchConfig returns; the
// reloads run on a goroutine until ctx ends, and the returned channel
// closes when it has stopped.
func (a *App) watchConfig(ctx context.Context, reload func() (*Config, error)) (done <-chan struct{}) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	var w *fsnotify.Watcher
	if a.cfg.File != "" {
		var err error
		if w, err = fsnotify.NewWatcher(); err == nil {
			// Watch the directory: editors replace files by rename.
			if err = w.Add(filepath.Dir(a.cfg.File)); err != nil {
				w.Close()
			}
		}
		if err != nil {
			w = nil
			// SIGHUP still works; say so instead of silently not watching.
			a.health.Fail(checkConfigWatch, fmt.Errorf("watch %s: %w", a.cfg.File, err))
		}
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		defer signal.Stop(hup)
		a.reloadLoop(ctx, reload, hup, w)
	}()
	return stopped
}

// reloadLoop is watchConfig's loop: it applies the config on each SIGHUP
// from hup and on each settled change of the file w watches (nil: none).
func (a *App) reloadLoop(ctx context.Context, reload func() (*Config, error), hup <-chan os.Signal, w *fsnotify.Watcher) {
	var events <-chan fsnotify.Event
	var watchErrs <-chan error
	if w != nil {
		defer w.Close()
		events, watchErrs = w.Events, w.Errors
	}
	applied := a.cfg // what is in force: policies, rules, masking
	apply := func(why string) {
		cfg, err := reload()
		// Who owns the file read (or refused): with no other user
		// allowed to write it (LoadConfig), its owner or root changed it.
		details := map[string]string{"trigger": why}
		if owner := fileOwner(a.cfg.File); owner != "" {
			details["file_owner"] = owner
		}
		if err == nil {
			err = CheckReload(applied, cfg)
		}
		var insp proxy.Inspection
		if err == nil {
			insp, err = cfg.Inspection() // Validate compiled it already
		}
		if err != nil {
			// Refused: the running config stays, and the trail says why.
			a.log.Error("config reload refused; keeping the running config", "trigger", why, "err", err.Error())
			a.health.Fail(checkConfigReload, err)
			a.emit(&audit.Event{Type: audit.TypeConfigReloaded, Decision: "refused", Target: a.cfg.File, Error: err.Error(),
				Details: details})
			return
		}
		a.broker.SetPolicies(cfg.Policies)
		a.broker.SetRuleApprovers(ruleApprovers(cfg.Rules))
		a.broker.SetReauthAfter(cfg.Approvals.ReauthAfter)
		if a.proxy != nil {
			a.proxy.SetInspection(insp)
		}
		if pc, err := proxyConfigOf(cfg); err == nil {
			a.proxyCfg.Store(&pc) // local proxies follow within a moment
		}
		if a.metrics != nil {
			a.metrics.SetModels(metricModels(cfg)) // the model label follows the policies
		}
		applied = cfg
		a.health.OK(checkConfigReload)
		details["applied"] = "policies, rules, masking, approvals"
		if problems := a.namedFileProblems(cfg); problems != "" {
			details["file_problems"] = problems
		}
		if stale := needsRestart(a.cfg, cfg); len(stale) > 0 {
			details["restart_needed"] = strings.Join(stale, ", ")
			a.log.Warn("config changes that need a restart were not applied", "keys", details["restart_needed"])
		}
		a.emit(&audit.Event{Type: audit.TypeConfigReloaded, Decision: "applied", Target: cfg.File, Details: details})
		a.log.Info("config reloaded", "trigger", why, "policies", len(cfg.Policies))
	}
	// Editors and `cp` write a file in several steps (truncate, write,
	// rename): wait until it has been quiet for a moment before reading it,
	// so a half-written file is never applied.
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			apply("SIGHUP")
		case ev := <-events:
			if sameFile(ev.Name, a.cfg.File) && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
				debounce.Reset(reloadSettle)
			}
		case err, ok := <-watchErrs:
			if !ok {
				watchErrs = nil
				continue
			}
			// e.g. the kernel's event queue overflowed: a change may
			// have been missed, so re-read the file to be sure.
			a.health.Fail(checkConfigWatch, err)
			debounce.Reset(reloadSettle)
		case <-debounce.C:
			apply("file change")
		}
	}
}

// namedFileProblems judges the files a reloaded cfg names as a start does
// (CheckNamedFiles), logs each problem and returns them for the trail, or
// "". A reload applies none of those files (they are read where they are
// used, and refused there, or at the next start), so a problem does not
// refuse it; but a secret file others may read, or any file others could
// replace, is said now, not when the next start refuses it.
func (a *App) namedFileProblems(cfg *Config) string {
	warnings, err := cfg.CheckNamedFiles()
	for _, w := range warnings {
		a.log.Warn(w)
	}
	problems := warnings
	if err != nil {
		a.log.Error("a file the reloaded config names could be replaced by another local user: it is refused where it is read, and the next start refuses the config", "err", err.Error())
		problems = append(problems, errorList(err)...)
	}
	return detailList(problems)
}

// detailList writes entries as one details value: a JSON list of
// strings ("" for none), which no entry's text (a path holding "; ",
// a comma or a line break) can split or extend.
func detailList(entries []string) string {
	if len(entries) == 0 {
		return ""
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)                    // a path's & < > read as they are
	if err := enc.Encode(entries); err != nil { // strings always encode
		panic(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// errorList is the messages of the errors err joins (errors.Join), one
// an error, never split on the text of one; err's message alone when it
// joins none.
func errorList(err error) []string {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []string{err.Error()}
	}
	var out []string
	for _, e := range j.Unwrap() {
		out = append(out, e.Error())
	}
	return out
}

// sameFile reports whether two names of a file, as given (--config
// c.yaml) and as the watch reports it (./c.yaml), name the same path.
func sameFile(a, b string) bool {
	if a == b {
		return true
	}
	aa, err1 := filepath.Abs(a)
	bb, err2 := filepath.Abs(b)
	return err1 == nil && err2 == nil && aa == bb
}

// reloadSettle is how long the config file must be quiet before a reload.
const reloadSettle = 300 * time.Millisecond

// issuerClient is the server's client of its issuers: the CLI's trust
// (system roots plus ca_file) and client certificate, offered only when
// a server asks for one (the dev issuer behind an mTLS broker listener).
func issuerClient(cfg *Config, timeout time.Duration) (*http.Client, error) {
	tr, err := cfg.brokerTransport()
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: tr, Timeout: timeout}, nil
}

// needsRestart names the settings that differ between the running config
// and a reloaded one but only take effect at start.
func needsRestart(old, cur *Config) []string {
	var out []string
	for _, c := range []struct {
		key      string
		was, now any
	}{
		{"issuers", old.Issuers, cur.Issuers},
		{"upstreams", old.Upstreams, cur.Upstreams},
		{"broker", old.Broker, cur.Broker},
		{"proxy", old.Proxy, cur.Proxy},
		{"data_dir", old.DataDir, cur.DataDir},
		{"store", old.Store, cur.Store},
		{"ca_file", old.CAFile, cur.CAFile},
		{"client_cert_file", old.ClientCertFile, cur.ClientCertFile},
		{"client_key_file", old.ClientKeyFile, cur.ClientKeyFile},
		{"sessions", old.Sessions, cur.Sessions},
		{"audit", old.Audit, cur.Audit},
		{"requests", old.Requests, cur.Requests},
		{"notify", old.Notify, cur.Notify},
		{"metrics", old.Metrics, cur.Metrics},
		{"tracing", old.Tracing, cur.Tracing},
	} {
		if !reflect.DeepEqual(c.was, c.now) {
			out = append(out, c.key)
		}
	}
	return out
}

// SinkStatus reports each audit sink's cursor, lag and last error (the
// anchor last); empty when none is configured.
func (a *App) SinkStatus() []auditsink.Status {
	if a.sinks == nil {
		return nil
	}
	return a.sinks.Status()
}

// recordCursor records in the trail a sink cursor that was not trusted,
// or taken for one written before cursors were authenticated.
func (a *App) recordCursor(sink string, c auditsink.CursorCheck) {
	decision := "rejected"
	if c.Legacy {
		decision = "legacy"
	}
	a.emit(&audit.Event{Type: audit.TypeAuditCursor, Target: sink, Decision: decision, Error: c.Problem})
}

// emit appends an event the server itself records; a failure is reported
// (once per outage) by the audit health check.
func (a *App) emit(e *audit.Event) {
	_ = a.audit.Append(context.Background(), e)
}

// Close releases everything NewApp opened. It is safe to call twice.
func (a *App) Close() error {
	var err error
	a.closeOnce.Do(func() {
		for _, ln := range []net.Listener{a.brokerLn, a.proxyLn, a.adminLn, a.mockLn, a.metricsLn} {
			if ln != nil {
				ln.Close()
			}
		}
		if a.proxy != nil {
			err = errors.Join(err, a.proxy.Close()) // pending proxy.refused events
		}
		if p := a.live.Load(); p != nil {
			err = errors.Join(err, p.Close())
		}
		if a.counts != nil {
			err = errors.Join(err, a.counts.Close())
		}
		if a.spool != nil {
			err = errors.Join(err, a.spool.Close())
		}
		if len(a.hooks) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			for _, h := range a.hooks { // each drains; what cannot be sent goes to OnFailure
				_ = h.Shutdown(ctx)
			}
			cancel()
		}
		if a.tracer != nil { // the spans still buffered
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err = errors.Join(err, a.tracer.Shutdown(ctx))
			cancel()
		}
		if a.sinks != nil { // before the log: shippers read it
			err = errors.Join(err, a.sinks.Close())
		}
		if a.audit != nil {
			err = errors.Join(err, a.audit.Close())
		}
		if a.election != nil { // resigns: another replica takes the background work at once
			err = errors.Join(err, a.election.Close())
		}
		if a.etcd != nil {
			err = errors.Join(err, a.etcd.Close())
		}
		if a.db != nil {
			err = errors.Join(err, a.db.Close())
		}
		if a.adminLn != nil { // only the process that bound it removes it
			os.Remove(SocketPath(a.cfg.DataDir))
		}
	})
	return err
}

// usableKey is the /readyz check of a vaulted provider (or extra) key:
// there, and at least scrub.MinKeyLen bytes, the shortest the proxy sends
// (a shorter one could not be kept out of answers).
func usableKey(ctx context.Context, v *vault.Vault, entry string) error {
	k, err := v.Get(ctx, entry)
	if err != nil {
		return err
	}
	if len(k.Reveal()) < scrub.MinKeyLen {
		return fmt.Errorf("vault entry %s is shorter than %d bytes: the proxy does not send it", entry, scrub.MinKeyLen)
	}
	return nil
}
