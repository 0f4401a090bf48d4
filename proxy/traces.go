package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/token"
)

// ScopeTracesWrite is the scope that lets a token store traces through
// POST /v1/traces/ingest; a policy must grant it like any other.
const ScopeTracesWrite = token.KindTraces + ":write"

// maxSpans bounds the items of one trace ingest request (the Agents SDKs
// export batches of 128 by default); a larger batch is refused whole.
const maxSpans = 256

// maxSpanBytes bounds the span JSON kept in an event's details; a longer
// span is kept cut, with its length in span_truncated.
const maxSpanBytes = audit.MaxTextBytes

// maxSpanField bounds each named span field (ids, names) kept in details.
const maxSpanField = 256

// traceItem is one item an Agents SDK exporter sends: a trace
// ("object":"trace") or a span ("object":"trace.span").
type traceItem struct {
	Object    string          `json:"object"`
	ID        string          `json:"id"`
	TraceID   string          `json:"trace_id"`
	ParentID  string          `json:"parent_id"`
	Workflow  string          `json:"workflow_name"`
	GroupID   string          `json:"group_id"`
	StartedAt string          `json:"started_at"`
	EndedAt   string          `json:"ended_at"`
	SpanData  json.RawMessage `json:"span_data"`
	Error     json.RawMessage `json:"error"`
}

// ingestTraces answers POST /v1/traces/ingest, where an Agents SDK's
// trace exporter is pointed at the proxy: each item becomes a trace.span
// audit event tied to the grant, and nothing goes upstream, so neither the
// token nor the agent's run leaves for OpenAI.
func (p *Proxy) ingestTraces(w http.ResponseWriter, r *http.Request, c *call) {
	var req struct {
		Data []json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(c.body, &req); err != nil {
		p.fail(w, c, errBadRequest(CodeInvalidJSON, "", "The trace batch is not valid JSON: "+jsonProblem(err)+".", err))
		return
	}
	if req.Data == nil {
		p.fail(w, c, errBadRequest("missing_data", "data", `The trace batch has no "data" list.`, nil))
		return
	}
	if len(req.Data) > maxSpans {
		p.fail(w, c, errBadRequest(CodeTooManySpans, "data", fmt.Sprintf("The trace batch has %d items; send at most %d per request.", len(req.Data), maxSpans), nil))
		return
	}
	c.decision = "allow"
	for i, raw := range req.Data {
		var it traceItem
		if err := json.Unmarshal(raw, &it); err != nil {
			p.fail(w, c, errBadRequest(CodeInvalidJSON, fmt.Sprintf("data[%d]", i), fmt.Sprintf("Trace item %d is not a JSON object.", i), err))
			return
		}
		if err := p.appendEvent(r.Context(), p.spanEvent(c, &it, raw)); err != nil {
			p.fail(w, c, p.auditError(err))
			return
		}
	}
	c.status = http.StatusNoContent
	c.audited = true // the spans are the record of this call
	w.WriteHeader(http.StatusNoContent)
}

// spanEvent renders one trace item as a trace.span event. Every field it
// keeps from the item is masked (the SDKs put prompts in workflow and span
// names too) and bounded.
func (p *Proxy) spanEvent(c *call, it *traceItem, raw json.RawMessage) *audit.Event {
	e := &audit.Event{
		Type:     audit.TypeTraceSpan,
		Actor:    actorOf(c.claims),
		Grant:    c.claims.Req,
		Request:  c.claims.Req,
		Decision: "allow",
		Endpoint: c.method + " " + c.path,
		Client:   &audit.Client{RemoteAddr: c.remote, UserAgent: c.userAgent},
		Details:  callDetails(c),
	}
	set := func(k, v string) {
		if v != "" {
			e.Details[k] = clip(p.maskText(v), maxSpanField)
		}
	}
	set("object", it.Object)
	set("id", it.ID)
	set("trace_id", it.TraceID)
	set("parent_id", it.ParentID)
	set("workflow", it.Workflow)
	set("group_id", it.GroupID)
	set("started_at", it.StartedAt)
	set("ended_at", it.EndedAt)
	if len(it.SpanData) > 0 {
		var sd struct {
			Type  string `json:"type"`
			Name  string `json:"name"`
			Model string `json:"model"`
		}
		if json.Unmarshal(it.SpanData, &sd) == nil {
			set("span_type", sd.Type)
			set("name", sd.Name)
			e.Model = clip(p.maskText(sd.Model), maxSpanField)
		}
	}
	if len(it.Error) > 0 && string(it.Error) != "null" {
		e.Error = "span error: " + clip(p.maskText(string(it.Error)), 1024)
	}
	span := p.maskText(string(raw))
	e.Details["span"] = clip(span, maxSpanBytes)
	if len(span) > maxSpanBytes {
		e.Details["span_truncated"] = strconv.Itoa(len(span))
	}
	return e
}

// maskText masks a trace item's JSON text with the response masker: spans
// carry the run's prompts and answers. Placeholders hold no quote or
// backslash, so the JSON stays valid.
func (p *Proxy) maskText(s string) string {
	out, _ := p.inspect.Load().ResponseMask.Mask(s)
	return out
}

// clip cuts s to at most n bytes on a UTF-8 boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}
