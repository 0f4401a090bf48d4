package auditsink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// maxResponse caps what is read of a collector's answer.
const maxResponse = 64 << 10

// httpTarget POSTs batches: JSON Lines, or Splunk HEC event objects.
type httpTarget struct {
	url         string
	format      string
	headers     map[string]string
	headersFile string
	client      *http.Client
	host        string
}

func newHTTPClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		c, err := tlsConfig(caFile, "")
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = c
	}
	return &http.Client{Transport: tr,
		// A redirect would replay the body and its credentials elsewhere.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
}

func newHTTPTarget(c SinkConfig) (*httpTarget, error) {
	if err := checkHTTPURL(c.URL); err != nil {
		return nil, err
	}
	cl, err := newHTTPClient(c.CAFile)
	if err != nil {
		return nil, err
	}
	if c.HeadersFile != "" {
		if _, err := readHeaders(c.HeadersFile); err != nil {
			return nil, err
		}
	}
	host, _ := os.Hostname()
	return &httpTarget{url: c.URL, format: c.Format, headers: c.Headers, headersFile: c.HeadersFile, client: cl, host: host}, nil
}

// hecEvent is one Splunk HTTP Event Collector event.
type hecEvent struct {
	Time       string          `json:"time"`
	Host       string          `json:"host,omitempty"`
	Source     string          `json:"source"`
	SourceType string          `json:"sourcetype"`
	Event      json.RawMessage `json:"event"`
}

func (t *httpTarget) body(recs []Record) (data []byte, contentType string, err error) {
	var b bytes.Buffer
	for _, r := range recs {
		line, err := r.Line()
		if err != nil {
			return nil, "", err
		}
		if t.format != FormatSplunkHEC {
			b.Write(line)
			b.WriteByte('\n')
			continue
		}
		var ts time.Time
		if r.Event != nil {
			ts = r.Event.Time
		} else {
			ts = r.Head.Time
		}
		ev, err := json.Marshal(hecEvent{Time: strconv.FormatFloat(float64(ts.UnixMicro())/1e6, 'f', 6, 64), Host: t.host,
			Source: "pamctl", SourceType: "pamctl:" + r.Kind(), Event: line})
		if err != nil {
			return nil, "", err
		}
		b.Write(ev)
		b.WriteByte('\n')
	}
	if t.format == FormatSplunkHEC {
		return b.Bytes(), "application/json", nil
	}
	return b.Bytes(), "application/x-ndjson", nil
}

func (t *httpTarget) Deliver(ctx context.Context, recs []Record) error {
	data, ct, err := t.body(recs)
	if err != nil {
		return err
	}
	return post(ctx, t.client, t.url, t.headers, t.headersFile, ct, data)
}

// post sends data and accepts only a 2xx answer, reading at most
// maxResponse bytes of it.
func post(ctx context.Context, cl *http.Client, target string, headers map[string]string, headersFile, ct string, data []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if headersFile != "" {
		h, err := readHeaders(headersFile) // re-read: credentials rotate
		if err != nil {
			return err
		}
		for k, vs := range h {
			req.Header[k] = vs
		}
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("User-Agent", "pamctl-audit-sink")
	resp, err := cl.Do(req)
	if err != nil {
		return fmt.Errorf("http: POST %s: %w", safeURL(target), unwrapURLError(err))
	}
	defer resp.Body.Close()
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("http: %s answered %s: %s", safeURL(target), resp.Status, clean(excerpt, 200))
	}
	return nil
}

// unwrapURLError drops *url.Error's copy of the URL (it may hold a token
// in its query).
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) && ue.Err != nil {
		return ue.Err
	}
	return err
}

// clean makes a collector's answer safe to log: printable, one line, short.
func clean(b []byte, n int) string {
	s := strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return ' '
	}, string(b))
	if len(s) > n {
		s = s[:n] + "…"
	}
	if s == "" {
		return "(empty body)"
	}
	return strconv.Quote(s)
}

func (t *httpTarget) Close() error {
	t.client.CloseIdleConnections()
	return nil
}
