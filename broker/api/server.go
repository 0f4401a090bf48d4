// Package api is the broker's HTTP interface: the JSON API the CLI talks to
// over TCP (authenticated with a broker session), the JWKS, and the admin
// API served only on the owner-only Unix socket (vault, keys). It translates
// HTTP to broker.Service calls and broker errors to status codes; it holds no
// logic of its own. Client is the matching Go client used by the CLI.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
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
	Version  string       `json:"version"`
	Dev      bool         `json:"dev"`
	ProxyURL string       `json:"proxy_url"` // base URL agents use, ending in /v1
	Issuers  []IssuerInfo `json:"issuers"`
}

// AdminIdentity is who acts through the admin socket: the OS user that owns
// the data directory.
var AdminIdentity = broker.Identity{Subject: "local-admin", Issuer: "unix-socket", Kind: "user"}

// Server serves the broker API.
type Server struct {
	Broker *broker.Service
	Vault  *vault.Vault
	Keys   *token.Keyring
	Audit  audit.Log
	Info   func() Info
	Logger *slog.Logger
	// Extra lets serve mount more handlers on the public mux (the dev issuer).
	Extra map[string]http.Handler
	// Stopping is closed when the server starts shutting down: audit
	// followers end instead of holding up a graceful shutdown.
	Stopping <-chan struct{}
}

// MaxBody caps API request bodies.
const MaxBody = 1 << 20

// Public is the TCP handler: health, JWKS, login and the session-authenticated API.
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
	return mux
}

// Admin is the Unix-socket handler: everything Public has plus /admin.
// Reaching the socket (mode 0600) is the authentication.
func (s *Server) Admin() http.Handler {
	mux := http.NewServeMux()
	s.common(mux)
	mux.HandleFunc("GET /admin/vault", s.vaultList)
	mux.HandleFunc("PUT /admin/vault/{name}", s.vaultSet)
	mux.HandleFunc("DELETE /admin/vault/{name}", s.vaultRemove)
	mux.HandleFunc("GET /admin/keys", s.keysList)
	mux.HandleFunc("POST /admin/keys/rotate", s.keysRotate)
	mux.HandleFunc("POST /admin/grants/{id}/revoke", s.adminRevoke)
	s.auditRoutes(mux, func(h authedFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { h(w, r, AdminIdentity) }
	})
	return mux
}

func (s *Server) common(mux *http.ServeMux) {
	ok := func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}
	mux.HandleFunc("GET /healthz", ok)
	mux.HandleFunc("GET /readyz", ok)
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		writeJSON(w, http.StatusOK, s.Keys.JWKS())
	})
	mux.HandleFunc("GET /v1/info", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, s.Info()) })
	mux.HandleFunc("POST /v1/login", s.login)
	mux.HandleFunc("GET /v1/whoami", s.authed(s.whoami))
	mux.HandleFunc("POST /v1/logout", s.authed(func(w http.ResponseWriter, r *http.Request, who broker.Identity) {
		s.Broker.Logout(r.Context(), who, clientOf(r))
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("POST /v1/requests", s.authed(s.createRequest))
	mux.HandleFunc("GET /v1/requests", s.authed(s.listRequests))
	mux.HandleFunc("GET /v1/requests/{id}", s.authed(s.getRequest))
	mux.HandleFunc("POST /v1/requests/{id}/approve", s.authed(s.review(true)))
	mux.HandleFunc("POST /v1/requests/{id}/deny", s.authed(s.review(false)))
	mux.HandleFunc("POST /v1/requests/{id}/token", s.authed(s.token))
	mux.HandleFunc("POST /v1/token", s.authed(s.token))
	mux.HandleFunc("POST /v1/grants/{id}/revoke", s.authed(s.revoke))
}

// expKey holds the session's expiry; absent on the admin socket.
type expKey struct{}

type authedFunc func(w http.ResponseWriter, r *http.Request, who broker.Identity)

func (s *Server) authed(h authedFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || raw == "" {
			writeError(w, &broker.Error{Code: broker.CodeUnauthenticated, Message: "not logged in: run `pamctl login`"})
			return
		}
		who, exp, err := s.Broker.Authenticate(raw)
		if err != nil {
			writeError(w, err)
			return
		}
		ctx := context.WithValue(r.Context(), expKey{}, exp)
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
	ExpiresAt time.Time `json:"expires_at"`
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request, who broker.Identity) {
	exp, _ := r.Context().Value(expKey{}).(time.Time)
	writeJSON(w, http.StatusOK, WhoAmI{Identity: who, ExpiresAt: exp})
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
	es, err := s.Vault.List(r.Context())
	if err != nil {
		s.logErr(r, err)
		writeError(w, &broker.Error{Code: broker.CodeInternal, Message: "could not list the vault", Err: err})
		return
	}
	out := []VaultEntry{}
	for _, e := range es {
		out = append(out, entryView(e))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) vaultSet(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		writeError(w, &broker.Error{Code: broker.CodeInvalid, Message: "secret too large (64 KiB max)"})
		return
	}
	name := r.PathValue("name")
	if err := vault.ValidateName(name); err != nil {
		writeError(w, &broker.Error{Code: broker.CodeInvalid, Message: err.Error()})
		return
	}
	secret := vault.NewSecret(string(raw))
	if secret.Empty() {
		writeError(w, &broker.Error{Code: broker.CodeInvalid, Message: "the secret is empty"})
		return
	}
	e, err := s.Vault.Set(r.Context(), name, secret)
	if err != nil {
		s.logErr(r, err)
		writeError(w, &broker.Error{Code: broker.CodeInternal, Message: "could not store the secret", Err: err})
		return
	}
	s.emit(r.Context(), &audit.Event{Type: audit.TypeVaultSet, Actor: adminActor(), Target: name, Details: map[string]string{"fingerprint": e.Fingerprint}})
	writeJSON(w, http.StatusOK, entryView(e))
}

func (s *Server) vaultRemove(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := s.Vault.Remove(r.Context(), name); err != nil {
		if errors.Is(err, vault.ErrNotFound) {
			writeError(w, &broker.Error{Code: broker.CodeNotFound, Message: "no vault entry named " + name + " (see: pamctl vault ls)"})
			return
		}
		s.logErr(r, err)
		writeError(w, &broker.Error{Code: broker.CodeInternal, Message: "could not remove the entry", Err: err})
		return
	}
	s.emit(r.Context(), &audit.Event{Type: audit.TypeVaultRemoved, Actor: adminActor(), Target: name})
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) keysList(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"active": s.Keys.ActiveKID(), "jwks": s.Keys.JWKS()})
}

func (s *Server) keysRotate(w http.ResponseWriter, r *http.Request) {
	kid, err := s.Keys.Rotate(r.Context())
	if err != nil {
		s.logErr(r, err)
		writeError(w, &broker.Error{Code: broker.CodeInternal, Message: "could not rotate the signing key", Err: err})
		return
	}
	s.emit(r.Context(), &audit.Event{Type: audit.TypeKeyRotated, Actor: adminActor(), Target: kid})
	writeJSON(w, http.StatusOK, map[string]any{"active": kid, "jwks": s.Keys.JWKS()})
}

func adminActor() *audit.Actor {
	return &audit.Actor{Subject: AdminIdentity.Subject, Issuer: AdminIdentity.Issuer, Kind: audit.KindUser}
}

func (s *Server) emit(ctx context.Context, e *audit.Event) {
	if s.Audit == nil {
		return
	}
	if err := s.Audit.Append(ctx, e); err != nil && s.Logger != nil {
		s.Logger.Error("audit append failed", "type", e.Type, "err", err)
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
	} `json:"error"`
}

var statusOf = map[broker.Code]int{
	broker.CodeInvalid:         http.StatusBadRequest,
	broker.CodeUnauthenticated: http.StatusUnauthorized,
	broker.CodeForbidden:       http.StatusForbidden,
	broker.CodeNotFound:        http.StatusNotFound,
	broker.CodeConflict:        http.StatusConflict,
	broker.CodePending:         http.StatusConflict,
	broker.CodeInternal:        http.StatusInternalServerError,
}

func writeError(w http.ResponseWriter, err error) {
	var body ErrorBody
	body.Error.Code = broker.ErrorCode(err)
	body.Error.Message = broker.ErrorMessage(err)
	writeJSON(w, statusOf[body.Error.Code], body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, &broker.Error{Code: broker.CodeInvalid, Message: "malformed JSON body: " + safeJSONErr(err)})
		return false
	}
	return true
}

func safeJSONErr(err error) string {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return "body too large"
	}
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
