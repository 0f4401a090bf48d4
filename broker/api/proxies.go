package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/link"
)

// MaxProxyAuditBody caps one audit shipment from a proxy
// (link.MaxAuditBatch events, each field-capped by the proxy and again
// by the broker).
const MaxProxyAuditBody = 16 << 20

// MaxHoldBody caps a held call's description: claims, rules, a ~1 KiB
// prompt excerpt, or a tool call's masked arguments, up to 8 KiB, twice
// (as the excerpt and on their own), each up to six times as long once
// JSON-escaped.
const MaxHoldBody = 256 << 10

// proxyRoutes mounts the API of local proxies (broker role): enrollment
// with a proxy:serve grant, then, for the enrolled proxy only, the
// revocation stream, sealed provider keys, configuration and audit
// shipping. Every route is session-authenticated like the rest of the API.
func (s *Server) proxyRoutes(mux *http.ServeMux) {
	if s.Proxies == nil {
		return
	}
	handle(mux, "POST /v1/proxies/enroll", MaxRequestBody, s.authed(s.proxyEnroll))
	handle(mux, "GET /v1/proxies/stream", 0, s.enrolled(s.proxyStream))
	handle(mux, "GET /v1/proxies/keys", 0, s.enrolled(func(w http.ResponseWriter, r *http.Request, e *link.Enrollment) {
		sk, err := s.Proxies.SealedKeys(r.Context(), e)
		if err != nil {
			writeError(w, proxyErr(err))
			return
		}
		writeJSON(w, http.StatusOK, sk)
	}))
	handle(mux, "GET /v1/proxies/config", 0, s.enrolled(func(w http.ResponseWriter, r *http.Request, _ *link.Enrollment) {
		writeJSON(w, http.StatusOK, s.Proxies.Config())
	}))
	handle(mux, "POST /v1/proxies/config", MaxRequestBody, s.enrolled(func(w http.ResponseWriter, r *http.Request, e *link.Enrollment) {
		var in struct {
			Version string `json:"version"`
		}
		if !readJSON(w, r, &in) {
			return
		}
		s.Proxies.ReportConfig(r.Context(), e.ID, in.Version)
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	}))
	handle(mux, "POST /v1/proxies/hold", MaxHoldBody, s.enrolled(func(w http.ResponseWriter, r *http.Request, e *link.Enrollment) {
		var in link.HoldRequest
		if !readJSON(w, r, &in) {
			return
		}
		d, err := s.Proxies.Hold(r.Context(), e, in)
		if err != nil {
			s.logErr(r, err)
			writeError(w, proxyErr(err))
			return
		}
		writeJSON(w, http.StatusOK, d)
	}))
	handle(mux, "POST /v1/proxies/audit", MaxProxyAuditBody, s.enrolled(func(w http.ResponseWriter, r *http.Request, e *link.Enrollment) {
		var in link.AuditBatch
		if !readJSON(w, r, &in) {
			return
		}
		// A refused shipment (ErrInvalid: a type a proxy does not record,
		// a sequence gap, a malformed event) is a 400 with nothing
		// appended; only a failing append after some went in is a 200
		// acknowledging those.
		ack, err := s.Proxies.Ship(r.Context(), e, in)
		if err != nil {
			s.logErr(r, err)
			if ack.Acked == 0 || errors.Is(err, link.ErrInvalid) {
				writeError(w, proxyErr(err))
				return
			}
		}
		writeJSON(w, http.StatusOK, ack)
	}))
}

func (s *Server) proxyAdminRoutes(mux *http.ServeMux) {
	if s.Proxies == nil {
		return
	}
	handle(mux, "GET /admin/proxies", 0, func(w http.ResponseWriter, r *http.Request) {
		es, err := s.Proxies.List(r.Context())
		if err != nil {
			writeError(w, proxyErr(err))
			return
		}
		if es == nil {
			es = []*link.Enrollment{}
		}
		writeJSON(w, http.StatusOK, es)
	})
	handle(mux, "POST /admin/proxies/{id}/revoke", MaxEmptyBody, func(w http.ResponseWriter, r *http.Request) {
		e, err := s.Proxies.Revoke(r.Context(), r.PathValue("id"), adminActor(), broker.ViaSocket)
		if err != nil {
			writeError(w, proxyErr(err))
			return
		}
		writeJSON(w, http.StatusOK, e)
	})
}

func adminActor() *audit.Actor {
	return &audit.Actor{Subject: AdminIdentity.Subject, Issuer: AdminIdentity.Issuer, Kind: audit.ActorKind(AdminIdentity.Kind)}
}

func linkCaller(who broker.Identity) link.Caller {
	return link.Caller{Subject: who.Subject, Issuer: who.Issuer, Kind: who.Kind}
}

func (s *Server) proxyEnroll(w http.ResponseWriter, r *http.Request, who broker.Identity) {
	var in link.EnrollRequest
	if !readJSON(w, r, &in) {
		return
	}
	e, err := s.Proxies.Enroll(r.Context(), linkCaller(who), in)
	if err != nil {
		s.logErr(r, err)
		writeError(w, proxyErr(err))
		return
	}
	writeJSON(w, http.StatusOK, e)
}

type enrolledFunc func(w http.ResponseWriter, r *http.Request, e *link.Enrollment)

// enrolled authenticates the session and the enrollment it names.
func (s *Server) enrolled(h enrolledFunc) http.HandlerFunc {
	return s.authed(func(w http.ResponseWriter, r *http.Request, who broker.Identity) {
		e, err := s.Proxies.Authorize(r.Context(), linkCaller(who), r.Header.Get(link.HeaderProxyID))
		if err != nil {
			writeError(w, proxyErr(err))
			return
		}
		h(w, r, e)
	})
}

// proxyStream is Server-Sent Events: "state" messages (link.StreamState),
// and one "error" message in the API's error shape when the broker ends
// the stream (the enrollment was revoked or ended).
func (s *Server) proxyStream(w http.ResponseWriter, r *http.Request, e *link.Enrollment) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	ctx, cancel := s.untilStopping(r.Context())
	defer cancel()
	hb, err := time.ParseDuration(r.URL.Query().Get("heartbeat")) // clamped by Stream
	if err != nil || hb <= 0 {
		hb = link.Heartbeat
	}
	err = s.Proxies.Stream(ctx, e, hb, func(st link.StreamState) error {
		raw, err := json.Marshal(st)
		if err != nil {
			return err
		}
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(w, "event: state\ndata: %s\n\n", raw); err != nil {
			return err
		}
		return rc.Flush()
	})
	if err != nil && ctx.Err() == nil {
		var body ErrorBody
		be := proxyErr(err)
		body.Error.Code, body.Error.Message = broker.ErrorCode(be), broker.ErrorMessage(be)
		raw, _ := json.Marshal(body)
		fmt.Fprintf(w, "event: error\ndata: %s\n\n", raw)
		_ = rc.Flush()
	}
}

// proxyErr maps the registry's errors to the API's codes.
func proxyErr(err error) error {
	var be *broker.Error
	switch {
	case errors.As(err, &be):
		return err
	case errors.Is(err, link.ErrNotFound):
		return &broker.Error{Code: broker.CodeNotFound, Message: err.Error()}
	case errors.Is(err, link.ErrForbidden):
		return &broker.Error{Code: broker.CodeForbidden, Message: err.Error()}
	case errors.Is(err, link.ErrInvalid):
		return &broker.Error{Code: broker.CodeInvalid, Message: err.Error()}
	}
	return err
}
