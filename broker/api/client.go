package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/auditsink"
	"github.com/pamctl/pamctl/broker/token"
)

// Client talks to a broker over TCP (with a session token) or over the
// admin Unix socket.
type Client struct {
	BaseURL string
	Token   string // broker session; empty on the admin socket
	HTTP    *http.Client
	// UserAgent is sent with every call; the broker records it with a
	// login (see pamctl sessions).
	UserAgent string
}

// NewSocketClient returns a client for the admin socket at path.
func NewSocketClient(path string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}
	return &Client{BaseURL: "http://pamctl-admin", HTTP: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// Error is an error answered by the broker.
type Error struct {
	Status  int
	Code    broker.Code
	Message string
	// StepUp is set for a step_up_required answer: errors.Is(err,
	// broker.ErrStepUpRequired) and errors.As(err, **broker.StepUpError)
	// see it.
	StepUp *broker.StepUpError
}

func (e *Error) Error() string { return e.Message }

// Unwrap exposes the step-up detail, if any.
func (e *Error) Unwrap() error {
	if e.StepUp != nil {
		return e.StepUp
	}
	return nil
}

// ErrUnreachable wraps connection failures.
var ErrUnreachable = errors.New("broker unreachable")

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	switch v := in.(type) {
	case nil:
	case []byte:
		body = bytes.NewReader(v)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 90 * time.Second}
	}
	resp, err := guarded(hc).Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// %w twice: callers test for ErrUnreachable and for a TLS
		// verification failure (tlsconf.IsUnknownAuthority).
		return fmt.Errorf("%w at %s: %w", ErrUnreachable, c.BaseURL, rootCause(err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%w: reading the answer: %v", ErrUnreachable, err)
	}
	if resp.StatusCode >= 300 {
		return answerError(resp, raw)
	}
	if out == nil || len(raw) == 0 {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("broker answered malformed JSON: %w", err)
	}
	return nil
}

// answerError turns an error answer into an *Error: the broker's own
// message when the body has one, else the HTTP status.
func answerError(resp *http.Response, raw []byte) *Error {
	var eb ErrorBody
	if json.Unmarshal(raw, &eb) == nil && eb.Error.Message != "" {
		e := &Error{Status: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
		if eb.Error.Code == broker.CodeStepUpRequired {
			su := &broker.StepUpError{Action: "this", MaxAge: broker.DefaultReauthAfter, Now: time.Now()}
			if d := eb.Error.StepUp; d != nil {
				if d.Action != "" {
					su.Action = d.Action
				}
				if d.MaxAgeSeconds > 0 {
					su.MaxAge = time.Duration(d.MaxAgeSeconds) * time.Second
				}
				if d.AuthTime != nil {
					// The age is the broker's: the two clocks may differ.
					su.AuthTime = *d.AuthTime
					su.Now = d.AuthTime.Add(time.Duration(d.AgeSeconds) * time.Second)
				} else {
					su.NoAuthTime = d.NoAuthTime
				}
			}
			e.StepUp = su
		}
		return e
	}
	if resp.StatusCode == http.StatusBadRequest && bytes.Contains(raw, []byte("HTTP request to an HTTPS server")) {
		// Go's TLS server answers plain HTTP this way.
		return &Error{Status: resp.StatusCode, Code: broker.CodeInvalid,
			Message: "the broker serves HTTPS: use an https:// URL (--server, server: or PAMCTL_SERVER)"}
	}
	return &Error{Status: resp.StatusCode, Code: broker.CodeInternal, Message: "broker answered " + resp.Status}
}

func rootCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Info fetches public server metadata.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var out Info
	return out, c.do(ctx, http.MethodGet, "/v1/info", nil, &out)
}

// Login exchanges an ID token for a broker session.
func (c *Client) Login(ctx context.Context, idToken, nonce string) (*broker.Session, error) {
	var out broker.Session
	return &out, c.do(ctx, http.MethodPost, "/v1/login", LoginRequest{IDToken: idToken, Nonce: nonce}, &out)
}

// LoginWithAccessToken is Login that also hands over the access token, for
// issuers whose groups the broker reads from userinfo.
func (c *Client) LoginWithAccessToken(ctx context.Context, idToken, nonce, accessToken string) (*broker.Session, error) {
	var out broker.Session
	return &out, c.do(ctx, http.MethodPost, "/v1/login", LoginRequest{IDToken: idToken, Nonce: nonce, AccessToken: accessToken}, &out)
}

// Logout ends the session server-side (audited): its token and every copy
// of it are refused from then on.
func (c *Client) Logout(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/logout", struct{}{}, nil)
}

// AgentStarted tells the broker that pamctl exec starts an agent under this
// session: the session can no longer pass a step-up.
func (c *Client) AgentStarted(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/session/agent", struct{}{}, nil)
}

// WhoAmI describes the session's identity.
func (c *Client) WhoAmI(ctx context.Context) (WhoAmI, error) {
	var out WhoAmI
	return out, c.do(ctx, http.MethodGet, "/v1/whoami", nil, &out)
}

// Sessions lists sessions: the caller's, or (all, or user set; admin socket
// or sessions:admin) anyone's. ended includes recently ended ones. On the
// admin socket the listing is everyone's unless user is set.
func (c *Client) Sessions(ctx context.Context, user string, all, ended, admin bool) ([]*broker.SessionRecord, error) {
	q := url.Values{}
	if user != "" {
		q.Set("user", user)
	}
	if all {
		q.Set("all", "true")
	}
	if ended {
		q.Set("ended", "true")
	}
	path := "/v1/sessions"
	if admin {
		path = "/admin/sessions"
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out []*broker.SessionRecord
	return out, c.do(ctx, http.MethodGet, path, nil, &out)
}

// RevokeSessions ends one session or every session of a user (and with
// Grants their live grants).
func (c *Client) RevokeSessions(ctx context.Context, in RevokeSessionsRequest, admin bool) (*broker.RevokeResult, error) {
	path := "/v1/sessions/revoke"
	if admin {
		path = "/admin/sessions/revoke"
	}
	var out broker.RevokeResult
	err := c.do(ctx, http.MethodPost, path, in, &out)
	return &out, err
}

// CreateRequest asks for a grant.
func (c *Client) CreateRequest(ctx context.Context, in CreateRequest) (*broker.Request, error) {
	var out broker.Request
	return &out, c.do(ctx, http.MethodPost, "/v1/requests", in, &out)
}

// Requests lists requests visible to the caller.
func (c *Client) Requests(ctx context.Context, pendingOnly bool) ([]*broker.Request, error) {
	var out []*broker.Request
	path := "/v1/requests"
	if pendingOnly {
		path += "?pending=true"
	}
	return out, c.do(ctx, http.MethodGet, path, nil, &out)
}

// Request fetches one request; wait > 0 long-polls until it leaves pending.
func (c *Client) Request(ctx context.Context, id string, wait time.Duration) (*broker.Request, error) {
	var out broker.Request
	path := "/v1/requests/" + url.PathEscape(id)
	if wait > 0 {
		path += "?wait=" + wait.String()
	}
	return &out, c.do(ctx, http.MethodGet, path, nil, &out)
}

// Review approves or denies a request.
func (c *Client) Review(ctx context.Context, id string, approve bool, in ReviewRequest) (*broker.Request, error) {
	verb := "deny"
	if approve {
		verb = "approve"
	}
	var out broker.Request
	return &out, c.do(ctx, http.MethodPost, "/v1/requests/"+url.PathEscape(id)+"/"+verb, in, &out)
}

// AccessToken fetches an access token for a grant ("" = newest live grant).
func (c *Client) AccessToken(ctx context.Context, id string) (*TokenResponse, error) {
	var out TokenResponse
	path := "/v1/token"
	if id != "" {
		path = "/v1/requests/" + url.PathEscape(id) + "/token"
	}
	return &out, c.do(ctx, http.MethodPost, path, struct{}{}, &out)
}

// Revoke revokes a grant (on the admin socket, as the local admin).
func (c *Client) Revoke(ctx context.Context, id string, admin bool) (*broker.Request, error) {
	var out broker.Request
	path := "/v1/grants/" + url.PathEscape(id) + "/revoke"
	if admin {
		path = "/admin/grants/" + url.PathEscape(id) + "/revoke"
	}
	return &out, c.do(ctx, http.MethodPost, path, struct{}{}, &out)
}

// VaultList lists vault entries (admin socket).
func (c *Client) VaultList(ctx context.Context) ([]VaultEntry, error) {
	var out []VaultEntry
	return out, c.do(ctx, http.MethodGet, "/admin/vault", nil, &out)
}

// VaultSet stores a secret (admin socket). The secret travels in the body only.
func (c *Client) VaultSet(ctx context.Context, name string, secret []byte) (VaultEntry, error) {
	var out VaultEntry
	return out, c.do(ctx, http.MethodPut, "/admin/vault/"+url.PathEscape(name), secret, &out)
}

// VaultRemove deletes a vault entry (admin socket).
func (c *Client) VaultRemove(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/admin/vault/"+url.PathEscape(name), nil, nil)
}

// KeysRotate rotates the signing key (admin socket) and returns the new kid.
func (c *Client) KeysRotate(ctx context.Context) (string, error) {
	var out KeysRotation
	return out.Active, c.do(ctx, http.MethodPost, "/admin/keys/rotate", struct{}{}, &out)
}

// KeysRetireNow rotates the signing key and withdraws every other key at
// once (admin socket): tokens they signed are refused from now on.
func (c *Client) KeysRetireNow(ctx context.Context) (KeysRotation, error) {
	var out KeysRotation
	return out, c.do(ctx, http.MethodPost, "/admin/keys/rotate?retire_now=true", struct{}{}, &out)
}

// ErrIncompleteBackup means the server's copy ended before its declared
// size: the copy must not be used.
var ErrIncompleteBackup = errors.New("the backup stream ended early; the copy is incomplete (see the server log)")

// StoreBackup streams a consistent copy of the server's data store into w
// (admin socket) and returns its size. to is recorded in the store.backup
// event as where the copy goes.
func (c *Client) StoreBackup(ctx context.Context, to string, w io.Writer) (int64, error) {
	resp, err := c.stream(ctx, "/admin/store/backup?"+url.Values{"to": {to}}.Encode(), nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.ContentLength <= 0 {
		return 0, fmt.Errorf("%w: the server did not say how long the copy is", ErrIncompleteBackup)
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return n, fmt.Errorf("%w (%d of %d bytes)", ErrIncompleteBackup, n, resp.ContentLength)
		}
		return n, err
	}
	if n != resp.ContentLength {
		return n, fmt.Errorf("%w (%d of %d bytes)", ErrIncompleteBackup, n, resp.ContentLength)
	}
	return n, nil
}

func auditQuery(f audit.Filter, extra map[string]string) string {
	q := url.Values{}
	for k, v := range FilterQuery(f) {
		q.Set(k, v)
	}
	for k, v := range extra {
		q.Set(k, v)
	}
	if len(q) == 0 {
		return ""
	}
	return "?" + q.Encode()
}

// AuditEvents returns the last n events matching f.
func (c *Client) AuditEvents(ctx context.Context, f audit.Filter, n int) ([]audit.Event, error) {
	var out []audit.Event
	return out, c.do(ctx, http.MethodGet, "/v1/audit/events"+auditQuery(f, map[string]string{"n": strconv.Itoa(n)}), nil, &out)
}

// AuditEvent returns one event by seq.
func (c *Client) AuditEvent(ctx context.Context, seq uint64) (audit.Event, error) {
	var out audit.Event
	return out, c.do(ctx, http.MethodGet, "/v1/audit/events/"+strconv.FormatUint(seq, 10), nil, &out)
}

// AuditSinks returns each audit sink's cursor, lag and last error.
func (c *Client) AuditSinks(ctx context.Context) ([]auditsink.Status, error) {
	var out []auditsink.Status
	return out, c.do(ctx, http.MethodGet, "/v1/audit/sinks", nil, &out)
}

// AuditVerify asks the server to verify the chain.
func (c *Client) AuditVerify(ctx context.Context) (VerifyResult, error) {
	var out VerifyResult
	return out, c.do(ctx, http.MethodGet, "/v1/audit/verify", nil, &out)
}

func (c *Client) stream(ctx context.Context, path string, header map[string]string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.BaseURL, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	base := c.HTTP
	if base == nil {
		base = &http.Client{}
	}
	hc := guarded(base)
	hc.Timeout = 0 // streams last as long as ctx
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w at %s: %v", ErrUnreachable, c.BaseURL, rootCause(err))
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return nil, answerError(resp, raw)
	}
	return resp, nil
}

// AuditExport streams the JSON Lines export of [since, until) to w (zero
// times: open ends).
func (c *Client) AuditExport(ctx context.Context, w io.Writer, since, until time.Time) error {
	q := url.Values{}
	if !since.IsZero() {
		q.Set("since", since.UTC().Format(time.RFC3339Nano))
	}
	if !until.IsZero() {
		q.Set("until", until.UTC().Format(time.RFC3339Nano))
	}
	path := "/v1/audit/export"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	resp, err := c.stream(ctx, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, err = io.Copy(w, resp.Body)
	return err
}

// AuditFollow calls fn for every event matching f from seq from on (0: only
// new events), reconnecting with Last-Event-ID after a dropped connection,
// until ctx ends or fn returns an error.
func (c *Client) AuditFollow(ctx context.Context, f audit.Filter, from uint64, fn func(audit.Event) error) error {
	last := uint64(0)
	backoff := 200 * time.Millisecond
	for {
		hdr := map[string]string{"Accept": "text/event-stream"}
		extra := map[string]string{}
		if last > 0 {
			hdr["Last-Event-ID"] = strconv.FormatUint(last, 10)
		} else if from > 0 {
			extra["from"] = strconv.FormatUint(from, 10)
		}
		resp, err := c.stream(ctx, "/v1/audit/follow"+auditQuery(f, extra), hdr)
		if err != nil {
			var ae *Error
			if errors.As(err, &ae) || ctx.Err() != nil {
				return err
			}
		} else {
			backoff = 200 * time.Millisecond
			err = readEvents(resp.Body, func(e audit.Event) error {
				last = e.Seq
				return fn(e)
			})
			resp.Body.Close()
			if err != nil && !errors.Is(err, errStreamEnded) {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

var errStreamEnded = errors.New("stream ended")

// readEvents parses the follow stream's SSE data lines.
func readEvents(r io.Reader, fn func(audit.Event) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var e audit.Event
		if err := json.Unmarshal([]byte(data), &e); err != nil || e.Seq == 0 {
			continue // the error event or a foreign line
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	return errStreamEnded
}

// JWKS fetches the broker's published signing keys.
func (c *Client) JWKS(ctx context.Context) (token.JWKS, error) {
	var out token.JWKS
	return out, c.do(ctx, http.MethodGet, "/.well-known/jwks.json", nil, &out)
}
