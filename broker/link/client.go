package link

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/token"

	"github.com/pamctl/pamctl/broker/safefile"
)

// Spool is the proxy's durable queue of audit events (store.Spool).
type Spool interface {
	Append(ctx context.Context, e *audit.Event) (uint64, error)
	Pending(ctx context.Context, n int) ([]SpooledEvent, error)
	Ack(ctx context.Context, seq uint64) error
	Size() int64
	Enrollment() (string, error)
	SetEnrollment(id string) error
	// Next is the sequence of the first event not yet acknowledged
	// (pending, or the next one appended).
	Next() (uint64, error)
}

// Defaults of ClientOptions.
const (
	DefaultStaleness = 30 * time.Second
	DefaultSpoolMax  = 1 << 30
	// maxRetry bounds the back-off between reconnection attempts.
	maxRetry = 30 * time.Second
	// jwksMinInterval rate-limits JWKS refetches on an unknown kid.
	jwksMinInterval = time.Second
)

// ClientOptions configure the proxy side of the link.
type ClientOptions struct {
	// BrokerURL is the broker (`server:`), trusted for tokens, keys,
	// revocations and configuration.
	BrokerURL string
	// HTTP carries every call to the broker (TLS settings go here);
	// nil: a default client. The stream is read without a timeout.
	HTTP *http.Client
	// IDTokenFile holds the workload's OIDC ID token; re-read on every
	// login, so a rotated token is picked up.
	IDTokenFile string
	// Version and Address are reported at enrollment.
	Version, Address string
	// Staleness: with no message from the broker's stream for this long,
	// the gate refuses calls (default 30s).
	Staleness time.Duration
	// SpoolMax: past this many unshipped bytes the gate refuses calls
	// (default 1 GiB).
	SpoolMax int64
	Spool    Spool
	// OnConfig applies a new rules/masking/limits document; an error keeps
	// the running one (and the version is not reported as running).
	OnConfig func(ProxyConfig) error
	Logger   *slog.Logger
	Now      func() time.Time
	// Retry is the pause between reconnection attempts (default 1s).
	Retry time.Duration
}

// Client is the proxy side of the link. It implements the proxy's
// TokenVerifier, RevocationList, KeySource, KeyLister and AuditSink, and
// Gate refuses calls while it cannot vouch for them.
type Client struct {
	o    ClientOptions
	priv *ecdh.PrivateKey // in memory only: provider keys are sealed to it

	mu       sync.RWMutex
	session  string
	enrolled *Enrollment
	revoked  map[string]time.Time
	keys     map[string]string
	keysV    string
	cfgV     string
	lastMsg  time.Time // last stream message
	jwks     token.StaticKeys
	jwksAt   time.Time
	jwksV    string // the broker's signing-keys version the cached JWKS is from

	enrollMu sync.Mutex // one enrollment or renewal at a time

	refMu    sync.Mutex
	refused  map[string]int // gate refusals by code since refSince
	refSince time.Time

	ready   atomic.Bool
	shipped chan struct{}
	status  atomic.Value // string: why the gate refuses
}

// NewClient generates the proxy's key pair in memory.
func NewClient(o ClientOptions) (*Client, error) {
	if o.BrokerURL == "" {
		return nil, errors.New("link: the broker URL (server:) is required in the proxy role")
	}
	if o.IDTokenFile == "" {
		return nil, errors.New("link: proxy.identity.id_token_file is required in the proxy role")
	}
	if o.Spool == nil {
		return nil, errors.New("link: an audit spool is required")
	}
	if o.HTTP == nil {
		o.HTTP = &http.Client{}
	}
	if o.Staleness <= 0 {
		o.Staleness = DefaultStaleness
	}
	if o.SpoolMax <= 0 {
		o.SpoolMax = DefaultSpoolMax
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Retry <= 0 {
		o.Retry = time.Second
	}
	o.BrokerURL = strings.TrimRight(o.BrokerURL, "/")
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	c := &Client{o: o, priv: priv, revoked: map[string]time.Time{}, shipped: make(chan struct{}, 1)}
	c.status.Store("the proxy has not enrolled with the broker yet")
	return c, nil
}

// apiError is an error answer from the broker.
type apiError struct {
	Status  int
	Code    string // the API's error code ("forbidden", ...), when given
	Message string
}

// refused reports a refusal of this proxy's enrollment (revoked, its
// grant revoked or ended, not its own): not a broker that failed.
func (e *apiError) refused() bool {
	return e.Status == http.StatusForbidden && (e.Code == "" || e.Code == codeForbidden)
}

// Statuses of a proxy the broker cut off (the 503's reason). Agents read
// them: they never carry the broker's answer, which names the enrollment
// (the proxy's log has it).
const (
	statusRevoked = "this proxy was revoked by an admin: it serves no calls until it is started with a fresh data dir and enrolls on a new " + ScopeServe + " grant (its log has the broker's answer)"
	statusRefused = "the broker refused this proxy's enrollment (its " + ScopeServe + " grant was revoked or ended, or the enrollment is another identity's): it serves no calls until it enrolls again (its log has the broker's answer)"
)

// codeForbidden is the API's code of a refusal (broker.CodeForbidden).
const codeForbidden = "forbidden"

// parseAPIError reads the API's error shape.
func parseAPIError(status int, raw []byte) *apiError {
	var eb struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	_ = json.Unmarshal(raw, &eb)
	return &apiError{Status: status, Code: eb.Error.Code, Message: eb.Error.Message}
}

func (e *apiError) Error() string { return fmt.Sprintf("broker: %s (HTTP %d)", e.Message, e.Status) }

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, method, c.o.BrokerURL+path, body)
	if err != nil {
		return err
	}
	c.auth(req)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.o.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("broker unreachable at %s: %w", c.o.BrokerURL, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		ae := parseAPIError(resp.StatusCode, raw)
		if ae.Message == "" {
			ae.Message = resp.Status
		}
		return ae
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

func (c *Client) auth(req *http.Request) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.session != "" {
		req.Header.Set("Authorization", "Bearer "+c.session)
	}
	if c.enrolled != nil {
		req.Header.Set(HeaderProxyID, c.enrolled.ID)
	}
}

// login presents the workload's ID token (re-read from its file).
func (c *Client) login(ctx context.Context) error {
	raw, err := safefile.ReadFile(c.o.IDTokenFile)
	if err != nil {
		return fmt.Errorf("read proxy.identity.id_token_file: %w", err)
	}
	var sess struct {
		Token string `json:"token"`
	}
	if err := c.do(ctx, http.MethodPost, "/v1/login", map[string]string{"id_token": strings.TrimSpace(string(raw))}, &sess); err != nil {
		return fmt.Errorf("login with the workload identity: %w", err)
	}
	c.mu.Lock()
	c.session = sess.Token
	c.mu.Unlock()
	return nil
}

// grant requests proxy:serve and waits until it is approved.
func (c *Client) grant(ctx context.Context) (string, error) {
	var req struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	if err := c.do(ctx, http.MethodPost, "/v1/requests", map[string]any{"scopes": []string{ScopeServe}, "reason": "pamctl proxy " + c.o.Address}, &req); err != nil {
		return "", fmt.Errorf("request %s: %w", ScopeServe, err)
	}
	for req.State == "pending" {
		c.status.Store("the proxy's " + ScopeServe + " request " + req.ID + " waits for approval")
		if err := c.do(ctx, http.MethodGet, "/v1/requests/"+url.PathEscape(req.ID)+"?wait=25s", nil, &req); err != nil {
			return "", err
		}
	}
	if req.State != "approved" {
		return "", fmt.Errorf("the %s request %s was %s", ScopeServe, req.ID, req.State)
	}
	return req.ID, nil
}

// enroll logs in, obtains a grant and enrolls (renewing the enrollment
// the spool was last shipped under, so its order carries on).
func (c *Client) enroll(ctx context.Context) error {
	if err := c.login(ctx); err != nil {
		return err
	}
	g, err := c.grant(ctx)
	if err != nil {
		return err
	}
	prev, err := c.o.Spool.Enrollment()
	if err != nil {
		return err
	}
	next, err := c.o.Spool.Next()
	if err != nil {
		return err
	}
	in := EnrollRequest{Grant: g, PublicKey: c.priv.PublicKey().Bytes(), Version: c.o.Version, Address: c.o.Address, ID: prev, SpoolNext: next}
	var e Enrollment
	if err := c.do(ctx, http.MethodPost, "/v1/proxies/enroll", in, &e); err != nil {
		return fmt.Errorf("enroll: %w", err)
	}
	if err := c.o.Spool.SetEnrollment(e.ID); err != nil {
		return err
	}
	c.mu.Lock()
	c.enrolled = &e
	c.mu.Unlock()
	c.o.Logger.Info("proxy enrolled with the broker", "id", e.ID, "grant", g, "until", e.ExpiresAt)
	return nil
}

// withoutIDs takes this proxy's enrollment ids (the current one and the
// one its spool was shipped under) out of msg, which agents may read in a
// 503: nobody but the proxy and the broker's admins needs them.
func (c *Client) withoutIDs(msg string) string {
	ids := []string{}
	if prev, err := c.o.Spool.Enrollment(); err == nil && prev != "" {
		ids = append(ids, prev)
	}
	c.mu.RLock()
	if c.enrolled != nil && c.enrolled.ID != "" {
		ids = append(ids, c.enrolled.ID)
	}
	c.mu.RUnlock()
	for _, id := range ids {
		msg = strings.ReplaceAll(msg, id, "(this proxy's)")
	}
	return msg
}

// Enrollment is the current enrollment (nil before the first).
func (c *Client) Enrollment() *Enrollment {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.enrolled
}

// Run keeps the link up until ctx ends: enrolls, follows the stream,
// fetches keys and configuration when their versions change, and ships
// the spool. Errors are logged and retried.
func (c *Client) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); c.shipLoop(ctx) }()
	wg.Add(1)
	go func() { defer wg.Done(); c.renewLoop(ctx) }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				c.flushRefusals(context.WithoutCancel(ctx))
				return
			case <-t.C:
				c.flushRefusals(ctx)
			}
		}
	}()
	wait := c.o.Retry
	for ctx.Err() == nil {
		began := time.Now()
		err := c.session1(ctx)
		if ctx.Err() != nil {
			break
		}
		if time.Since(began) > time.Minute {
			wait = c.o.Retry // it ran for a while: a fresh failure
		}
		c.o.Logger.Warn("broker link lost; reconnecting", "err", err.Error(), "retry_in", wait)
		var ae *apiError
		refused := false
		if errors.As(err, &ae) && (ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden) {
			c.mu.Lock()
			c.session, c.enrolled = "", nil
			c.mu.Unlock()
			// 403: the broker refuses this enrollment (revoked, its
			// grant revoked or ended): it serves nothing more until it
			// is enrolled again, whatever the reason's wording. 401 (a
			// session to renew) leaves it serving while it logs in again.
			if refused = ae.refused(); refused {
				c.ready.Store(false)
				if strings.Contains(ae.Message, "revoked by an admin") {
					c.status.Store(statusRevoked)
				} else {
					c.status.Store(statusRefused)
				}
			}
		}
		if st := c.status.Load().(string); !refused && !c.ready.Load() && st != statusRevoked {
			c.status.Store("this proxy cannot enroll with the broker: " + c.withoutIDs(err.Error()))
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		// Back off while the broker keeps refusing or stays away, so a
		// refused proxy does not flood the trail with attempts.
		wait = min(wait*2, maxRetry)
	}
	wg.Wait()
}

// session1 runs one connection: enroll if needed, then the stream.
func (c *Client) session1(ctx context.Context) error {
	if err := c.enrollIf(ctx, func(e *Enrollment) bool { return e == nil || !c.o.Now().Before(e.ExpiresAt) }); err != nil {
		return err
	}
	if err := c.loadJWKS(ctx); err != nil {
		return err
	}
	return c.stream(ctx)
}

func (c *Client) stream(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Heartbeats come four times per staleness period, so one late
	// message never makes the proxy refuse calls.
	hb := min(max(c.o.Staleness/4, MinHeartbeat), Heartbeat)
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, c.o.BrokerURL+"/v1/proxies/stream?heartbeat="+hb.String(), nil)
	if err != nil {
		return err
	}
	c.auth(req)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.o.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return parseAPIError(resp.StatusCode, raw)
	}
	// A stream that stops talking is as good as lost.
	watchdog := time.AfterFunc(c.o.Staleness, cancel)
	defer watchdog.Stop()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var event string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data := strings.TrimPrefix(line, "data: ")
			switch event {
			case "state":
				var st StreamState
				if err := json.Unmarshal([]byte(data), &st); err != nil {
					return fmt.Errorf("stream: %w", err)
				}
				if err := c.apply(ctx, st); err != nil {
					return err
				}
				watchdog.Reset(c.o.Staleness)
			case "error":
				// The broker ended the stream: a refusal of this
				// enrollment, or a failure of its own (its store, its
				// vault), which is no reason to stop serving.
				ae := parseAPIError(http.StatusForbidden, []byte(data))
				if !ae.refused() {
					ae.Status = http.StatusServiceUnavailable
				}
				return ae
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	return errors.New("stream: the broker closed it")
}

// apply takes one state message: revocations first, then keys and
// configuration when their versions moved. The proxy becomes ready once
// it holds the revocations, the keys and the configuration.
func (c *Client) apply(ctx context.Context, st StreamState) error {
	c.mu.Lock()
	if !st.Delta {
		// A full set drops what the broker no longer lists: grants whose
		// tokens expired by the broker's clock. Revoking is final, so an
		// entry stays here until its tokens expire by this proxy's own
		// clock, which checks their exp: a proxy running behind the broker
		// would otherwise take a revoked grant's tokens again meanwhile.
		now := c.o.Now()
		for id, until := range c.revoked {
			if !now.Before(until) {
				delete(c.revoked, id)
			}
		}
	}
	for id, until := range st.Revoked {
		c.revoked[id] = until
	}
	keysStale, cfgStale := st.KeysVersion != c.keysV, st.ConfigVersion != c.cfgV
	sigStale := st.SigningKeys != "" && st.SigningKeys != c.jwksV
	c.mu.Unlock()
	if sigStale {
		// A key withdrawn at once is known here: only a refetch drops it.
		// If it fails the stream ends, and the proxy stops serving once
		// revocation_staleness passes without a stream.
		if err := c.loadJWKS(ctx); err != nil {
			return err
		}
		c.mu.Lock()
		c.jwksV = st.SigningKeys
		c.mu.Unlock()
	}
	if keysStale {
		if err := c.fetchKeys(ctx); err != nil {
			return err
		}
	}
	if cfgStale {
		if err := c.fetchConfig(ctx); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.lastMsg = c.o.Now()
	c.mu.Unlock()
	c.ready.Store(true)
	return nil
}

func (c *Client) fetchKeys(ctx context.Context) error {
	var sk SealedKeys
	if err := c.do(ctx, http.MethodGet, "/v1/proxies/keys", nil, &sk); err != nil {
		return fmt.Errorf("provider keys: %w", err)
	}
	plain, err := Open(c.priv, sk.Ephemeral, sk.Nonce, sk.Sealed)
	if err != nil {
		return err
	}
	keys := map[string]string{}
	err = json.Unmarshal(plain, &keys)
	clear(plain)
	if err != nil {
		return fmt.Errorf("provider keys: %w", err)
	}
	c.mu.Lock()
	c.keys, c.keysV = keys, sk.Version
	c.mu.Unlock()
	return nil
}

func (c *Client) fetchConfig(ctx context.Context) error {
	var pc ProxyConfig
	if err := c.do(ctx, http.MethodGet, "/v1/proxies/config", nil, &pc); err != nil {
		return fmt.Errorf("proxy config: %w", err)
	}
	if c.o.OnConfig != nil {
		if err := c.o.OnConfig(pc); err != nil {
			return fmt.Errorf("proxy config %s refused: %w", pc.Version, err)
		}
	}
	c.mu.Lock()
	c.cfgV = pc.Version
	c.mu.Unlock()
	_ = c.do(ctx, http.MethodPost, "/v1/proxies/config", map[string]string{"version": pc.Version}, nil)
	return nil
}

// ConfigVersion is the configuration version in force.
func (c *Client) ConfigVersion() string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cfgV
}

// Refusal says why calls must be refused now ("" when they may pass):
// not enrolled yet or revoked, revocations stale, or the spool full.
func (c *Client) Refusal() (code, msg string) {
	if !c.ready.Load() {
		return "proxy_not_enrolled", c.status.Load().(string)
	}
	c.mu.RLock()
	last := c.lastMsg
	c.mu.RUnlock()
	if age := c.o.Now().Sub(last); age > c.o.Staleness {
		return "revocations_stale", fmt.Sprintf("this proxy has not heard from the broker for %s (proxy.revocation_staleness is %s), so it cannot know which grants were revoked; calls resume when it reconnects", age.Round(time.Second), c.o.Staleness)
	}
	if n := c.o.Spool.Size(); n > c.o.SpoolMax {
		return "audit_spool_full", fmt.Sprintf("this proxy's audit spool holds %d bytes not yet shipped to the broker (proxy.spool_max is %d); calls resume once the broker takes them", n, c.o.SpoolMax)
	}
	return "", ""
}

// Gate refuses calls with 503 in OpenAI's error shape while Refusal says so.
func (c *Client) Gate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code, msg := c.Refusal(); code != "" {
			c.noteRefusal(code)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": msg, "type": "server_error", "code": code}})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// IsRevoked implements the proxy's RevocationList.
func (c *Client) IsRevoked(grant string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, ok := c.revoked[grant]
	return ok
}

// ProviderKey implements the proxy's KeySource from memory.
func (c *Client) ProviderKey(_ context.Context, entry string) (string, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	k, ok := c.keys[entry]
	if !ok {
		return "", fmt.Errorf("no provider key %q in the broker's vault: an admin must run `pamctl vault set %s` on the broker", entry, entry)
	}
	return k, nil
}

// ProviderKeyValues implements the proxy's KeyLister.
func (c *Client) ProviderKeyValues(context.Context) ([]string, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]string, 0, len(c.keys))
	for _, v := range c.keys {
		out = append(out, v)
	}
	return out, nil
}

// loadJWKS fetches the broker's signing keys.
func (c *Client) loadJWKS(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.o.BrokerURL+"/.well-known/jwks.json", nil)
	if err != nil {
		return err
	}
	resp, err := c.o.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jwks: broker answered %s", resp.Status)
	}
	var doc token.JWKS
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	keys, err := token.KeysFromJWKS(doc)
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	c.mu.Lock()
	c.jwks, c.jwksAt = keys, c.o.Now()
	c.mu.Unlock()
	return nil
}

// PublicKey implements token.KeySet from the cached JWKS, refetching it
// (at most once a second) when a token names an unknown key.
func (c *Client) PublicKey(kid string) (ed25519.PublicKey, bool) {
	c.mu.RLock()
	k, ok := c.jwks[kid]
	at := c.jwksAt
	c.mu.RUnlock()
	if ok || c.o.Now().Sub(at) < jwksMinInterval {
		return k, ok
	}
	c.mu.Lock()
	c.jwksAt = c.o.Now() // claim the refetch: concurrent misses do not pile up
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.loadJWKS(ctx); err != nil {
		c.o.Logger.Warn("jwks refetch failed", "err", err.Error())
		return nil, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	k, ok = c.jwks[kid]
	return k, ok
}

var _ token.KeySet = (*Client)(nil)

// Append implements the proxy's AuditSink: the event is durable in the
// local spool when it returns; shipping follows.
func (c *Client) Append(ctx context.Context, e *audit.Event) error {
	if _, err := c.o.Spool.Append(ctx, e); err != nil {
		return err
	}
	select {
	case c.shipped <- struct{}{}:
	default:
	}
	return nil
}

// shipLoop sends the spool to the broker, in order, and drops what the
// broker acknowledged.
func (c *Client) shipLoop(ctx context.Context) {
	t := time.NewTicker(c.o.Retry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.shipped:
		case <-t.C:
		}
		for ctx.Err() == nil && c.Enrollment() != nil {
			batch, err := c.o.Spool.Pending(ctx, MaxAuditBatch)
			if err != nil || len(batch) == 0 {
				break
			}
			var ack AuditAck
			err = c.do(ctx, http.MethodPost, "/v1/proxies/audit", AuditBatch{Events: batch}, &ack)
			if ack.Acked > 0 {
				if aerr := c.o.Spool.Ack(ctx, ack.Acked); aerr != nil {
					c.o.Logger.Warn("audit spool ack failed", "err", aerr.Error())
				}
			}
			if err != nil {
				c.o.Logger.Warn("audit shipping failed; retrying", "err", err.Error())
				break
			}
			if len(batch) < MaxAuditBatch {
				break
			}
		}
	}
}

// Verifier is the proxy's token verifier over the broker's JWKS, for the
// issuer the broker names at enrollment (its server URL when it has not
// said).
func (c *Client) Verifier() TokenVerifier { return remoteVerifier{c} }

// TokenVerifier is what the proxy needs of a verifier.
type TokenVerifier interface {
	Verify(raw string) (*token.Claims, error)
}

type remoteVerifier struct{ c *Client }

func (v remoteVerifier) Verify(raw string) (*token.Claims, error) {
	iss := v.c.o.BrokerURL
	if e := v.c.Enrollment(); e != nil && e.TokenIssuer != "" {
		iss = e.TokenIssuer
	}
	return (&token.Verifier{Keys: v.c, Issuer: iss, Audience: token.AudienceProxy, Use: token.UseAccess}).Verify(raw)
}

// Trusts reports whether kid is in the cached JWKS (proxy.KeyTruster):
// a key the broker withdrew leaves it when the stream reports the
// signing keys changed, and the proxy's cache of verified tokens drops
// the tokens it signed. It never fetches.
func (v remoteVerifier) Trusts(kid string) bool {
	v.c.mu.RLock()
	defer v.c.mu.RUnlock()
	_, ok := v.c.jwks[kid]
	return ok
}

// ShipBatch posts one audit shipment under this proxy's session and
// enrollment, as the ship loop does (tests: what a holder of the proxy's
// identity can send).
func (c *Client) ShipBatch(ctx context.Context, b AuditBatch) (AuditAck, error) {
	var ack AuditAck
	err := c.do(ctx, http.MethodPost, "/v1/proxies/audit", b, &ack)
	return ack, err
}

// SetRetry sets the pause between reconnection attempts (tests).
func (c *Client) SetRetry(d time.Duration) { c.o.Retry = d }

// Hold sends a held call to the broker and waits for its decision (ctx
// bounds the wait: the proxy's hold timeout).
func (c *Client) Hold(ctx context.Context, h HoldRequest) (HoldDecision, error) {
	var d HoldDecision
	err := c.do(ctx, http.MethodPost, "/v1/proxies/hold", h, &d)
	if olderBroker(err) && (h.Method != "" || h.Matches != nil || h.MatchSummary != "") {
		// A broker older than these fields refuses every body that has
		// them, before it records anything: send the hold again as it
		// knows holds. It shows the path without a method, and the
		// excerpt (whose text names the places) as text.
		h.Method, h.Matches, h.MatchSummary = "", nil, ""
		err = c.do(ctx, http.MethodPost, "/v1/proxies/hold", h, &d)
	}
	if err != nil {
		return HoldDecision{}, err
	}
	return d, nil
}

// olderBroker reports whether err is a broker's refusal of a hold for a
// field it does not know (its strict JSON reading: "malformed JSON body:
// json: unknown field "method""), which a broker older than that field
// answers.
func olderBroker(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Status == http.StatusBadRequest && strings.Contains(ae.Message, "unknown field")
}

// enrollIf enrolls (or renews) when need says so of the current
// enrollment; one enrollment at a time.
func (c *Client) enrollIf(ctx context.Context, need func(*Enrollment) bool) error {
	c.enrollMu.Lock()
	defer c.enrollMu.Unlock()
	if !need(c.Enrollment()) {
		return nil
	}
	return c.enroll(ctx)
}

// renewAt is when to renew e: a fifth of its lifetime (at least a
// minute, at most half of it) before it ends, so a renewal that waits for an approver does
// not interrupt the stream.
func renewAt(e *Enrollment) time.Time {
	life := e.ExpiresAt.Sub(e.LastContact)
	return e.ExpiresAt.Add(-min(max(life/5, time.Minute), life/2))
}

// renewLoop renews the enrollment ahead of its end while the stream
// keeps running on the current one.
func (c *Client) renewLoop(ctx context.Context) {
	for {
		wait := 30 * time.Second
		if e := c.Enrollment(); e != nil {
			if d := renewAt(e).Sub(c.o.Now()); d <= 0 {
				err := c.enrollIf(ctx, func(cur *Enrollment) bool { return cur != nil && !c.o.Now().Before(renewAt(cur)) })
				if err == nil {
					continue
				}
				c.o.Logger.Warn("enrollment renewal failed; retrying", "err", err.Error())
				wait = 5 * time.Second
			} else {
				wait = min(wait, d)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (c *Client) noteRefusal(code string) {
	c.refMu.Lock()
	defer c.refMu.Unlock()
	if c.refused == nil {
		c.refused, c.refSince = map[string]int{}, c.o.Now()
	}
	c.refused[code]++
}

// flushRefusals records the calls the gate refused since the last flush
// as one proxy.refused event (spooled and shipped like the others), so
// an outage's refusals are in the trail without one event per call.
func (c *Client) flushRefusals(ctx context.Context) {
	c.refMu.Lock()
	counts, since := c.refused, c.refSince
	c.refused = nil
	c.refMu.Unlock()
	if len(counts) == 0 {
		return
	}
	codes := make([]string, 0, len(counts))
	total := 0
	for code, n := range counts {
		codes = append(codes, fmt.Sprintf("%s=%d", code, n))
		total += n
	}
	slices.Sort(codes)
	joined := strings.Join(codes, ",")
	e := &audit.Event{Type: audit.TypeProxyRefused, Decision: "deny",
		Error: fmt.Sprintf("%d calls refused while this proxy could not vouch for them (%s)", total, joined),
		Details: map[string]string{"codes": joined, "count": strconv.Itoa(total), "gate": "link",
			"window_start": since.UTC().Format(time.RFC3339Nano), "window_end": c.o.Now().UTC().Format(time.RFC3339Nano)}}
	if err := c.Append(ctx, e); err != nil {
		c.o.Logger.Warn("could not spool the gate's refusals", "err", err.Error(), "count", total)
	}
}

// FlushRefusals writes the pending proxy.refused event now (tests).
func (c *Client) FlushRefusals(ctx context.Context) { c.flushRefusals(ctx) }
