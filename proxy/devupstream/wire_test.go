package devupstream_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/proxy/devupstream"
)

type errorBody struct {
	Error struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Code    *string `json:"code"`
		Param   *string `json:"param"`
	} `json:"error"`
}

// do sends one raw request and returns the status, headers and body.
func do(t *testing.T, h http.Handler, method, path, body string) (int, http.Header, []byte) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	req, err := http.NewRequestWithContext(ctx(t), method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, b
}

// checkError asserts an OpenAI-shaped error with the given status and code.
func checkError(t *testing.T, status int, hdr http.Header, body []byte, wantStatus int, wantCode, wantParam string) {
	t.Helper()
	if status != wantStatus {
		t.Errorf("status %d, want %d (%s)", status, wantStatus, body)
	}
	if hdr.Get(devupstream.MockHeader) != "true" || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Errorf("headers %v", hdr)
	}
	var raw map[string]map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	for _, k := range []string{"message", "type", "code", "param"} {
		if _, ok := raw["error"][k]; !ok {
			t.Errorf("error object lacks %q: %s", k, body)
		}
	}
	var e errorBody
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatal(err)
	}
	if e.Error.Message == "" || e.Error.Type != "invalid_request_error" {
		t.Errorf("message %q type %q", e.Error.Message, e.Error.Type)
	}
	if e.Error.Code == nil || *e.Error.Code != wantCode {
		t.Errorf("code %v, want %q", e.Error.Code, wantCode)
	}
	if gotParam := ""; e.Error.Param != nil {
		gotParam = *e.Error.Param
		if gotParam != wantParam {
			t.Errorf("param %q, want %q", gotParam, wantParam)
		}
	} else if wantParam != "" {
		t.Errorf("param null, want %q", wantParam)
	}
}

func TestMalformedJSON(t *testing.T) {
	h := devupstream.New(devupstream.Options{})
	for _, path := range []string{"/v1/chat/completions", "/v1/responses", "/v1/embeddings"} {
		for _, body := range []string{`{"model": "gpt-4o", "messages": [`, ``, `[1,2]`, `null`, `{"model": 4}`} {
			status, hdr, b := do(t, h, http.MethodPost, path, body)
			checkError(t, status, hdr, b, http.StatusBadRequest, "invalid_json", "")
		}
	}
}

func TestInvalidRequests(t *testing.T) {
	h := devupstream.New(devupstream.Options{})
	cases := []struct {
		path, body, code, param string
	}{
		{"/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}]}`, "missing_required_parameter", "model"},
		{"/v1/chat/completions", `{"model":"gpt-4o","messages":[]}`, "missing_required_parameter", "messages"},
		{"/v1/responses", `{"input":"hi"}`, "missing_required_parameter", "model"},
		{"/v1/responses", `{"model":"gpt-4o","input":42}`, "invalid_value", "input"},
		{"/v1/embeddings", `{"model":"m"}`, "missing_required_parameter", "input"},
		{"/v1/embeddings", `{"model":"m","input":[]}`, "invalid_value", "input"},
		{"/v1/embeddings", `{"model":"m","input":["a",1]}`, "invalid_value", "input"},
		{"/v1/embeddings", `{"model":"m","input":"a","encoding_format":"hex"}`, "invalid_value", "encoding_format"},
	}
	for _, c := range cases {
		status, hdr, b := do(t, h, http.MethodPost, c.path, c.body)
		checkError(t, status, hdr, b, http.StatusBadRequest, c.code, c.param)
	}
}

func TestUnknownRoutes(t *testing.T) {
	h := devupstream.New(devupstream.Options{})
	for _, c := range []struct{ method, path string }{
		{http.MethodPost, "/v1/completions"},
		{http.MethodGet, "/v1/chat/completions"},
		{http.MethodDelete, "/v1/models/gpt-4o"},
		{http.MethodPost, "/v1/models"},
		{http.MethodGet, "/"},
		{http.MethodPost, "/chat/completions"},
	} {
		status, hdr, b := do(t, h, c.method, c.path, `{}`)
		checkError(t, status, hdr, b, http.StatusNotFound, "unknown_url", "")
		if !strings.Contains(string(b), c.method+" "+c.path) {
			t.Errorf("404 body %s does not name the request", b)
		}
	}
}

func TestBodyLimit(t *testing.T) {
	h := devupstream.New(devupstream.Options{})
	big := `{"model":"gpt-4o","input":"` + strings.Repeat("a", devupstream.MaxBodyBytes) + `"}`
	status, hdr, b := do(t, h, http.MethodPost, "/v1/responses", big)
	checkError(t, status, hdr, b, http.StatusRequestEntityTooLarge, "request_too_large", "")

	// Just under the limit is accepted.
	fits := `{"model":"gpt-4o","input":"` + strings.Repeat("a", devupstream.MaxBodyBytes-64) + `"}`
	if status, _, b := do(t, h, http.MethodPost, "/v1/responses", fits); status != http.StatusOK {
		t.Errorf("body under the limit: %d %s", status, b[:min(len(b), 200)])
	}
}

// sseEvent is one parsed Server-Sent Event.
type sseEvent struct {
	name, data string
}

func readSSE(t *testing.T, r io.Reader) []sseEvent {
	t.Helper()
	var (
		events []sseEvent
		cur    sseEvent
	)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.data != "" {
				events = append(events, cur)
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, "event: "):
			cur.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			cur.data += strings.TrimPrefix(line, "data: ")
		default:
			t.Errorf("unexpected SSE line %q", line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cur.data != "" {
		t.Errorf("stream ends inside an event: %+v", cur)
	}
	return events
}

func TestChatStreamWireFormat(t *testing.T) {
	h := devupstream.New(devupstream.Options{Deltas: 3})
	status, hdr, b := do(t, h, http.MethodPost, "/v1/chat/completions",
		`{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`)
	if status != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/event-stream") || hdr.Get(devupstream.MockHeader) != "true" {
		t.Fatalf("status %d headers %v", status, hdr)
	}
	events := readSSE(t, strings.NewReader(string(b)))
	// role chunk, 3 content deltas, finish chunk, usage chunk, [DONE]
	if len(events) != 7 {
		t.Fatalf("%d events, want 7:\n%s", len(events), b)
	}
	if last := events[len(events)-1]; last.data != "[DONE]" || last.name != "" {
		t.Errorf("last event %+v, want data: [DONE]", last)
	}
	type chunk struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Choices []struct {
			Delta        map[string]any `json:"delta"`
			FinishReason *string        `json:"finish_reason"`
		} `json:"choices"`
		Usage *struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
			TotalTokens      int `json:"total_tokens"`
		} `json:"usage"`
	}
	var chunks []chunk
	for _, e := range events[:len(events)-1] {
		var c chunk
		if err := json.Unmarshal([]byte(e.data), &c); err != nil {
			t.Fatalf("%s: %v", e.data, err)
		}
		if e.name != "" || c.Object != "chat.completion.chunk" || !strings.HasPrefix(c.ID, "chatcmpl-") ||
			(len(chunks) > 0 && c.ID != chunks[0].ID) {
			t.Errorf("chunk %s (event %q)", e.data, e.name)
		}
		if !strings.Contains(e.data, `"usage":`) {
			t.Errorf("chunk %s lacks usage (null until the last) although include_usage is set", e.data)
		}
		chunks = append(chunks, c)
	}
	if chunks[0].Choices[0].Delta["role"] != "assistant" {
		t.Errorf("first chunk %+v lacks the role", chunks[0])
	}
	if fr := chunks[4].Choices[0].FinishReason; fr == nil || *fr != "stop" || len(chunks[4].Choices[0].Delta) != 0 {
		t.Errorf("finish chunk %+v", chunks[4])
	}
	if u := chunks[5]; len(u.Choices) != 0 || u.Usage == nil || u.Usage.TotalTokens != u.Usage.PromptTokens+u.Usage.CompletionTokens || u.Usage.TotalTokens == 0 {
		t.Errorf("usage chunk %s", events[5].data)
	}
	if !strings.Contains(events[5].data, `"choices":[]`) {
		t.Errorf("usage chunk %s must carry an empty choices array", events[5].data)
	}
	for _, c := range chunks[:5] {
		if c.Usage != nil {
			t.Errorf("usage before the last chunk: %+v", c)
		}
	}
}

func TestResponsesStreamWireFormat(t *testing.T) {
	h := devupstream.New(devupstream.Options{Deltas: 2})
	status, hdr, b := do(t, h, http.MethodPost, "/v1/responses", `{"model":"gpt-4o","stream":true,"input":"hi"}`)
	if status != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d headers %v", status, hdr)
	}
	events := readSSE(t, strings.NewReader(string(b)))
	if len(events) != 10 {
		t.Fatalf("%d events, want 10:\n%s", len(events), b)
	}
	for i, e := range events {
		var typed struct {
			Type           string `json:"type"`
			SequenceNumber *int   `json:"sequence_number"`
		}
		if err := json.Unmarshal([]byte(e.data), &typed); err != nil {
			t.Fatalf("%s: %v", e.data, err)
		}
		if e.name == "" || e.name != typed.Type {
			t.Errorf("event line %q, data type %q", e.name, typed.Type)
		}
		if typed.SequenceNumber == nil || *typed.SequenceNumber != i {
			t.Errorf("%s: sequence_number %v, want %d", e.name, typed.SequenceNumber, i)
		}
	}
	for _, e := range events {
		if e.data == "[DONE]" {
			t.Error("the Responses stream ends after response.completed, without [DONE]")
		}
	}
	var completed struct {
		Response map[string]json.RawMessage `json:"response"`
	}
	if err := json.Unmarshal([]byte(events[9].data), &completed); err != nil {
		t.Fatal(err)
	}
	if _, ok := completed.Response["output_text"]; ok {
		t.Error("output_text is not part of the wire format")
	}
	for _, k := range []string{"id", "object", "created_at", "status", "output", "usage", "model"} {
		if _, ok := completed.Response[k]; !ok {
			t.Errorf("completed response lacks %q", k)
		}
	}
}

// recordDone serves h and closes the returned channel when a request's
// handler has returned.
func recordDone(h http.Handler) (*httptest.Server, <-chan struct{}) {
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		h.ServeHTTP(w, r)
	}))
	return srv, done
}

func TestStreamStopsWhenClientLeaves(t *testing.T) {
	for _, c := range []struct{ path, body string }{
		{"/v1/chat/completions", `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
		{"/v1/responses", `{"model":"gpt-4o","stream":true,"input":"hi"}`},
	} {
		// A gap of an hour between deltas: only a cancelled context ends the handler.
		srv, done := recordDone(devupstream.New(devupstream.Options{DeltaGap: time.Hour}))
		defer srv.Close()
		reqCtx, cancel := context.WithCancel(ctx(t))
		req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, srv.URL+c.path, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		// Events arrive before the stream ends: each one is flushed.
		line, err := bufio.NewReader(res.Body).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "data: ") && !strings.HasPrefix(line, "event: ") {
			t.Fatalf("%s: first line %q, %v", c.path, line, err)
		}
		cancel()
		res.Body.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: the handler kept streaming after the client left", c.path)
		}
	}
}

func TestLatency(t *testing.T) {
	const latency = 150 * time.Millisecond
	h := devupstream.New(devupstream.Options{Latency: latency})
	start := time.Now()
	status, _, b := do(t, h, http.MethodGet, "/v1/models", "")
	if status != http.StatusOK {
		t.Fatalf("status %d %s", status, b)
	}
	if took := time.Since(start); took < latency {
		t.Errorf("answered after %v, want at least %v", took, latency)
	}

	// A client that gives up during the wait ends it.
	srv, done := recordDone(devupstream.New(devupstream.Options{Latency: time.Hour}))
	defer srv.Close()
	reqCtx, cancel := context.WithTimeout(ctx(t), 50*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, srv.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := http.DefaultClient.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("request error %v, want a deadline", err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler kept waiting after the client left")
	}
}
