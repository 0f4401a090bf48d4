package proxy

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"unicode/utf16"
)

// Red-team findings on the answer side: text in another encoding, SSE in
// another content type, keys in header names, keys spelled otherwise.

const redPII = "bob@example.com"

// utf16Bytes encodes s as UTF-16 (big-endian when be), with a BOM when bom.
func utf16Bytes(s string, be, bom bool) []byte {
	units := utf16.Encode([]rune(s))
	if bom {
		units = append([]uint16{0xfeff}, units...)
	}
	out := make([]byte, 2*len(units))
	for i, u := range units {
		if be {
			binary.BigEndian.PutUint16(out[2*i:], u)
		} else {
			binary.LittleEndian.PutUint16(out[2*i:], u)
		}
	}
	return out
}

// utf32LE encodes s as UTF-32LE without BOM.
func utf32LE(s string) []byte {
	var out []byte
	for _, r := range s {
		out = binary.LittleEndian.AppendUint32(out, uint32(r))
	}
	return out
}

// decodedLeak reports whether b, read as UTF-8, UTF-16 or UTF-32 (as a
// lenient client would), holds key or pii.
func decodedLeak(b []byte, key string) bool {
	var forms []string
	forms = append(forms, string(b))
	for _, be := range []bool{false, true} {
		for off := 0; off < 2; off++ {
			if len(b) < off+2 {
				continue
			}
			c := b[off:]
			u := make([]uint16, len(c)/2)
			for i := range u {
				if be {
					u[i] = binary.BigEndian.Uint16(c[2*i:])
				} else {
					u[i] = binary.LittleEndian.Uint16(c[2*i:])
				}
			}
			forms = append(forms, string(utf16.Decode(u)))
		}
	}
	var r []rune
	for i := 0; i+4 <= len(b); i += 4 {
		r = append(r, rune(binary.LittleEndian.Uint32(b[i:])))
	}
	forms = append(forms, string(r))
	for _, f := range forms {
		if strings.Contains(f, key) || strings.Contains(f, key[4:len(key)-4]) || strings.Contains(f, redPII) {
			return true
		}
	}
	return false
}

// rawDo sends a request and returns the answer, its body and the error
// reading it (a relay the proxy aborted fails the read).
func rawDo(t *testing.T, h *harness, method, path, tok, body string) (*http.Response, []byte, error) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := h.srv.Client().Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res, b, err
}

// TestNonUTF8AnswerRefused: an answer in UTF-16/32 (BOM or not, charset
// declared or not), in a declared charset other than UTF-8, or holding
// invalid UTF-8 or NUL bytes never reaches the client, masking on or off,
// on every endpoint: buffered answers are refused with 502
// upstream_bad_encoding, streams end in an error event with that code,
// text passed through for endpoint: scopes is cut off.
func TestNonUTF8AnswerRefused(t *testing.T) {
	chat := func(k string) string {
		return `{"id":"x","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"k=` + k + ` ` + redPII + `"},"finish_reason":"stop"}]}`
	}
	type enc struct {
		ctype string
		body  func(string) []byte
	}
	encs := map[string]enc{
		"utf-16le no charset":         {"application/json", func(s string) []byte { return utf16Bytes(s, false, false) }},
		"utf-16le charset":            {"application/json; charset=utf-16le", func(s string) []byte { return utf16Bytes(s, false, false) }},
		"utf-16be no bom":             {"application/json", func(s string) []byte { return utf16Bytes(s, true, false) }},
		"utf-16le bom":                {"application/json", func(s string) []byte { return utf16Bytes(s, false, true) }},
		"utf-16be bom no ctype":       {"", func(s string) []byte { return utf16Bytes(s, true, true) }},
		"utf-32le":                    {"application/json", utf32LE},
		"latin-1 declared":            {`application/json; charset="ISO-8859-1"`, func(s string) []byte { return []byte(s) }},
		"utf-16 declared, utf-8 body": {"application/json;charset=UTF-16", func(s string) []byte { return []byte(s) }},
		"invalid utf-8":               {"application/json", func(s string) []byte { return []byte(strings.Replace(s, "k=", "k=\xff\xfe", 1)) }},
		"nul byte":                    {"application/json", func(s string) []byte { return []byte(strings.Replace(s, "k=", "k=\x00", 1)) }},
	}
	for name, e := range encs {
		for _, masked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/masked=%v", name, masked), func(t *testing.T) {
				var streamed bool
				h := echoHarness(t, azureKey, masked, func(w http.ResponseWriter, k string) {
					body := chat(k)
					ctype := e.ctype
					if streamed {
						body = "data: " + chunkJSON("k="+k+" "+redPII) + "\n\ndata: [DONE]\n\n"
						ctype = strings.Replace(ctype, "application/json", "text/event-stream", 1)
					}
					if ctype == "" {
						w.Header()["Content-Type"] = nil
					} else {
						w.Header().Set("Content-Type", ctype)
					}
					_, _ = w.Write(e.body(body))
				})
				tok := h.mint(grant{scope: "model:* endpoint:/v1/audio/transcriptions"})
				for _, c := range []struct{ method, path, body string }{
					{"POST", "/v1/chat/completions", `{"model":"gpt-4o","messages":[]}`},
					{"POST", "/v1/responses", `{"model":"gpt-4o","input":"hi"}`},
					{"POST", "/v1/embeddings", `{"model":"gpt-4o","input":"hi"}`},
					{"GET", "/v1/models", ""},
					{"GET", "/v1/models/gpt-4o", ""},
					{"POST", "/v1/audio/transcriptions", `{"model":"gpt-4o"}`},
				} {
					res, b, err := rawDo(t, h, c.method, c.path, tok, c.body)
					if res == nil {
						// A granted endpoint's answer is relayed as it comes:
						// a bad first read cuts the connection, possibly
						// before its headers went out. Nothing reached the
						// client; a model endpoint must always answer.
						if c.path != "/v1/audio/transcriptions" {
							t.Fatalf("%s: %v", c.path, err)
						}
						continue
					}
					if decodedLeak(b, azureKey) {
						t.Errorf("%s: leaked (%d %s): %q", c.path, res.StatusCode, res.Header.Get("Content-Type"), b)
					}
					if err != nil && c.path != "/v1/audio/transcriptions" {
						// Model endpoints' answers are read whole: always
						// a clean 502, never a cut connection.
						t.Errorf("%s: %d, broken answer: %v", c.path, res.StatusCode, err)
					} else if err == nil && res.StatusCode != http.StatusBadGateway {
						t.Errorf("%s: %d, want 502", c.path, res.StatusCode)
					} else if err == nil && apiErr(t, b).Code != CodeUpstreamEncoding {
						t.Errorf("%s: %s", c.path, b)
					}
				}
				streamed = true
				res, b, err := rawDo(t, h, "POST", "/v1/chat/completions", tok, `{"model":"gpt-4o","stream":true,"messages":[]}`)
				if res == nil {
					t.Fatalf("stream: %v", err)
				}
				if decodedLeak(b, azureKey) {
					t.Errorf("stream: leaked (%d): %q", res.StatusCode, b)
				}
				if res.StatusCode == http.StatusOK && !strings.Contains(string(b), CodeUpstreamEncoding) {
					t.Errorf("stream: no %s error event: %q", CodeUpstreamEncoding, b)
				}
				if ev := h.sink.last(t); strings.Contains(ev.Response, redPII) || strings.Contains(ev.Response, azureKey) {
					t.Errorf("the trail holds it: %+v", ev)
				}
			})
		}
	}
}

// TestUTF8BodyReader: utf8Body passes UTF-8 split anywhere, and fails a
// read holding invalid UTF-8, NUL or a rune cut off at the end.
func TestUTF8BodyReader(t *testing.T) {
	good := "héllo → 世界 🎉 " + strings.Repeat("x", 10)
	for n := 1; n <= 5; n++ {
		b, err := io.ReadAll(&utf8Body{src: &chunkReader{s: good, n: n}})
		if err != nil || string(b) != good {
			t.Errorf("split %d: %q %v", n, b, err)
		}
	}
	for name, bad := range map[string]string{
		"utf-16":            string(utf16Bytes("data: x", false, false)),
		"lone continuation": "ab\x80cd",
		"bad second byte":   "ab\xe2\x41\x41",
		"cut at end":        "abc\xe2\x82",
		"nul":               "abc\x00",
		"bom":               "\xff\xfedata",
		"surrogate":         "ab\xed\xa0\x80",
	} {
		for n := 1; n <= 4; n++ {
			_, err := io.ReadAll(&utf8Body{src: &chunkReader{s: bad, n: n}})
			if err != errUpstreamEncoding {
				t.Errorf("%s split %d: err %v", name, n, err)
			}
		}
	}
}

// chunkReader reads s n bytes at a time.
type chunkReader struct {
	s string
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if r.s == "" {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), r.n)], r.s)
	r.s = r.s[k:]
	return k, nil
}

func (r *chunkReader) Close() error { return nil }

// TestForeignCharset: which Content-Types are refused for their charset.
func TestForeignCharset(t *testing.T) {
	for ct, want := range map[string]bool{
		"application/json":                      false,
		"application/json; charset=utf-8":       false,
		"application/json; charset=UTF8":        false,
		`text/plain; charset="us-ascii"`:        false,
		"application/json; charset=utf-16le":    true,
		"application/json;charset=UTF-16":       true,
		"text/event-stream; charset=utf-32":     true,
		"application/json; x=1; charset=latin1": true,
		"application/json; charset=utf-16; ;;=": true, // mime.ParseMediaType rejects it
		"application/json; Charset = 'cp1252' ": true,
	} {
		if _, got := foreignCharset(ct); got != want {
			t.Errorf("%q: %v, want %v", ct, got, want)
		}
	}
}

// sseBody is an SSE stream holding key split across two content deltas
// and pii split across two more.
func sseBody(k string, nl string) string {
	half := len(k) / 2
	var b strings.Builder
	for _, d := range []string{"a " + k[:half], k[half:] + " bob@exa", "mple.com"} {
		b.WriteString("data: " + chunkJSON(d) + nl + nl)
	}
	b.WriteString("data: [DONE]" + nl + nl)
	return b.String()
}

// TestStreamAnswerInAnyTypeRelayedAsSSE: the answer to a stream request
// goes through the SSE relay whatever its Content-Type, so a key or PII
// split across events is caught when the client joins the deltas.
func TestStreamAnswerInAnyTypeRelayedAsSSE(t *testing.T) {
	for _, ctype := range []string{"application/x-ndjson", "text/plain", "application/json", "", "application/octet-stream"} {
		for _, masked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%q/masked=%v", ctype, masked), func(t *testing.T) {
				h := echoHarness(t, azureKey, masked, func(w http.ResponseWriter, k string) {
					if ctype == "" {
						w.Header()["Content-Type"] = nil
					} else {
						w.Header().Set("Content-Type", ctype)
					}
					_, _ = io.WriteString(w, sseBody(k, "\n"))
				})
				tok := h.mint(grant{scope: "model:gpt-4o"})
				res, b := h.do("POST", "/v1/chat/completions", tok, `{"model":"gpt-4o","stream":true,"messages":[]}`)
				if where := leaks(azureKey, res, b, h); len(where) > 0 {
					t.Errorf("the key reached %v: %s", where, b)
				}
				if res.Header.Get("Content-Type") != "text/event-stream" {
					t.Errorf("Content-Type %q", res.Header.Get("Content-Type"))
				}
				joined := joinDeltas(b)
				if !strings.Contains(joined, "[redacted]") {
					t.Errorf("not relayed per field: %q", joined)
				}
				if masked && strings.Contains(joined, redPII) {
					t.Errorf("PII joined: %q", joined)
				}
			})
		}
	}
	// Without SSE framing nothing is relayed, and the stream ends in an error.
	h := echoHarness(t, azureKey, false, func(w http.ResponseWriter, k string) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		_, _ = io.WriteString(w, chunkJSON("a "+k[:10])+"\n"+chunkJSON(k[10:])+"\n")
	})
	tok := h.mint(grant{scope: "model:gpt-4o"})
	res, b := h.do("POST", "/v1/chat/completions", tok, `{"model":"gpt-4o","stream":true,"messages":[]}`)
	if strings.Contains(string(b), azureKey[10:]) || !strings.Contains(string(b), CodeStreamInterrupted) {
		t.Errorf("ndjson without SSE framing: %d %s", res.StatusCode, b)
	}
}

// TestNonStreamAnswerInSSEFramingRefused: a call without stream:true
// answered with SSE framing (in any type but text/event-stream, which the
// relay reads per field) is refused, not masked as text.
func TestNonStreamAnswerInSSEFramingRefused(t *testing.T) {
	for _, ctype := range []string{"application/x-ndjson", "text/plain", "application/json", ""} {
		for _, nl := range []string{"\n", "\r\n", "\r"} {
			t.Run(fmt.Sprintf("%q/%q", ctype, nl), func(t *testing.T) {
				h := echoHarness(t, azureKey, true, func(w http.ResponseWriter, k string) {
					if ctype == "" {
						w.Header()["Content-Type"] = nil
					} else {
						w.Header().Set("Content-Type", ctype)
					}
					_, _ = io.WriteString(w, sseBody(k, nl))
				})
				tok := h.mint(grant{scope: "model:gpt-4o"})
				for _, path := range []string{"/v1/chat/completions", "/v1/responses"} {
					res, b := h.do("POST", path, tok, `{"model":"gpt-4o","input":"x","messages":[]}`)
					if res.StatusCode != http.StatusBadGateway || apiErr(t, b).Code != CodeUpstreamUnexpectedStream {
						t.Errorf("%s: %d %s", path, res.StatusCode, b)
					}
					if where := leaks(azureKey, res, b, h); len(where) > 0 {
						t.Errorf("the key reached %v", where)
					}
				}
			})
		}
	}
	// Plain text that merely mentions "data:" mid-line is no stream: it
	// is withheld as an answer that is not a JSON object.
	h := echoHarness(t, azureKey, true, func(w http.ResponseWriter, k string) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "the data: "+redPII)
	})
	tok := h.mint(grant{scope: "model:gpt-4o"})
	if res, b := h.do("POST", "/v1/chat/completions", tok, `{"model":"gpt-4o","messages":[]}`); res.StatusCode != http.StatusBadGateway ||
		apiErr(t, b).Code != CodeUpstreamError || strings.Contains(string(b), redPII) {
		t.Errorf("text: %d %s", res.StatusCode, b)
	}
}

// TestKeyInHeaderAndTrailerNames: a header or trailer whose name (which Go
// canonicalises) or value spells a key in any case is dropped, and so is
// its name in the client's Trailer header; nothing of it is logged.
//
// Trailers the upstream did not announce (HTTP/1.1 lets it send any after
// the last chunk; Go's transport then makes res.Trailer a new map when the
// body ends) are scrubbed the same way.
func TestKeyInHeaderAndTrailerNames(t *testing.T) {
	const key = "QWERTYsecretVAULT42"
	for _, kind := range []string{"json", "stream", "audio", "stream-unannounced", "audio-unannounced"} {
		t.Run(kind, func(t *testing.T) {
			kind, unannounced := strings.CutSuffix(kind, "-unannounced")
			h := echoHarness(t, key, false, func(w http.ResponseWriter, k string) {
				hd := w.Header()
				hd["X-"+k] = []string{"1"}
				hd["X-Lower"] = []string{strings.ToLower(k)}
				hd["X-Pct"] = []string{"%" + fmt.Sprintf("%02x", k[0]) + strings.ToLower(k[1:])}
				trailer := func(name string) string { return name }
				if unannounced {
					trailer = func(name string) string { return http.TrailerPrefix + name }
				} else {
					hd.Set("Trailer", "X-T-"+k+", X-Tv, X-Fine")
				}
				writeKindAnswer(w, kind)
				if unannounced {
					// Chunked, or the server sends a Content-Length and no trailers.
					w.(http.Flusher).Flush()
				}
				hd.Set(trailer("X-T-"+k), "v")
				hd.Set(trailer("X-Tv"), strings.ToUpper(k))
				hd.Set(trailer("X-Fine"), "ok")
			})
			tok := h.mint(grant{scope: "model:gpt-4o endpoint:/v1/audio/speech"})
			path, body := kindRequest(kind)
			res, b := h.do("POST", path, tok, body)
			if res.StatusCode != 200 {
				t.Fatalf("%d %s", res.StatusCode, b)
			}
			lk := strings.ToLower(key)
			check := func(where string, hd http.Header) {
				for name, vals := range hd {
					all := strings.ToLower(name + " " + strings.Join(vals, " "))
					if u, err := url.QueryUnescape(all); err == nil {
						all += " " + strings.ToLower(u)
					}
					if strings.Contains(all, lk) {
						t.Errorf("%s %s: %v", where, name, vals)
					}
				}
			}
			check("header", res.Header)
			check("trailer", res.Trailer)
			if strings.Contains(strings.ToLower(h.logs.String()), lk) {
				t.Errorf("logged: %s", h.logs.String())
			}
			if kind != "json" && res.Trailer.Get("X-Fine") != "ok" {
				t.Errorf("clean trailer lost: %v", res.Trailer)
			}
		})
	}
}

// TestKeyPercentAndBase64EncodedInAnswer: the key fully percent-encoded
// (either hex case, mixed with literal bytes) or in base64 (either
// alphabet, any alignment) is scrubbed from every kind of answer.
func TestKeyPercentAndBase64EncodedInAnswer(t *testing.T) {
	pct := func(s string, upper bool) string {
		var b strings.Builder
		for _, c := range []byte(s) {
			if upper {
				fmt.Fprintf(&b, "%%%02X", c)
			} else {
				fmt.Fprintf(&b, "%%%02x", c)
			}
		}
		return b.String()
	}
	spell := map[string]func(string) string{
		"pct upper": func(k string) string { return pct(k, true) },
		"pct lower": func(k string) string { return pct(k, false) },
		"pct mixed": func(k string) string { return k[:3] + pct(k[3:9], false) + k[9:12] + pct(k[12:], true) },
		"base64":    func(k string) string { return base64.StdEncoding.EncodeToString([]byte(k)) },
		"base64 url offset 1": func(k string) string {
			return base64.URLEncoding.EncodeToString([]byte("\xfb" + k))
		},
		"base64 offset 2": func(k string) string { return base64.RawStdEncoding.EncodeToString([]byte("ab" + k)) },
	}
	for _, key := range []string{vaultedKey, azureKey} {
		for name, sp := range spell {
			for _, kind := range []string{"json", "stream", "text"} {
				t.Run(key[:6]+"/"+name+"/"+kind, func(t *testing.T) {
					h := echoHarness(t, key, false, func(w http.ResponseWriter, k string) {
						s := sp(k)
						switch kind {
						case "json":
							writeJSON(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"u=`+s+`"},"finish_reason":"stop"}]}`)
						case "stream":
							w.Header().Set("Content-Type", "text/event-stream")
							_, _ = io.WriteString(w, "data: "+chunkJSON(s)+"\n\ndata: [DONE]\n\n")
						case "text":
							w.Header().Set("Content-Type", "text/plain")
							_, _ = io.WriteString(w, "u="+s)
						}
					})
					tok := h.mint(grant{scope: "model:gpt-4o endpoint:/v1/audio/transcriptions"})
					path, body := "/v1/chat/completions", `{"model":"gpt-4o","messages":[]}`
					if kind == "stream" {
						body = `{"model":"gpt-4o","stream":true,"messages":[]}`
					}
					if kind == "text" {
						path = "/v1/audio/transcriptions"
					}
					res, b := h.do("POST", path, tok, body)
					s := sp(key)
					mid := s[len(s)/2-8 : len(s)/2+8]
					if strings.Contains(string(b), mid) || !strings.Contains(string(b), "[redacted]") {
						t.Errorf("%d: %s", res.StatusCode, b)
					}
				})
			}
		}
	}
}
