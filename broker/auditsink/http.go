package auditsink

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/pamctl/pamctl/broker/safetext"
)

// maxResponse caps what is read of a collector's answer.
const maxResponse = 64 << 10

// httpTarget POSTs batches: JSON Lines, or Splunk HEC event objects.
type httpTarget struct {
	to          endpoint
	format      string
	headers     map[string]string
	headersFile string
	client      *http.Client
	host        string
	// refused is the smallest body a collector answered 413 to (0: none
	// yet): a batch body at least that big is split without sending it,
	// refusedTrust times; then one is sent whole again (trust counts down),
	// so a 413 that passed (a collector's limit raised, a proxy in front of
	// it restarted) does not split every batch down to one POST per event
	// until pamctl restarts.
	refused int
	trust   int
	// standIns sent by the last Deliver.
	standIns []StandIn
	// acked counts the leading records of the last Deliver the collector
	// took (split deliveries ack them part by part).
	acked int
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

// endpoint is where an http sink or the anchor POSTs: url, or the URL in
// file (url_file), read for every request since a token in it rotates.
type endpoint struct {
	url  string
	file string
}

func newEndpoint(raw, file string) (endpoint, error) {
	e := endpoint{url: raw, file: file}
	_, err := e.get()
	return e, err
}

func (e endpoint) get() (string, error) {
	if e.file != "" {
		return readURLFile(e.file)
	}
	return e.url, checkHTTPURL(e.url)
}

func newHTTPTarget(c SinkConfig) (*httpTarget, error) {
	to, err := newEndpoint(c.URL, c.URLFile)
	if err != nil {
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
	return &httpTarget{to: to, format: c.Format, headers: c.Headers, headersFile: c.HeadersFile, client: cl, host: host}, nil
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
		ts := r.time()
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

func (t *httpTarget) takeStandIns() []StandIn {
	s := t.standIns
	t.standIns = nil
	return s
}

func (t *httpTarget) Deliver(ctx context.Context, recs []Record) error {
	t.standIns, t.acked = nil, 0
	err := t.deliver(ctx, recs)
	if err != nil && t.acked > 0 {
		return &PartialError{Delivered: t.acked, Err: err}
	}
	return err
}

// PartialError is a Deliver that failed after the collector took the
// first Delivered records: the shipper records them, so a batch split into
// many posts moves on even when all of them do not fit in one timeout.
type PartialError struct {
	Delivered int
	Err       error
}

func (e *PartialError) Error() string {
	return fmt.Sprintf("%v (after the first %d records were delivered)", e.Err, e.Delivered)
}

func (e *PartialError) Unwrap() error { return e.Err }

// refusedTrust is how many batches a 413 splits before one is sent whole
// again (httpTarget.refused): with the default batch of 256 events, about
// one in a few hundred POSTs tests whether the collector still refuses.
const refusedTrust = 256

// deliver POSTs recs as one body. A collector that answers 413 (Content
// Too Large) gets the batch in two halves, in order, down to single
// records; an event it refuses alone is sent as its stand-in, so one big
// event never holds back the others. A failure after some halves went
// fails the whole batch, which is sent again (at least once).
func (t *httpTarget) deliver(ctx context.Context, recs []Record) error {
	data, ct, err := t.body(recs)
	if err != nil {
		return err
	}
	if len(recs) > 1 && t.refused > 0 && len(data) >= t.refused {
		if t.trust > 0 {
			t.trust--
			return t.split(ctx, recs)
		}
		t.refused = 0 // sent whole once more; a 413 sets it again
	}
	err = post(ctx, t.client, t.to, t.headers, t.headersFile, ct, data)
	if err == nil {
		t.acked += len(recs)
	}
	if code := refusedContent(err); code != 0 {
		return t.refusedEvent(ctx, recs, data, ct, code, err)
	}
	if !tooLarge(err) {
		return err
	}
	if t.refused == 0 || len(data) < t.refused {
		t.refused = len(data)
	}
	t.trust = refusedTrust
	if len(recs) > 1 {
		return t.split(ctx, recs)
	}
	r := recs[0]
	if r.Event == nil {
		return fmt.Errorf("%w (a %d-byte body holding one %s record: raise the collector's body limit)", err, len(data), r.Kind())
	}
	si := standInFor(r.Event, len(data), 0, fmt.Sprintf("the collector refused the event as too large (HTTP 413 to a %d-byte body)", len(data)))
	sdata, _, err := t.body([]Record{{StandIn: si}})
	if err != nil {
		return err
	}
	if err := post(ctx, t.client, t.to, t.headers, t.headersFile, ct, sdata); err != nil {
		if tooLarge(err) {
			return fmt.Errorf("%w (even the %d-byte stand-in of seq %d: raise the collector's body limit)", err, len(sdata), r.Seq())
		}
		return err
	}
	t.standIns = append(t.standIns, *si)
	t.acked++
	return nil
}

// refusedEvent handles a 400 or 422 to recs (whose body was data): the
// collector refused what the body holds, which may be one event's text
// that an agent chose to make the sink stall on it (and keep what follows
// out of the SIEM). The batch is split in halves down to single records;
// an event refused alone is sent as its stand-in. A head, or a stand-in,
// refused alone is an error: the collector refuses pamctl's own records,
// which is its configuration (format, index, parsing), so nothing is
// skipped then.
func (t *httpTarget) refusedEvent(ctx context.Context, recs []Record, data []byte, ct string, code int, err error) error {
	if len(recs) > 1 {
		return t.split(ctx, recs)
	}
	const fix = "check the sink's format and the collector's index and parsing settings"
	r := recs[0]
	if r.Event == nil {
		return fmt.Errorf("%w (the collector refused a %s record alone: %s)", err, r.Kind(), fix)
	}
	si := standInFor(r.Event, len(data), 0, fmt.Sprintf("the collector refused the event (HTTP %d to a %d-byte body)", code, len(data)))
	sdata, _, err := t.body([]Record{{StandIn: si}})
	if err != nil {
		return err
	}
	if err := post(ctx, t.client, t.to, t.headers, t.headersFile, ct, sdata); err != nil {
		if refusedContent(err) != 0 {
			return fmt.Errorf("%w (the collector refused seq %d and its stand-in alike: %s)", err, r.Seq(), fix)
		}
		return err
	}
	t.standIns = append(t.standIns, *si)
	t.acked++
	return nil
}

// refusedContent is the status of a 400 or 422 answer (the collector
// refused what the body holds), else 0.
func refusedContent(err error) int {
	var se *statusError
	if errors.As(err, &se) && (se.code == http.StatusBadRequest || se.code == http.StatusUnprocessableEntity) {
		return se.code
	}
	return 0
}

func (t *httpTarget) split(ctx context.Context, recs []Record) error {
	mid := len(recs) / 2
	if err := t.deliver(ctx, recs[:mid]); err != nil {
		return err
	}
	return t.deliver(ctx, recs[mid:])
}

// statusError is a collector's answer other than 2xx.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

// tooLarge reports a 413 answer.
func tooLarge(err error) bool {
	var se *statusError
	return errors.As(err, &se) && se.code == http.StatusRequestEntityTooLarge
}

// post sends data and accepts only a 2xx answer, reading at most
// maxResponse bytes of it.
// A url_file's URL is shown as its scheme and host and the file's name,
// and each of its path segments is kept out of errors.
func post(ctx context.Context, cl *http.Client, to endpoint, headers map[string]string, headersFile, ct string, data []byte) error {
	target, err := to.get()
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(data))
	if err != nil {
		return errors.New("http: the URL makes no request")
	}
	shown := safeURL(target)
	if to.file != "" {
		shown = req.URL.Scheme + "://" + req.URL.Host + "/… (url_file " + to.file + ")"
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
		return fmt.Errorf("http: POST %s: %w", shown, unwrapURLError(err))
	}
	defer resp.Body.Close()
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if resp.StatusCode/100 != 2 {
		secrets := sentSecrets(req)
		if to.file != "" {
			secrets = append(secrets, pathSegments(req.URL)...)
		}
		excerpt = []byte(redactEchoed(string(excerpt), secrets))
		// The reason phrase is the collector's text too.
		status := safetext.Cut(redactEchoed(resp.Status, secrets), 100)
		return &statusError{code: resp.StatusCode, msg: fmt.Sprintf("http: %s answered %s: %s", shown, status, clean(excerpt, 200))}
	}
	return nil
}

// pathSegments lists u's path segments, escaped and not: a url_file's
// path is secret as a whole, not only where it looks like a token.
// (redactEchoed leaves words under 6 bytes: v1, http, in.)
func pathSegments(u *url.URL) []string {
	var s []string
	for _, seg := range strings.Split(u.EscapedPath(), "/") {
		if seg != "" {
			s = append(s, seg)
			if dec, err := url.PathUnescape(seg); err == nil && dec != seg {
				s = append(s, dec)
			}
		}
	}
	return s
}

// sentSecrets lists what req carried that a collector's answer must not
// echo into pamctl's errors, log and `pamctl audit sinks`: the URL's query
// (raw, and each value), its path segments that may be tokens, and user info (and the Basic credentials Go sends
// for it), and every header value pamctl did not choose itself (the
// headers and headers_file values), whole and word by word ("Splunk
// <token>", "Bearer <token>").
func sentSecrets(req *http.Request) []string {
	var s []string
	u := req.URL
	if u.RawQuery != "" {
		s = append(s, u.RawQuery)
		for _, vs := range u.Query() {
			for _, v := range vs {
				s = append(s, v, url.QueryEscape(v))
			}
		}
	}
	for _, seg := range strings.Split(u.EscapedPath(), "/") {
		if tokenSegment(seg) { // a token in the path (safeURL hides it too)
			s = append(s, seg)
			if dec, err := url.PathUnescape(seg); err == nil {
				s = append(s, dec)
			}
		}
	}
	if u.User != nil {
		p, _ := u.User.Password()
		s = append(s, u.User.Username(), p, u.User.String(),
			base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+p)))
	}
	for k, vs := range req.Header {
		if k == "Content-Type" || k == "User-Agent" {
			continue
		}
		for _, v := range vs {
			s = append(s, v)
			s = append(s, strings.Fields(v)...)
		}
	}
	return s
}

// redactEchoed replaces in s, a collector's answer, every secret of at
// least safetext.MinSecret bytes with "[redacted]", longest first, however
// the collector wrote it back: in another ASCII case (or the whole secret
// upper- or lower-cased, for other letters), and each byte as itself or
// percent-encoded (%xx, hex in either case; '+' for a space), so a
// collector or proxy that normalises, decodes or encodes the URL it
// quotes does not undo the redaction.
func redactEchoed(s string, secrets []string) string {
	var forms []string
	seen := map[string]bool{}
	for _, x := range secrets {
		for _, f := range []string{x, strings.ToUpper(x), strings.ToLower(x)} {
			if len(f) >= safetext.MinSecret && !seen[f] {
				seen[f] = true
				forms = append(forms, f)
			}
		}
	}
	slices.SortFunc(forms, func(a, b string) int { return len(b) - len(a) })
	for _, x := range forms {
		s = replaceEchoed(s, x)
	}
	return s
}

// replaceEchoed replaces every run of s that spells x (echoedLen).
func replaceEchoed(s, x string) string {
	var b strings.Builder
	last := 0
	for i := 0; i < len(s); {
		if n := echoedLen(s[i:], x); n > 0 {
			b.WriteString(s[last:i])
			b.WriteString("[redacted]")
			i += n
			last = i
			continue
		}
		i++
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// echoedLen is the length of the prefix of s that spells x, byte by byte
// in any ASCII case, each byte as itself or as %xx ('+' for a space); 0
// when s does not start with x.
func echoedLen(s, x string) int {
	j := 0
	for k := 0; k < len(x); k++ {
		if j >= len(s) {
			return 0
		}
		want := lowerASCII(x[k])
		switch c := s[j]; {
		case c == '%' && j+2 < len(s) && isHex(s[j+1]) && isHex(s[j+2]) && lowerASCII(unhex(s[j+1])<<4|unhex(s[j+2])) == want:
			j += 3
		case c == '+' && want == ' ', lowerASCII(c) == want:
			j++
		default:
			return 0
		}
	}
	return j
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
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

// clean is a collector's answer (or a line of a file) for an error: at
// most n bytes of it, cut at a rune boundary with "…" after the quote,
// between quotes, as it is. It is not escaped: the error is data (the
// sink's status, `audit sinks -o json`, an audit event), and every place a
// person reads it escapes it once (the CLI, the log's handlers); escaped
// here too, a U+202E would read as the six characters \u202e.
func clean(b []byte, n int) string {
	if len(b) == 0 {
		return "(empty body)"
	}
	if len(b) <= n {
		return `"` + string(b) + `"`
	}
	return `"` + strings.TrimSuffix(safetext.Cut(string(b), n), "… (cut)") + `"…`
}

func (t *httpTarget) Close() error {
	t.client.CloseIdleConnections()
	return nil
}
