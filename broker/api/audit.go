package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/auditsink"
)

// Audit API:
//
//	GET /v1/audit/events?n=50&type=a,b&actor=A&grant=G&request=R&since=RFC3339
//	GET /v1/audit/events/{seq}
//	GET /v1/audit/follow?from=SEQ&...   server-sent events, one per audit event;
//	                                    reconnects resume with Last-Event-ID
//	GET /v1/audit/verify
//	GET /v1/audit/export                JSON Lines with the chain fields and signed head
//	GET /v1/audit/sinks                 each audit sink's cursor, lag and last error
//
// Reading the trail is itself audited (audit.read / audit.export).
func (s *Server) auditRoutes(mux *http.ServeMux, guard func(authedFunc) http.HandlerFunc) {
	handle(mux, "GET /v1/audit/events", 0, guard(s.auditEvents))
	handle(mux, "GET /v1/audit/events/{seq}", 0, guard(s.auditEvent))
	handle(mux, "GET /v1/audit/follow", 0, guard(s.auditFollow))
	handle(mux, "GET /v1/audit/verify", 0, guard(s.auditVerify))
	handle(mux, "GET /v1/audit/export", 0, guard(s.auditExport))
	handle(mux, "GET /v1/audit/sinks", 0, guard(s.auditSinks))
}

// ParseFilter reads an audit filter from query parameters.
func ParseFilter(q map[string][]string) (audit.Filter, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	f := audit.Filter{Actor: get("actor"), Issuer: get("issuer"), Grant: get("grant"), Request: get("request")}
	for _, t := range strings.Split(get("type"), ",") {
		if t = strings.TrimSpace(t); t != "" {
			f.Types = append(f.Types, audit.Type(t))
		}
	}
	if v := get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return f, fmt.Errorf("since must be an RFC 3339 time")
		}
		f.Since = t
	}
	return f, nil
}

// FilterQuery is the inverse of ParseFilter.
func FilterQuery(f audit.Filter) map[string]string {
	q := map[string]string{}
	var types []string
	for _, t := range f.Types {
		types = append(types, string(t))
	}
	if len(types) > 0 {
		q["type"] = strings.Join(types, ",")
	}
	for k, v := range map[string]string{"actor": f.Actor, "issuer": f.Issuer, "grant": f.Grant, "request": f.Request} {
		if v != "" {
			q[k] = v
		}
	}
	if !f.Since.IsZero() {
		q["since"] = f.Since.UTC().Format(time.RFC3339Nano)
	}
	return q
}

func (s *Server) auditRead(ctx context.Context, who broker.Identity, typ audit.Type, what string) {
	s.emit(ctx, &audit.Event{Type: typ, Actor: &audit.Actor{Subject: who.Subject, Email: who.Email, Groups: who.Groups, Issuer: who.Issuer, Kind: audit.ActorKind(who.Kind)}, Target: what})
}

func badRequest(w http.ResponseWriter, msg string) {
	writeError(w, &broker.Error{Code: broker.CodeInvalid, Message: msg})
}

// MaxEvents caps one page of events.
const MaxEvents = 10000

func (s *Server) auditEvents(w http.ResponseWriter, r *http.Request, who broker.Identity) {
	f, err := ParseFilter(r.URL.Query())
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	n := 50
	if v := r.URL.Query().Get("n"); v != "" {
		if n, err = strconv.Atoi(v); err != nil || n <= 0 || n > MaxEvents {
			badRequest(w, fmt.Sprintf("n must be between 1 and %d", MaxEvents))
			return
		}
	}
	// Keep the last n matches in a ring.
	ring := make([]audit.Event, 0, n)
	start := 0
	err = s.Audit.Range(r.Context(), 0, func(e audit.Event) bool {
		if !f.Match(e) {
			return true
		}
		if len(ring) < n {
			ring = append(ring, e)
		} else {
			ring[start] = e
			start = (start + 1) % n
		}
		return true
	})
	if err != nil {
		s.logErr(r, err)
		writeError(w, &broker.Error{Code: broker.CodeInternal, Message: "could not read the audit trail", Err: err})
		return
	}
	out := append(ring[start:len(ring):len(ring)], ring[:start]...)
	s.auditRead(r.Context(), who, audit.TypeAuditRead, r.URL.RawQuery)
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) auditEvent(w http.ResponseWriter, r *http.Request, who broker.Identity) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil {
		badRequest(w, "seq must be a number")
		return
	}
	e, err := s.Audit.Get(r.Context(), seq)
	if err != nil {
		writeError(w, &broker.Error{Code: broker.CodeNotFound, Message: fmt.Sprintf("no audit event %d", seq)})
		return
	}
	s.auditRead(r.Context(), who, audit.TypeAuditRead, "seq="+r.PathValue("seq"))
	writeJSON(w, http.StatusOK, e)
}

func (s *Server) auditFollow(w http.ResponseWriter, r *http.Request, who broker.Identity) {
	f, err := ParseFilter(r.URL.Query())
	if err != nil {
		badRequest(w, err.Error())
		return
	}
	var from uint64
	for _, v := range []string{r.Header.Get("Last-Event-ID"), r.URL.Query().Get("from")} {
		if v == "" {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			badRequest(w, "from must be a sequence number")
			return
		}
		if v == r.Header.Get("Last-Event-ID") {
			n++ // resume after the last event seen
		}
		from = n
		break
	}
	if from == 0 {
		st, err := s.Audit.Head(r.Context())
		if err != nil {
			writeError(w, &broker.Error{Code: broker.CodeInternal, Message: "could not read the audit trail", Err: err})
			return
		}
		from = st.Last.Seq + 1
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, &broker.Error{Code: broker.CodeInternal, Message: "streaming unsupported"})
		return
	}
	s.auditRead(r.Context(), who, audit.TypeAuditRead, "follow "+r.URL.RawQuery)
	ctx, cancel := s.untilStopping(r.Context())
	defer cancel()
	sub := s.Audit.Subscribe(ctx, from)
	defer sub.Cancel()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": following the audit trail\n\n")
	flusher.Flush()
	keepalive := time.NewTicker(followRecheck)
	defer keepalive.Stop()
	sess, hasSession := ctx.Value(sessKey{}).(broker.SessionInfo) // the admin socket has none
	for {
		select {
		case e, ok := <-sub.C:
			if !ok {
				if err := sub.Err(); err != nil && !errors.Is(err, context.Canceled) {
					fmt.Fprintf(w, "event: error\ndata: %s\n\n", jsonString(err.Error()))
					flusher.Flush()
				}
				return
			}
			if !f.Match(e) {
				continue
			}
			// Nothing is delivered once the session has ended: a revoked
			// or expired session gets no event written after it ended
			// (its own session.revoked included), not for up to
			// followRecheck. SessionValid reads the in-memory session, a
			// map lookup; the audit:read right (a store read) is
			// rechecked with the keepalive.
			if hasSession && s.Broker.SessionValid(ctx, sess.ID) != nil {
				return
			}
			raw, _ := json.Marshal(e)
			fmt.Fprintf(w, "id: %d\ndata: %s\n\n", e.Seq, raw)
			flusher.Flush()
		case <-keepalive.C:
			// The right to read may end while following: a session that
			// expires or is revoked, or an audit:read grant that is revoked,
			// ends the stream. (The admin socket has no session.)
			if hasSession && (s.Broker.SessionValid(ctx, sess.ID) != nil || s.Broker.CanKeepReadingAudit(ctx, who) != nil) {
				return
			}
			fmt.Fprint(w, ": keepalive\n\n")
			flusher.Flush()
		case <-ctx.Done():
			return
		}
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// followRecheck is how often a follower's right to read is checked again
// (and a keepalive comment sent).
const followRecheck = 5 * time.Second

// VerifyResult is the body of GET /v1/audit/verify.
type VerifyResult struct {
	OK     bool              `json:"ok"`
	Report audit.Report      `json:"report"`
	Break  *audit.BreakError `json:"break,omitempty"`
	Error  string            `json:"error,omitempty"`
}

func (s *Server) auditVerify(w http.ResponseWriter, r *http.Request, who broker.Identity) {
	rep, err := s.Audit.Verify(r.Context(), audit.KeyFunc(s.Keys.AnyPublicKey))
	res := VerifyResult{OK: err == nil, Report: rep}
	var be *audit.BreakError
	if errors.As(err, &be) {
		res.Break = be
		res.Error = be.Error()
	} else if err != nil {
		s.logErr(r, err)
		writeError(w, &broker.Error{Code: broker.CodeInternal, Message: "could not verify the audit trail", Err: err})
		return
	}
	s.auditRead(r.Context(), who, audit.TypeAuditRead, "verify")
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) auditExport(w http.ResponseWriter, r *http.Request, who broker.Identity) {
	var bounds [2]time.Time
	for i, k := range []string{"since", "until"} {
		if v := r.URL.Query().Get(k); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				badRequest(w, k+" must be an RFC 3339 time")
				return
			}
			bounds[i] = t
		}
	}
	s.auditRead(r.Context(), who, audit.TypeAuditExport, "export "+r.URL.RawQuery)
	w.Header().Set("Content-Type", "application/jsonl")
	if err := s.Audit.ExportRange(r.Context(), w, bounds[0], bounds[1]); err != nil {
		// Headers are gone; the truncated export fails verification, and the log says why.
		s.logErr(r, err)
	}
}

func (s *Server) auditSinks(w http.ResponseWriter, r *http.Request, who broker.Identity) {
	out := []auditsink.Status{}
	if s.Sinks != nil {
		out = append(out, s.Sinks()...)
	}
	s.auditRead(r.Context(), who, audit.TypeAuditRead, "sinks")
	writeJSON(w, http.StatusOK, out)
}

// untilStopping is ctx, also ended when the server starts to stop, so a
// long-lived stream (audit follow, a proxy's revocation stream) ends with
// the server rather than holding its shutdown.
func (s *Server) untilStopping(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	if s.Stopping != nil {
		go func() {
			select {
			case <-s.Stopping:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	return ctx, cancel
}
