package devupstream

import (
	"encoding/json"
	"errors"
	"net/http"
)

// apiError is an error answer in OpenAI's shape:
// {"error":{"message","type","param","code"}}.
type apiError struct {
	Status  int
	Type    string
	Code    string
	Param   string
	Message string
}

func writeError(w http.ResponseWriter, e *apiError) {
	var param, code *string
	if e.Param != "" {
		param = &e.Param
	}
	if e.Code != "" {
		code = &e.Code
	}
	type object struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	}
	writeJSON(w, e.Status, struct {
		Error object `json:"error"`
	}{object{e.Message, e.Type, param, code}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only the mock's own fixed types are marshalled; this cannot happen.
		http.Error(w, `{"error":{"message":"internal error","type":"server_error","param":null,"code":null}}`, http.StatusInternalServerError)
		return
	}
	body = append(body, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// sseWriter writes Server-Sent Events, flushing after each one. After the
// first failure (the client went away) every call reports false.
type sseWriter struct {
	w      http.ResponseWriter
	rc     *http.ResponseController
	r      *http.Request
	failed bool
	buf    []byte
}

func newSSE(w http.ResponseWriter, r *http.Request) *sseWriter {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sseWriter{w: w, rc: http.NewResponseController(w), r: r}
	s.flush()
	return s
}

// event writes one event: an optional "event:" line, then "data:" with v
// marshalled as JSON. It reports whether the client still listens.
func (s *sseWriter) event(name string, v any) bool {
	data, err := json.Marshal(v)
	if err != nil {
		s.failed = true
		return false
	}
	return s.raw(name, data)
}

// raw writes one event whose data is already encoded.
func (s *sseWriter) raw(name string, data []byte) bool {
	if s.failed || s.r.Context().Err() != nil {
		s.failed = true
		return false
	}
	b := s.buf[:0]
	if name != "" {
		b = append(b, "event: "...)
		b = append(b, name...)
		b = append(b, '\n')
	}
	b = append(b, "data: "...)
	b = append(b, data...)
	b = append(b, "\n\n"...)
	s.buf = b
	if _, err := s.w.Write(b); err != nil {
		s.failed = true
		return false
	}
	return s.flush()
}

func (s *sseWriter) flush() bool {
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.failed = true
	}
	return !s.failed
}
