package ui

import (
	"crypto/hmac"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/safetext"
)

// pageData is what every page template gets.
type pageData struct {
	Title string
	Who   *broker.Identity
	CSRF  string
	Nav   string // the active navigation entry
	Flash string
	// Live makes the page follow /ui/events (the queue).
	Live bool
	Data any
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, ss *session)

// authed finds the caller's session, or sends the browser to log in and
// come back here.
func (u *UI) authed(w http.ResponseWriter, r *http.Request) *session {
	ss := u.session(r)
	if ss == nil {
		next := r.URL.RequestURI()
		if r.Method != http.MethodGet {
			next = "/ui/"
		}
		http.Redirect(w, r, "/ui/login?next="+url.QueryEscape(localPath(next)), http.StatusSeeOther)
		return nil
	}
	return ss
}

// page serves a GET page behind the session.
func (u *UI) page(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ss := u.authed(w, r); ss != nil {
			h(w, r, ss)
		}
	}
}

// post serves a state-changing form: same origin, capped body, the
// session's CSRF token. Anything else is refused before the handler runs.
func (u *UI) post(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if why := u.sameOrigin(r); why != "" {
			u.c.Logger.Warn("ui: refused a cross-origin form post", "why", why, "path", r.URL.Path)
			u.fail(w, r, http.StatusForbidden, "Refused: this form did not come from this site", "("+clip(why, 120)+") Open the page again and submit it from there.")
			return
		}
		if r.ContentLength > MaxFormBody {
			w.Header().Set("Connection", "close")
			u.fail(w, r, http.StatusRequestEntityTooLarge, "The form is too large", fmt.Sprintf("%d KiB at most.", MaxFormBody>>10))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxFormBody)
		if err := r.ParseForm(); err != nil {
			w.Header().Set("Connection", "close")
			u.fail(w, r, http.StatusBadRequest, "The form could not be read", "Open the page again and submit it from there.")
			return
		}
		_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
		ss := u.session(r)
		if ss == nil {
			u.fail(w, r, http.StatusUnauthorized, "You are not logged in", "Your session ended. Log in again, then repeat the action.")
			return
		}
		if !ss.validCSRF(r.PostForm.Get("csrf")) {
			u.fail(w, r, http.StatusForbidden, "Refused: the form's security token is missing or stale", "Open the page again and submit it from there.")
			return
		}
		h(w, r, ss)
	}
}

// fresh reports whether the session's IdP authentication is recent enough
// for action (approvals.reauth_after), as the broker will judge it.
func (u *UI) fresh(ss *session, action string) bool {
	return u.c.Service.StepUp(ss.who, action) == nil
}

// stepUp sends the browser through the IdP for a fresh authentication,
// back to next afterwards.
func (u *UI) stepUp(w http.ResponseWriter, r *http.Request, next string) {
	http.Redirect(w, r, "/ui/login?reauth=1&next="+url.QueryEscape(localPath(next)), http.StatusSeeOther)
}

// queueItem is a row of the queue and of "my requests".
type queueItem struct {
	R         *broker.Request
	Requester string
	What      string // scopes, or the held call's rule, model, method and path
	Approvals string
	Age       string
}

func (u *UI) rowOf(r *broker.Request, now time.Time) queueItem {
	q := queueItem{R: r, Requester: person(r.Requester), Approvals: fmt.Sprintf("%d/%d", r.Approvals(), max(r.Approval.Count, 1)), Age: ago(now, r.CreatedAt)}
	if r.Kind == broker.KindPrompt && r.Prompt != nil {
		// The model is the agent's word: one holding " · " is quoted.
		q.What = "held call · rule " + r.Prompt.Rule + " · " + safetext.Join([]string{r.Prompt.Model}, " · ", "") + " · " + r.Prompt.Call()
	} else {
		q.What = strings.Join(r.Scopes, " ")
	}
	return q
}

// reviewable reports whether who may decide r now: pending, an approver
// under the rules in force, not the requester, not already reviewed.
func (u *UI) reviewable(r *broker.Request, who broker.Identity) (bool, string) {
	if r.State != broker.StatePending {
		return false, "this request is " + string(r.State)
	}
	if r.Requester.Same(who) {
		return false, "you made this request; someone else must review it"
	}
	for _, rv := range r.Reviews {
		if rv.Reviewer.Same(who) {
			return false, "you have reviewed this request; another approver must review it"
		}
	}
	return u.c.Service.CanReview(r, who)
}

func (u *UI) queue(w http.ResponseWriter, r *http.Request, ss *session) {
	rs, err := u.c.Service.List(r.Context(), ss.who, true)
	if err != nil {
		u.serviceError(w, r, err)
		return
	}
	now := u.c.Now()
	var rows []queueItem
	for _, req := range rs {
		if ok, _ := u.reviewable(req, ss.who); ok {
			rows = append(rows, u.rowOf(req, now))
		}
	}
	u.render(w, r, http.StatusOK, "queue", ss, pageData{Title: "Pending approvals", Nav: "queue", Live: true, Data: rows})
}

func (u *UI) mine(w http.ResponseWriter, r *http.Request, ss *session) {
	rs, err := u.c.Service.List(r.Context(), ss.who, false)
	if err != nil {
		u.serviceError(w, r, err)
		return
	}
	now := u.c.Now()
	var rows []queueItem
	for _, req := range rs {
		if req.Requester.Same(ss.who) {
			rows = append(rows, u.rowOf(req, now))
		}
	}
	u.render(w, r, http.StatusOK, "mine", ss, pageData{Title: "My requests and grants", Nav: "mine", Data: rows})
}

// itemView is one request's page.
type itemView struct {
	queueItem
	Reviews   []reviewView
	Terms     string
	CanDecide bool
	WhyNot    string
	CanRevoke bool
	Fresh     bool // no step-up needed before deciding
	// NoAuthTime: the session's IdP sent no auth_time, so logging in
	// again there cannot make it fresh (the page says what to do).
	NoAuthTime bool
	Done       string
}

type reviewView struct {
	Who, Decision, Reason, Scopes, At string
}

func (u *UI) item(w http.ResponseWriter, r *http.Request, ss *session) {
	req, err := u.c.Service.Get(r.Context(), ss.who, r.PathValue("id"))
	if err != nil {
		u.serviceError(w, r, err)
		return
	}
	v := itemView{queueItem: u.rowOf(req, u.c.Now()), Fresh: u.fresh(ss, broker.ActionApprove), NoAuthTime: ss.who.NoAuthTime == broker.NoAuthTimeIdP}
	v.CanDecide, v.WhyNot = u.reviewable(req, ss.who)
	if !v.CanDecide && v.WhyNot == "" {
		v.WhyNot = "you are not an approver of this request"
	}
	v.CanRevoke = req.Kind == broker.KindAccess && req.State == broker.StateApproved
	v.Terms = req.Approval.Approvers.String()
	if req.Approval.Count > 1 {
		v.Terms = fmt.Sprintf("%d distinct approvers from %s", req.Approval.Count, v.Terms)
	}
	for _, rv := range req.Reviews {
		d := "approved"
		if !rv.Approve {
			d = "denied"
		}
		v.Reviews = append(v.Reviews, reviewView{Who: person(rv.Reviewer), Decision: d, Reason: rv.Reason, Scopes: strings.Join(rv.Scopes, " "), At: rv.At.UTC().Format("2006-01-02 15:04:05 UTC")})
	}
	switch d := r.URL.Query().Get("done"); d {
	case "approved", "denied", "revoked", "reviewed":
		v.Done = d
	}
	title := "Access request"
	if req.Kind == broker.KindPrompt {
		title = "Held call"
	}
	u.render(w, r, http.StatusOK, "item", ss, pageData{Title: title + " " + req.ID, Nav: "queue", Data: v})
}

// maxReason matches the API's bound on a review reason (policy: 1 KiB).
const maxReason = 1 << 10

func (u *UI) decide(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	back := "/ui/requests/" + url.PathEscape(id)
	if !u.fresh(ss, broker.ActionApprove) {
		u.stepUp(w, r, back)
		return
	}
	f := r.PostForm
	var approve bool
	switch f.Get("decision") {
	case "approve":
		approve = true
	case "deny":
	default:
		u.fail(w, r, http.StatusBadRequest, "Choose approve or deny", "")
		return
	}
	reason := strings.TrimSpace(f.Get("reason"))
	if len(reason) > maxReason {
		u.fail(w, r, http.StatusBadRequest, "The reason is too long", fmt.Sprintf("%d bytes at most.", maxReason))
		return
	}
	var narrow []string
	if approve && f.Get("narrow") == "1" {
		narrow = f["scope"]
		if len(narrow) == 0 {
			u.fail(w, r, http.StatusBadRequest, "Pick at least one scope to approve", "To refuse every scope, deny the request.")
			return
		}
	}
	req, err := u.c.Service.Review(r.Context(), ss.who, id, approve, reason, narrow)
	if err != nil {
		if isStepUp(err) {
			u.stepUp(w, r, back)
			return
		}
		u.serviceError(w, r, err)
		return
	}
	done := "reviewed"
	switch req.State {
	case broker.StateApproved:
		done = "approved"
	case broker.StateDenied:
		done = "denied"
	}
	http.Redirect(w, r, back+"?done="+done, http.StatusSeeOther)
}

func (u *UI) revoke(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	back := "/ui/requests/" + url.PathEscape(id)
	req, err := u.c.Service.Get(r.Context(), ss.who, id)
	if err != nil {
		u.serviceError(w, r, err)
		return
	}
	// Revoking someone else's grant is a sensitive action; one's own is not.
	if !req.Requester.Same(ss.who) && !u.fresh(ss, broker.ActionRevokeOther) {
		u.stepUp(w, r, back)
		return
	}
	if _, err := u.c.Service.Revoke(r.Context(), ss.who, id, false); err != nil {
		if isStepUp(err) {
			u.stepUp(w, r, back)
			return
		}
		u.serviceError(w, r, err)
		return
	}
	http.Redirect(w, r, back+"?done=revoked", http.StatusSeeOther)
}

// auditRow is an event as the audit view shows it.
type auditRow struct {
	E       audit.Event
	Actor   string
	Time    string
	Summary string
}

type auditView struct {
	Type, Actor, Grant, Since string
	Rows                      []auditRow
	Grant1                    string // the timeline's grant
	Error                     string
}

// maxAuditRows bounds one page of the audit view.
const maxAuditRows = 200

func (u *UI) auditAllowed(w http.ResponseWriter, r *http.Request, ss *session) bool {
	if err := u.c.Service.CanReadAudit(r.Context(), ss.who); err != nil {
		if isStepUp(err) {
			u.stepUp(w, r, r.URL.RequestURI())
			return false
		}
		u.serviceError(w, r, err)
		return false
	}
	return true
}

// fromElsewhere says why r, a GET that would read the trail, did not come
// from this UI or from the person (address bar, bookmark), or "" when it
// did. Reading the trail writes an audit.read event in the person's name,
// so a page elsewhere (another site, or a sibling subdomain) must not make
// the browser read it by linking or redirecting to it: Sec-Fetch-Site
// cross-site or same-site, or, from a browser that sends no fetch
// metadata, an Origin or Referer that is not the UI's.
func (u *UI) fromElsewhere(r *http.Request) string {
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "same-origin", "none":
		return ""
	case "":
	default:
		return "Sec-Fetch-Site: " + site
	}
	if o := r.Header.Get("Origin"); o != "" && !strings.EqualFold(o, u.origin) {
		return "Origin " + o
	}
	if ref := r.Header.Get("Referer"); ref != "" && !strings.EqualFold(origin(ref), u.origin) {
		return "a link on another site"
	}
	return ""
}

// readFromElsewhere is fromElsewhere for a view that reads the trail,
// except that it takes, once, the return from a login started on this
// site (the pamctl-next cookie the callback set for this session and this
// page: afterLoginMark); the cookie is cleared whenever such a view is
// opened, taken or not.
func (u *UI) readFromElsewhere(w http.ResponseWriter, r *http.Request, ss *session) string {
	mark := u.cookie(r, "pamctl-next")
	if mark != "" {
		u.setCookie(w, "pamctl-next", "", 0)
	}
	why := u.fromElsewhere(r)
	if why != "" && mark != "" && hmac.Equal([]byte(mark), []byte(afterLoginMark(ss.csrf, localPath(r.URL.RequestURI())))) {
		return ""
	}
	return why
}

// confirmView is the page that asks for a click on this site first.
type confirmView struct{ Why, Next, Action string }

// confirmHere answers a GET that came from elsewhere (fromElsewhere) with
// a page that reads nothing and links to the same page: the person's
// click on it comes from this site.
func (u *UI) confirmHere(w http.ResponseWriter, r *http.Request, ss *session, why, action string) {
	u.c.Logger.Info("ui: asked to confirm a read that came from elsewhere", "why", why, "path", r.URL.Path)
	u.render(w, r, http.StatusForbidden, "confirm", ss, pageData{Title: "Open the audit trail?", Nav: "audit", Data: confirmView{
		Why:    "A page on another site (" + clip(why, 120) + ") sent you here. Reading the audit trail is recorded in your name, so pamctl reads it only when you ask from this site.",
		Next:   localPath(r.URL.RequestURI()),
		Action: action,
	}})
}

func (u *UI) auditView(w http.ResponseWriter, r *http.Request, ss *session) {
	if why := u.readFromElsewhere(w, r, ss); why != "" {
		u.confirmHere(w, r, ss, why, "Open the audit trail")
		return
	}
	if !u.auditAllowed(w, r, ss) {
		return
	}
	q := r.URL.Query()
	v := auditView{Type: clip(q.Get("type"), 200), Actor: clip(q.Get("actor"), 200), Grant: clip(q.Get("grant"), 100), Since: clip(q.Get("since"), 40)}
	f := audit.Filter{Actor: v.Actor, Grant: v.Grant}
	for t := range strings.SplitSeq(v.Type, ",") {
		if t = strings.TrimSpace(t); t != "" {
			f.Types = append(f.Types, audit.Type(t))
		}
	}
	if v.Since != "" {
		t, err := parseSince(v.Since, u.c.Now())
		if err != nil {
			v.Error = err.Error()
			u.render(w, r, http.StatusBadRequest, "audit", ss, pageData{Title: "Audit trail", Nav: "audit", Data: v})
			return
		}
		f.Since = t
	}
	rows, err := u.lastEvents(r, f, "")
	if err != nil {
		u.serviceError(w, r, err)
		return
	}
	v.Rows = rows
	u.emit(r.Context(), &audit.Event{Type: audit.TypeAuditRead, Actor: actorOf(ss.who), Target: clip(r.URL.RawQuery, 512), Details: map[string]string{"via": "web"}})
	u.render(w, r, http.StatusOK, "audit", ss, pageData{Title: "Audit trail", Nav: "audit", Data: v})
}

func (u *UI) timeline(w http.ResponseWriter, r *http.Request, ss *session) {
	if why := u.readFromElsewhere(w, r, ss); why != "" {
		u.confirmHere(w, r, ss, why, "Open the timeline")
		return
	}
	if !u.auditAllowed(w, r, ss) {
		return
	}
	id := clip(r.PathValue("id"), 100)
	rows, err := u.lastEvents(r, audit.Filter{}, id)
	if err != nil {
		u.serviceError(w, r, err)
		return
	}
	u.emit(r.Context(), &audit.Event{Type: audit.TypeAuditRead, Actor: actorOf(ss.who), Target: "grant=" + id, Details: map[string]string{"via": "web"}})
	u.render(w, r, http.StatusOK, "timeline", ss, pageData{Title: "Timeline of " + id, Nav: "audit", Data: auditView{Grant1: id, Rows: rows}})
}

// lastEvents returns the last maxAuditRows events matching f, or, with
// grant set, every event about that grant or request (a timeline), oldest
// first.
func (u *UI) lastEvents(r *http.Request, f audit.Filter, grant string) ([]auditRow, error) {
	ring := make([]audit.Event, 0, maxAuditRows)
	start := 0
	err := u.c.Audit.Range(r.Context(), 0, func(e audit.Event) bool {
		if grant != "" {
			if e.Grant != grant && e.Request != grant && e.Review != grant {
				return true
			}
		} else if !f.Match(e) {
			return true
		}
		if len(ring) < maxAuditRows {
			ring = append(ring, e)
		} else {
			ring[start] = e
			start = (start + 1) % maxAuditRows
		}
		return true
	})
	if err != nil {
		return nil, &broker.Error{Code: broker.CodeInternal, Message: "could not read the audit trail", Err: err}
	}
	evs := append(ring[start:len(ring):len(ring)], ring[:start]...)
	rows := make([]auditRow, 0, len(evs))
	for _, e := range evs {
		row := auditRow{E: e, Actor: "pamctl", Time: e.Time.UTC().Format("2006-01-02 15:04:05")}
		if e.Actor != nil {
			row.Actor = safetext.Party(e.Actor.Display, e.Actor.Subject)
		}
		var parts []string
		for i, s := range []string{strings.TrimSpace(e.Decision + " " + strings.Join(e.Reasons, ", ")), e.Target, e.Model, e.Error} {
			if s == "" {
				continue
			}
			if i == 1 || i == 2 { // a target or model the agent chose: quoted if it holds " · " (the error is last)
				s = safetext.Join([]string{s}, " · ", "")
			}
			parts = append(parts, s)
		}
		row.Summary = strings.Join(parts, " · ")
		rows = append(rows, row)
	}
	if grant == "" {
		slices.Reverse(rows) // newest first in the trail view
	}
	return rows, nil
}

// parseSince reads the audit view's since: RFC 3339 or a duration ago
// (30m, 24h, 7d), as the CLI's --since.
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(d, "%d", &n); err == nil && n > 0 && n < 100000 && fmt.Sprint(n) == d {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, errors.New("since must be an RFC 3339 time or a duration such as 30m, 24h or 7d")
}

// serviceError shows a broker error as a page with the matching status.
func (u *UI) serviceError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusInternalServerError
	switch broker.ErrorCode(err) {
	case broker.CodeInvalid:
		status = http.StatusBadRequest
	case broker.CodeUnauthenticated:
		status = http.StatusUnauthorized
	case broker.CodeForbidden:
		status = http.StatusForbidden
	case broker.CodeNotFound:
		status = http.StatusNotFound
	case broker.CodeConflict:
		status = http.StatusConflict
	}
	if status == http.StatusInternalServerError {
		u.c.Logger.Error("ui: broker error", "path", r.URL.Path, "err", err)
	}
	msg := broker.ErrorMessage(err)
	if errors.Is(err, broker.ErrNotFound) {
		msg = "There is no such request, or you may not see it."
	}
	u.fail(w, r, status, http.StatusText(status), msg)
}

// fail renders an error page.
func (u *UI) fail(w http.ResponseWriter, r *http.Request, status int, title, detail string) {
	ss := u.session(r)
	u.render(w, r, status, "error", ss, pageData{Title: title, Data: detail})
}

func (u *UI) render(w http.ResponseWriter, r *http.Request, status int, name string, ss *session, d pageData) {
	if ss != nil {
		who := ss.who
		d.Who, d.CSRF = &who, ss.csrf
	}
	t := u.pages[name]
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout", d); err != nil {
		u.c.Logger.Error("ui: render", "page", name, "err", err)
		http.Error(w, "internal error (the broker's log has details)", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, b.String())
	}
}

// person is how a person is shown: display name, and the subject when it
// differs (safetext.Party: a name holding a parenthesis, a quote or a
// look-alike of one is quoted, as the CLI and chat show it), else the
// subject with the email when it differs.
func person(i broker.Identity) string {
	var s string
	switch {
	case i.Display != "" && i.Display != i.Subject:
		s = safetext.Party(i.Display, i.Subject)
	case i.Email != "" && i.Email != i.Subject:
		s = safetext.Value(i.Subject, "()<>") + " <" + safetext.Value(i.Email, "<>") + ">"
	default:
		s = safetext.Party("", i.Subject)
	}
	if i.Act != "" || i.ActFor != "" {
		// Whose CI run it is (act_claim), and who act_people says that
		// is, as the CLI shows it: a value holding the label's
		// punctuation is quoted (safetext.Join).
		s += " for " + safetext.Join([]string{i.Act}, " ", "()=<>")
		if i.ActFor != "" {
			s += " = " + safetext.Join([]string{i.ActFor}, " ", "()=<>")
		}
	}
	return s
}

func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%d days ago", int(d/(24*time.Hour)))
}

// maxShown bounds any one untrusted string on a page.
const maxShown = 2000

// maxExcerptShown bounds a held call's excerpt on its page: past the
// proxy's 8 KiB of masked tool arguments and the words before them.
const maxExcerptShown = 16 << 10

// pages is every page template, each with the shared layout.
var pageNames = []string{"queue", "item", "mine", "audit", "timeline", "error", "loggedout", "confirm"}

func parsePages() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		// text makes untrusted text inert beyond HTML escaping (which
		// html/template does): control and bidi characters, and what
		// renders as nothing (tag characters, zero-width characters,
		// variation selector runs, stacked marks), become the visible
		// escapes the CLI and chat show (safetext.Escape); it is bounded.
		"text":  func(s string) string { return safetext.Escape(clip(s, maxShown)) },
		"lines": func(s string) string { return safetext.EscapeLines(clip(s, maxShown*4)) },
		// A held call's excerpt: a held tool call's arguments are shown
		// whole (the proxy holds none longer than 8 KiB), as an approval
		// releases all of them.
		"excerpt": func(s string) string { return safetext.EscapeLines(clip(s, maxExcerptShown)) },
		"time": func(t *time.Time) string {
			if t == nil {
				return ""
			}
			return t.UTC().Format("2006-01-02 15:04:05 UTC")
		},
		"path":   url.PathEscape,
		"sorted": func(ss []string) []string { c := slices.Clone(ss); sort.Strings(c); return c },
		"person": person,
	}
	out := map[string]*template.Template{}
	for _, n := range pageNames {
		t, err := template.New(n).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+n+".html")
		if err != nil {
			return nil, fmt.Errorf("ui: templates: %w", err)
		}
		out[n] = t
	}
	return out, nil
}
