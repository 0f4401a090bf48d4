// Package api is the broker's HTTP interface: the JSON API the CLI talks to
// over TCP (authenticated with a broker session), the JWKS, and the admin
// API served only on the owner-only Unix socket (vault, keys). It translates
// HTTP to broker.Service calls and broker errors to status codes; it holds no
// logic of its own. Client is the matching Go client used by the CLI.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/auditsink"
	"github.com/pamctl/pamctl/broker/link"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
)

// IssuerInfo tells the CLI how to log in with one trusted issuer.
type IssuerInfo struct {
	Name     string   `json:"name"`
	URL      string   `json:"url"`
	ClientID string   `json:"client_id"`
	Scopes   []string `json:"scopes"`
	Workload bool     `json:"workload,omitempty"`
	Dev      bool     `json:"dev,omitempty"` // the embedded development issuer (auto-consent)
	// Login settings the CLI applies (broker/oidc.IssuerConfig): the loopback
	// redirect port, the path of the client secret file on the user's
	// machine (never the secret), and whether the broker needs the access
	// token to read groups from userinfo.
	RedirectPort     int    `json:"redirect_port,omitempty"`
	ClientSecretFile string `json:"client_secret_file,omitempty"`
	GroupsSource     string `json:"groups_source,omitempty"`
}

// Info is public, unauthenticated server metadata.
type Info struct {
	Version  string `json:"version"`
	Dev      bool   `json:"dev"`
	ProxyURL string `json:"proxy_url"` // base URL agents use, ending in /v1
	// UIURL is the web approval page (<ui.public_url>/ui/), when it is on;
	// an item's page is broker.ItemURL(ui.public_url, id).
	UIURL   string       `json:"ui_url,omitempty"`
	Issuers []IssuerInfo `json:"issuers"`
	// ReauthAfterSeconds is approvals.reauth_after: the CLI asks the IdP
	// for an authentication no older than this (max_age) when it logs in.
	ReauthAfterSeconds int64 `json:"reauth_after_seconds,omitempty"`
}

// AdminIdentity is who acts through the admin socket: the OS user that owns
// the data directory.
var AdminIdentity = broker.AdminIdentity

// Server serves the broker API.
type Server struct {
	Broker *broker.Service
	// AdminService makes and audits the admin socket's changes (Via ViaSocket).
	AdminService *broker.Admin
	Keys         *token.Keyring
	Audit        audit.Log
	Info         func() Info
	Logger       *slog.Logger
	// Extra lets serve mount more handlers on the public mux (the dev issuer).
	Extra map[string]http.Handler
	// Stopping is closed when the server starts shutting down: audit
	// followers end instead of holding up a graceful shutdown.
	Stopping <-chan struct{}
	// Hostnames are the names clients reach the broker by (broker.hostnames);
	// Public refuses other Host headers (see HostCheck).
	Hostnames []string
	// Readyz, when set, answers GET /readyz (serve's named checks) on
	// Public, behind the Host check like every other path, and on Admin;
	// else both answer ok.
	Readyz http.Handler
	// Proxies, when set (broker role and all), serves the API of local
	// proxies (/v1/proxies/*, /admin/proxies).
	Proxies *link.Registry
	// HeaderTimeout and BodyTimeout bound slow clients (see HTTPServer);
	// zero means DefaultHeaderTimeout and DefaultBodyTimeout.
	HeaderTimeout, BodyTimeout time.Duration
	// Sinks reports the audit sinks' cursors, lag and errors (nil: none
	// configured).
	Sinks func() []auditsink.Status
}

// Bounds on what any client, logged in or not, can make the broker hold:
// every route caps its body to what it needs, and a body must arrive in
// full within BodyTimeout (headers within HeaderTimeout).
const (
	// MaxLoginBody caps POST /v1/login: an ID token is a few KiB; group-heavy
	// tokens (hundreds of groups) stay well under this.
	MaxLoginBody = 32 << 10
	// MaxRequestBody caps request creation and reviews: scopes, a TTL and a
	// reason (policy caps reasons at 1 KiB).
	MaxRequestBody = 16 << 10
	// MaxRevokeSessionsBody caps POST /v1/sessions/revoke: an id or a
	// subject, a flag and a reason.
	MaxRevokeSessionsBody = 8 << 10
	// MaxEmptyBody caps routes that take no body ("{}" at most).
	MaxEmptyBody = 1 << 10
	// MaxSecretBody caps a vault secret (admin socket).
	MaxSecretBody = 64 << 10

	// DefaultHeaderTimeout and DefaultBodyTimeout bound slow clients.
	DefaultHeaderTimeout = 5 * time.Second
	DefaultBodyTimeout   = 10 * time.Second
)

// HTTPServer returns the http.Server for h (Public or Admin) with the
// broker's timeouts: ReadHeaderTimeout, and ReadTimeout covering the whole
// request including its body. Each route lifts the read deadline once its
// body is in (see handle), so long-polls and streams run as long as they
// last; there is no WriteTimeout for the same reason.
func (s *Server) HTTPServer(h http.Handler) *http.Server {
	hdr, body := s.HeaderTimeout, s.BodyTimeout
	if hdr <= 0 {
		hdr = DefaultHeaderTimeout
	}
	if body <= 0 {
		body = DefaultBodyTimeout
	}
	// DisableGeneralOptionsHandler: `OPTIONS *` goes to h, behind its Host
	// check (a ServeMux answers it 400), not Go's 200 to any Host.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: hdr, ReadTimeout: body, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		DisableGeneralOptionsHandler: true}
	if s.Logger != nil {
		srv.ErrorLog = slog.NewLogLogger(s.Logger.Handler(), slog.LevelWarn)
	}
	return srv
}

// Public is the TCP handler: health, JWKS, login and the session-authenticated
// API, behind the Host check (see HostCheck).
func (s *Server) Public() http.Handler {
	mux := http.NewServeMux()
	s.common(mux)
	s.auditRoutes(mux, func(h authedFunc) http.HandlerFunc {
		return s.authed(func(w http.ResponseWriter, r *http.Request, who broker.Identity) {
			if err := s.Broker.CanReadAudit(r.Context(), who); err != nil {
				writeError(w, err)
				return
			}
			h(w, r, who)
		})
	})
	for pattern, h := range s.Extra {
		mux.Handle(pattern, h)
	}
	return HostCheck(s.Hostnames, s.withReadyz(mux))
}

// withReadyz serves s.Readyz (when set) for GET /readyz in front of mux,
// whose own /readyz answers a static ok: the broker's listener and the
// admin socket report the same checks.
func (s *Server) withReadyz(mux *http.ServeMux) http.Handler {
	if s.Readyz == nil {
		return mux
	}
	outer := http.NewServeMux()
	outer.Handle("GET /readyz", s.Readyz)
	outer.Handle("/", mux)
	return outer
}

// Admin is the Unix-socket handler: everything Public has plus /admin,
// /readyz answering as Public's does. Reaching the socket (mode 0600) is
// the authentication.
func (s *Server) Admin() http.Handler {
	mux := http.NewServeMux()
	s.common(mux)
	handle(mux, "GET /admin/vault", 0, s.vaultList)
	handle(mux, "PUT /admin/vault/{name}", MaxSecretBody, s.vaultSet)
	handle(mux, "DELETE /admin/vault/{name}", 0, s.vaultRemove)
	handle(mux, "GET /admin/keys", 0, s.keysList)
	handle(mux, "POST /admin/keys/rotate", MaxEmptyBody, s.keysRotate)
	handle(mux, "POST /admin/grants/{id}/revoke", MaxEmptyBody, s.adminRevoke)
	handle(mux, "GET /admin/sessions", 0, s.listSessions(true))
	handle(mux, "POST /admin/sessions/revoke", MaxRevokeSessionsBody, s.revokeSessions(true))
	handle(mux, "GET /admin/store/backup", 0, s.storeBackup)
	s.proxyAdminRoutes(mux)
	s.auditRoutes(mux, func(h authedFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { h(w, r, AdminIdentity) }
	})
	return s.withReadyz(mux)
}

// handle registers h for pattern with its body capped at limit bytes and
// read in full before h runs: a declared length over the cap is refused at
// once (413) without reading, a chunked body is cut at the cap, and a body
// that does not arrive within the server's ReadTimeout is cut there. Once
// the body is in, the read deadline is lifted, so long-polls, streams and
// handlers waiting on something else (an IdP's JWKS) run as long as they
// need; nothing slow is left to read from the client. Answers are not to
// be stored by any cache (Cache-Control: no-store): they carry session and
// access tokens, requests and the trail; a public route (JWKS) says
// otherwise itself.
func handle(mux *http.ServeMux, pattern string, limit int64, h http.HandlerFunc) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if r.ContentLength > limit || (limit == 0 && len(r.TransferEncoding) > 0) {
			w.Header().Set("Connection", "close")
			writeError(w, tooLarge(limit))
			return
		}
		raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
		if err != nil {
			var mbe *http.MaxBytesError
			var ne net.Error
			w.Header().Set("Connection", "close")
			switch {
			case errors.As(err, &mbe):
				writeError(w, tooLarge(limit))
			case errors.As(err, &ne) && ne.Timeout():
				writeError(w, &broker.Error{Code: broker.CodeInvalid, Message: "the request body arrived too slowly"})
			default:
				writeError(w, &broker.Error{Code: broker.CodeInvalid, Message: "could not read the request body"})
			}
			return
		}
		_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
		r.Body = io.NopCloser(bytes.NewReader(raw))
		h(w, r)
	})
}

func tooLarge(limit int64) error {
	if limit == 0 {
		return &broker.Error{Code: broker.CodeTooLarge, Message: "this endpoint takes no request body"}
	}
	return &broker.Error{Code: broker.CodeTooLarge, Message: fmt.Sprintf("request body too large (%d KiB max for this endpoint)", max(limit>>10, 1))}
}

func (s *Server) common(mux *http.ServeMux) {
	ok := func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}
	handle(mux, "GET /healthz", 0, ok)
	handle(mux, "GET /readyz", 0, ok)
	handle(mux, "GET /.well-known/jwks.json", 0, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		writeJSON(w, http.StatusOK, s.Keys.JWKS())
	})
	handle(mux, "GET /v1/info", 0, func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.Info()) })
	handle(mux, "POST /v1/login", MaxLoginBody, s.login)
	handle(mux, "GET /v1/whoami", 0, s.authed(s.whoami))
	handle(mux, "POST /v1/logout", MaxEmptyBody, s.authed(s.logout))
	handle(mux, "POST /v1/session/agent", MaxEmptyBody, s.authed(s.agentStarted))
	handle(mux, "GET /v1/sessions", 0, s.authed(func(w http.ResponseWriter, r *http.Request, who broker.Identity) {
		s.listSessions(false)(w, r.WithContext(context.WithValue(r.Context(), whoKey{}, who)))
	}))
	handle(mux, "POST /v1/sessions/revoke", MaxRevokeSessionsBody, s.authed(func(w http.ResponseWriter, r *http.Request, who broker.Identity) {
		s.revokeSessions(false)(w, r.WithContext(context.WithValue(r.Context(), whoKey{}, who)))
	}))
	handle(mux, "POST /v1/requests", MaxRequestBody, s.authed(s.createRequest))
	handle(mux, "GET /v1/requests", 0, s.authed(s.listRequests))
	handle(mux, "GET /v1/requests/{id}", 0, s.authed(s.getRequest))
	handle(mux, "POST /v1/requests/{id}/approve", MaxRequestBody, s.authed(s.review(true)))
	handle(mux, "POST /v1/requests/{id}/deny", MaxRequestBody, s.authed(s.review(false)))
	handle(mux, "POST /v1/requests/{id}/token", MaxEmptyBody, s.authed(s.token))
	handle(mux, "POST /v1/token", MaxEmptyBody, s.authed(s.token))
	handle(mux, "POST /v1/grants/{id}/revoke", MaxEmptyBody, s.authed(s.revoke))
	s.proxyRoutes(mux)
}

// sessKey holds the broker.SessionInfo of the session in use; absent on
// the admin socket.
type sessKey struct{}

// whoKey carries the caller's identity to handlers shared with the admin
// socket (absent there: the caller is the local admin).
type whoKey struct{}

type authedFunc func(w http.ResponseWriter, r *http.Request, who broker.Identity)

// bearer returns the token of an `Authorization: Bearer T` header ("" for
// any other). The scheme is case-insensitive (RFC 9110 11.1), as the
// proxy reads it.
func bearer(h string) string {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

func (s *Server) authed(h authedFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		raw := bearer(r.Header.Get("Authorization"))
		if raw == "" {
			writeError(w, &broker.Error{Code: broker.CodeUnauthenticated, Message: "not logged in: run `pamctl login`"})
			return
		}
		who, sess, err := s.Broker.Authenticate(r.Context(), raw)
		if err != nil {
			s.logErr(r, err)
			writeError(w, err)
			return
		}
		ctx := context.WithValue(r.Context(), sessKey{}, sess)
		h(w, r.WithContext(ctx), who)
	}
}

// LoginRequest is the body of POST /v1/login.
type LoginRequest struct {
	IDToken string `json:"id_token"`
	Nonce   string `json:"nonce,omitempty"`
	// AccessToken is sent only for issuers with groups_source: userinfo.
	AccessToken string `json:"access_token,omitempty"`
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var in LoginRequest
	if !readJSON(w, r, &in) {
		return
	}
	if in.IDToken == "" {
		writeError(w, &broker.Error{Code: broker.CodeInvalid, Message: "id_token is required"})
		return
	}
	sess, err := s.Broker.LoginWithAccessToken(r.Context(), in.IDToken, in.Nonce, in.AccessToken, clientOf(r))
	if err != nil {
		s.logErr(r, err)
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, sess)
}

// WhoAmI is the body of GET /v1/whoami.
type WhoAmI struct {
	broker.Identity
	// Session is the id of the session in use (see pamctl sessions).
	Session   string    `json:"session"`
	ExpiresAt time.Time `json:"expires_at"`
	// IdleExpiresAt is when the session ends unless used again (absent
	// without an idle timeout).
	IdleExpiresAt *time.Time `json:"idle_expires_at,omitempty"`
	// AuthTime is the session's last IdP authentication (step-up compares
	// it with approvals.reauth_after).
	AuthTime *time.Time `json:"auth_time,omitempty"`
	// NoAuthTime, without AuthTime, says why the session cannot step up
	// (StepUpDetail.NoAuthTime).
	NoAuthTime string `json:"no_auth_time,omitempty"`
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request, who broker.Identity) {
	sess, _ := r.Context().Value(sessKey{}).(broker.SessionInfo)
	out := WhoAmI{Identity: who, Session: sess.ID, ExpiresAt: sess.ExpiresAt}
	if !who.AuthTime.IsZero() {
		at := who.AuthTime.UTC()
		out.AuthTime = &at
	} else {
		out.NoAuthTime = who.NoAuthTime
	}
	if !sess.IdleExpiresAt.IsZero() {
		idle := sess.IdleExpiresAt
		if idle.After(sess.ExpiresAt) {
			idle = sess.ExpiresAt
		}
		out.IdleExpiresAt = &idle
	}
	writeJSON(w, http.StatusOK, out)
}

// agentStarted serves POST /v1/session/agent: pamctl exec is starting an
// agent under the session in use (broker.Service.MarkAgentStarted).
func (s *Server) agentStarted(w http.ResponseWriter, r *http.Request, who broker.Identity) {
	sess, _ := r.Context().Value(sessKey{}).(broker.SessionInfo)
	if err := s.Broker.MarkAgentStarted(r.Context(), who, sess.ID); err != nil {
		s.logErr(r, err)
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, who broker.Identity) {
	sess, _ := r.Context().Value(sessKey{}).(broker.SessionInfo)
	if err := s.Broker.Logout(r.Context(), who, sess.ID, clientOf(r)); err != nil {
		s.logErr(r, err)
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// caller is the identity a handler shared with the admin socket acts as.
func caller(r *http.Request, admin bool) broker.Identity {
	if admin {
		who := AdminIdentity
		who.Via = broker.ViaSocket
		return who
	}
	who, _ := r.Context().Value(whoKey{}).(broker.Identity)
	return who
}

// listSessions serves GET /v1/sessions (the caller's, or with ?all=true or
// ?user=S anyone's given sessions:admin) and GET /admin/sessions (everyone's
// unless ?user=S). ?ended=true includes recently ended sessions.
func (s *Server) listSessions(admin bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		in := broker.SessionQuery{User: q.Get("user"), All: q.Get("all") == "true" || (admin && q.Get("user") == ""), Ended: q.Get("ended") == "true"}
		rs, err := s.Broker.Sessions(r.Context(), caller(r, admin), admin, in)
		if err != nil {
			s.logErr(r, err)
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, rs)
	}
}

// RevokeSessionsRequest is the body of POST /v1/sessions/revoke (and
// /admin/sessions/revoke): one session ID or every session of User, and
// with Grants their owners' live grants too.
type RevokeSessionsRequest struct {
	ID     string `json:"id,omitempty"`
	User   string `json:"user,omitempty"`
	Grants bool   `json:"grants,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// maxRevokeReason bounds the reason recorded in the trail.
const maxRevokeReason = 1 << 10

func (s *Server) revokeSessions(admin bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in RevokeSessionsRequest
		if !readJSON(w, r, &in) {
			return
		}
		if len(in.Reason) > maxRevokeReason {
			writeError(w, &broker.Error{Code: broker.CodeInvalid, Message: fmt.Sprintf("the reason is too long (%d bytes max)", maxRevokeReason)})
			return
		}
		res, err := s.Broker.RevokeSessions(r.Context(), caller(r, admin), admin, broker.RevokeSessions{ID: in.ID, User: in.User, Grants: in.Grants, Reason: in.Reason})
		if err != nil {
			s.logErr(r, err)
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	}
}

// CreateRequest is the body of POST /v1/requests.
type CreateRequest struct {
	Scopes []string `json:"scopes"`
	TTL    string   `json:"ttl,omitempty"` // Go duration, e.g. "30m"
	Reason string   `json:"reason,omitempty"`
}

func (s *Server) createRequest(w http.ResponseWriter, r *http.Request, who broker.Identity) {
	var in CreateRequest
	if !readJSON(w, r, &in) {
		return
	}
	var ttl time.Duration
	if in.TTL != "" {
		d, err := time.ParseDuration(in.TTL)
		if err != nil || d <= 0 {
			writeError(w, &broker.Error{Code: broker.CodeInvalid, Message: "ttl must be a positive duration such as 30m or 1h"})
			return
		}
		ttl = d
	}
	req, err := s.Broker.CreateRequest(r.Context(), who, broker.Ask{Scopes: in.Scopes, TTL: ttl, Reason: in.Reason})
	if err != nil {
		s.logErr(r, err)
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, req)
}

func (s *Server) listRequests(w http.ResponseWriter, r *http.Request, who broker.Identity) {
	rs, err := s.Broker.List(r.Context(), who, r.URL.Query().Get("pending") == "true")
	if err != nil {
		s.logErr(r, err)
		writeError(w, err)
		return
	}
	if rs == nil {
		rs = []*broker.Request{}
	}
	writeJSON(w, http.StatusOK, rs)
}

// MaxWait caps a long-poll on GET /v1/requests/{id}?wait=D.
const MaxWait = 55 * time.Second

func (s *Server) getRequest(w http.ResponseWriter, r *http.Request, who broker.Identity) {
	id := r.PathValue("id")
	if ws := r.URL.Query().Get("wait"); ws != "" {
		d, err := time.ParseDuration(ws)
		if err != nil || d < 0 {
			writeError(w, &broker.Error{Code: broker.CodeInvalid, Message: "wait must be a duration such as 30s"})
			return
		}
		// broker.Service.Stop ends the wait at shutdown.
		ctx, cancel := context.WithTimeout(r.Context(), min(d, MaxWait))
		defer cancel()
		req, err := s.Broker.Wait(ctx, who, id)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, req)
		return
	}
	req, err := s.Broker.Get(r.Context(), who, id)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, req)
}

// ReviewRequest is the body of approve and deny.
type ReviewRequest struct {
	Reason string   `json:"reason,omitempty"`
	Scopes []string `json:"scopes,omitempty"`
}

func (s *Server) review(approve bool) authedFunc {
	return func(w http.ResponseWriter, r *http.Request, who broker.Identity) {
		var in ReviewRequest
		if !readJSON(w, r, &in) {
			return
		}
		req, err := s.Broker.Review(r.Context(), who, r.PathValue("id"), approve, in.Reason, in.Scopes)
		if err != nil {
			s.logErr(r, err)
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, req)
	}
}

// TokenResponse is the body returned by the token endpoints.
type TokenResponse struct {
	Token     string          `json:"token"`
	ExpiresAt time.Time       `json:"expires_at"`
	Request   *broker.Request `json:"request"`
}

func (s *Server) token(w http.ResponseWriter, r *http.Request, who broker.Identity) {
	raw, req, err := s.Broker.Token(r.Context(), who, r.PathValue("id"))
	if err != nil {
		s.logErr(r, err)
		writeError(w, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, TokenResponse{Token: raw, ExpiresAt: *req.ExpiresAt, Request: req})
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request, who broker.Identity) {
	req, err := s.Broker.Revoke(r.Context(), who, r.PathValue("id"), false)
	if err != nil {
		s.logErr(r, err)
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, req)
}

func (s *Server) adminRevoke(w http.ResponseWriter, r *http.Request) {
	req, err := s.Broker.Revoke(r.Context(), AdminIdentity, r.PathValue("id"), true)
	if err != nil {
		s.logErr(r, err)
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, req)
}

// VaultEntry is what the API says about a vault entry: never the value.
type VaultEntry struct {
	Name        string    `json:"name"`
	Created     time.Time `json:"created"`
	Fingerprint string    `json:"fingerprint"`
}

func entryView(e vault.Entry) VaultEntry {
	return VaultEntry{Name: e.Name, Created: e.Created, Fingerprint: e.Fingerprint}
}

func (s *Server) vaultList(w http.ResponseWriter, r *http.Request) {
	es, err := s.AdminService.VaultList(r.Context())
	if err != nil {
		s.logErr(r, err)
		writeError(w, err)
		return
	}
	out := []VaultEntry{}
	for _, e := range es {
		out = append(out, entryView(e))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) vaultSet(w http.ResponseWriter, r *http.Request) {
	raw, ok := readBody(w, r)
	if !ok {
		return
	}
	e, err := s.AdminService.VaultSet(r.Context(), r.PathValue("name"), vault.NewSecret(string(raw)))
	if err != nil {
		s.logErr(r, err)
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, entryView(e))
}

func (s *Server) vaultRemove(w http.ResponseWriter, r *http.Request) {
	if err := s.AdminService.VaultRemove(r.Context(), r.PathValue("name")); err != nil {
		s.logErr(r, err)
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) keysList(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"active": s.Keys.ActiveKID(), "jwks": s.Keys.JWKS()})
}

// keysRotate rotates the signing key; ?retire_now=true withdraws every
// other key at once (broker.Admin.RetireKeysNow).
func (s *Server) keysRotate(w http.ResponseWriter, r *http.Request) {
	var out KeysRotation
	var err error
	switch v := r.URL.Query().Get("retire_now"); v {
	case "", "false":
		out.Active, err = s.AdminService.RotateKeys(r.Context())
	case "true":
		out.Active, out.Withdrawn, err = s.AdminService.RetireKeysNow(r.Context())
	default:
		err = &broker.Error{Code: broker.CodeInvalid, Message: "retire_now must be true or false"}
	}
	if err != nil {
		s.logErr(r, err)
		writeError(w, err)
		return
	}
	if out.Withdrawn == nil {
		out.Withdrawn = []string{}
	}
	out.JWKS = s.Keys.JWKS()
	writeJSON(w, http.StatusOK, out)
}

// KeysRotation is the answer of POST /admin/keys/rotate, and what
// `pamctl keys rotate -o json` prints: the new active kid, the kids
// withdrawn at once (retire_now; empty otherwise) and the JWKS now
// published.
type KeysRotation struct {
	Active    string     `json:"active"`
	Withdrawn []string   `json:"withdrawn"`
	JWKS      token.JWKS `json:"jwks"`
}

// storeBackup streams a consistent copy of the data store (see
// broker.Admin.Backup) with its exact Content-Length, so a copy cut short
// fails on the client. ?to= is where the client writes it (recorded only).
func (s *Server) storeBackup(w http.ResponseWriter, r *http.Request) {
	started := false
	_, err := s.AdminService.Backup(r.Context(), r.URL.Query().Get("to"), func(size int64) (io.Writer, error) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		started = true
		return w, nil
	})
	if err != nil {
		s.logErr(r, err)
		if !started {
			writeError(w, err)
		}
		// Headers are gone: the body ends short of Content-Length, which
		// the client reports as an incomplete copy.
	}
}

func (s *Server) emit(ctx context.Context, e *audit.Event) {
	if s.Audit == nil {
		return
	}
	// The audit log reports an outage once (with what to do) and turns
	// /readyz red; one line per lost event would flood the log.
	if err := s.Audit.Append(ctx, e); err != nil && s.Logger != nil {
		s.Logger.Debug("audit append failed", "type", e.Type, "err", err)
	}
}

func (s *Server) logErr(r *http.Request, err error) {
	if s.Logger == nil || broker.ErrorCode(err) != broker.CodeInternal {
		return
	}
	s.Logger.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
}

// maxUserAgent bounds what a client's User-Agent may put in the trail.
const maxUserAgent = 256

func clientOf(r *http.Request) audit.Client {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ua := r.UserAgent()
	if len(ua) > maxUserAgent {
		ua = ua[:maxUserAgent]
	}
	return audit.Client{RemoteAddr: host, UserAgent: ua}
}

// ErrorBody is the JSON shape of every API error.
type ErrorBody struct {
	Error struct {
		Code    broker.Code `json:"code"`
		Message string      `json:"message"`
		// StepUp details a step_up_required error (HTTP 401): log in at the
		// IdP again, then retry.
		StepUp *StepUpDetail `json:"step_up,omitempty"`
	} `json:"error"`
}

// StepUpDetail is the machine-readable part of a step_up_required error.
type StepUpDetail struct {
	Action string `json:"action"` // e.g. "approving"
	// MaxAgeSeconds is approvals.reauth_after: send it as the login's
	// max_age.
	MaxAgeSeconds int64 `json:"max_age_seconds"`
	// AuthTime is the caller's last IdP authentication, when known, and
	// AgeSeconds its age by the broker's clock.
	AuthTime   *time.Time `json:"auth_time,omitempty"`
	AgeSeconds int64      `json:"age_seconds,omitempty"`
	// NoAuthTime, when the session has no usable auth time, says why:
	// "agent_started" (it started an agent with pamctl exec) or
	// "no_auth_time" (the login's ID token had no auth_time).
	NoAuthTime string `json:"no_auth_time,omitempty"`
}

var statusOf = map[broker.Code]int{
	broker.CodeInvalid:         http.StatusBadRequest,
	broker.CodeUnauthenticated: http.StatusUnauthorized,
	broker.CodeStepUpRequired:  http.StatusUnauthorized,
	broker.CodeForbidden:       http.StatusForbidden,
	broker.CodeNotFound:        http.StatusNotFound,
	broker.CodeConflict:        http.StatusConflict,
	broker.CodePending:         http.StatusConflict,
	broker.CodeTooLarge:        http.StatusRequestEntityTooLarge,
	broker.CodeInternal:        http.StatusInternalServerError,
	broker.CodeUnavailable:     http.StatusServiceUnavailable,
}

func writeError(w http.ResponseWriter, err error) {
	var body ErrorBody
	body.Error.Code = broker.ErrorCode(err)
	body.Error.Message = broker.ErrorMessage(err)
	var su *broker.StepUpError
	if errors.As(err, &su) {
		d := &StepUpDetail{Action: su.Action, MaxAgeSeconds: int64(su.MaxAge / time.Second)}
		if !su.AuthTime.IsZero() {
			at := su.AuthTime.UTC()
			d.AuthTime, d.AgeSeconds = &at, int64(max(su.Now.Sub(su.AuthTime), 0)/time.Second)
		} else {
			d.NoAuthTime = su.NoAuthTime
		}
		body.Error.StepUp = d
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer error="insufficient_user_authentication", error_description="a more recent login is required", max_age=%d`, d.MaxAgeSeconds))
	}
	writeJSON(w, statusOf[body.Error.Code], body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// readBody returns the request body, which handle has read in full.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, &broker.Error{Code: broker.CodeInvalid, Message: "could not read the request body"})
		return nil, false
	}
	return raw, true
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	raw, ok := readBody(w, r)
	if !ok {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, &broker.Error{Code: broker.CodeInvalid, Message: "malformed JSON body: " + safeJSONErr(err)})
		return false
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return true // no body: the zero value, as before
	}
	if err := checkStrictJSON(raw, reflect.TypeOf(v)); err != nil {
		writeError(w, &broker.Error{Code: broker.CodeInvalid, Message: "malformed JSON body: " + safeJSONErr(err)})
		return false
	}
	return true
}

func safeJSONErr(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return "syntax error"
	}
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120]
	}
	return msg
}
