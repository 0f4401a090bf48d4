package auditsink

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pamctl/pamctl/broker/audit/headername"
	"github.com/pamctl/pamctl/broker/safefile"
	"github.com/pamctl/pamctl/broker/safetext"
)

// Sink types.
const (
	TypeSyslog = "syslog"
	TypeHTTP   = "http"
	TypeFile   = "file"
)

// HTTP body formats.
const (
	FormatJSONL     = "jsonl"
	FormatSplunkHEC = "splunk_hec"
)

// Defaults.
const (
	DefaultBatchMax = 500
	DefaultMaxSize  = 100 << 20
	DefaultMaxFiles = 10
	DefaultTimeout  = 30 * time.Second
)

// SinkConfig is one entry of audit.sinks.
type SinkConfig struct {
	// Name keys the sink's cursor; default "<type>:<destination>". Renaming
	// a sink (or changing its destination without a name) starts it over
	// from the first retained event.
	Name string `mapstructure:"name"`
	Type string `mapstructure:"type"` // syslog | http | file
	// Addr (syslog): tcp+tls://host:6514, tcp://host:514 or udp://host:514.
	Addr string `mapstructure:"addr"`
	// URL, Format, Headers, HeadersFile (http). Headers are sent as they
	// are and shown by `config check`: credentials go in HeadersFile, a
	// file of "Name: value" lines re-read for every request.
	URL string `mapstructure:"url"`
	// URLFile (http) names a file holding the URL instead, re-read for
	// every request: for a collector whose token is in the URL (Sumo
	// Logic, Loggly), which then stays out of the config. The sink is
	// named after the file, not the URL.
	URLFile     string            `mapstructure:"url_file"`
	Format      string            `mapstructure:"format"` // jsonl (default) | splunk_hec
	Headers     map[string]string `mapstructure:"headers"`
	HeadersFile string            `mapstructure:"headers_file"`
	// MaxMessage (syslog) bounds one message in bytes (header included):
	// an event over it goes as its stand-in. 0: UDP's maxUDP; TCP sends
	// events whole. Set it to the collector's limit (rsyslog's default
	// maxMessageSize is 8 KiB), which would otherwise cut the message.
	MaxMessage int `mapstructure:"max_message"`
	// CAFile (syslog over TLS, https) replaces the system roots.
	CAFile string `mapstructure:"ca_file"`
	// BatchMax bounds the events of one delivery (default 500).
	BatchMax int `mapstructure:"batch_max"`
	// Path, MaxSize (bytes, default 100 MiB) and MaxFiles (the active file
	// and its rotated copies, default 10) configure a file sink.
	Path     string `mapstructure:"path"`
	MaxSize  int64  `mapstructure:"max_size"`
	MaxFiles int    `mapstructure:"max_files"`
	// Timeout bounds one delivery (default 30s).
	Timeout time.Duration `mapstructure:"timeout"`
}

// AnchorConfig is audit.anchor: where signed heads are appended off-host.
// Set File or URL.
type AnchorConfig struct {
	File        string `mapstructure:"file"`
	URL         string `mapstructure:"url"`
	URLFile     string `mapstructure:"url_file"` // as SinkConfig.URLFile
	HeadersFile string `mapstructure:"headers_file"`
	CAFile      string `mapstructure:"ca_file"`
}

// Enabled reports whether an anchor is configured.
func (a AnchorConfig) Enabled() bool { return a.File != "" || a.URL != "" || a.URLFile != "" }

// Validate reports every problem of a.
func (a AnchorConfig) Validate() error {
	var errs []error
	set := 0
	for _, v := range []string{a.File, a.URL, a.URLFile} {
		if v != "" {
			set++
		}
	}
	switch {
	case set > 1:
		errs = append(errs, errors.New("set one of file, url and url_file"))
	case a.URL != "":
		if err := checkHTTPURL(a.URL); err != nil {
			errs = append(errs, err)
		}
	case a.URLFile != "":
		if !filepath.IsAbs(a.URLFile) {
			errs = append(errs, fmt.Errorf("url_file %q must be an absolute path", a.URLFile))
		}
	case a.File == "" && (a.HeadersFile != "" || a.CAFile != ""):
		errs = append(errs, errors.New("headers_file and ca_file need url or url_file"))
	}
	if a.File != "" && !filepath.IsAbs(a.File) { // C:\... or \\host\share\... on Windows
		errs = append(errs, fmt.Errorf("file %q must be an absolute path", a.File))
	}
	return errors.Join(errs...)
}

// Name is the cursor key of the anchor.
func (a AnchorConfig) Name() string {
	if a.File != "" {
		return "anchor:file:" + a.File
	}
	if a.URLFile != "" {
		return "anchor:url_file:" + a.URLFile
	}
	return "anchor:" + idURL(a.URL)
}

// Destination is the anchor's sink type and where it writes, as shown:
// its file, or its URL without credentials and with path tokens hidden.
func (a AnchorConfig) Destination() (typ, dest string) {
	if a.URL != "" || a.URLFile != "" {
		return TypeHTTP, a.ShownURL()
	}
	return TypeFile, a.File
}

// formerNames are the anchor's earlier cursor keys (formerIDs).
func (a AnchorConfig) formerNames() []string {
	if a.URLFile != "" {
		return urlFileFormers("anchor:", a.URLFile)
	}
	if l := a.legacyName(); l != "" {
		return []string{l}
	}
	return nil
}

// formerIDs are the sink's earlier cursor keys, newest first: before path
// tokens were hidden (legacyID), and for url_file the names its URL had
// as url (so moving a URL into url_file keeps the sink's place).
func (c SinkConfig) formerIDs() []string {
	if c.Name == "" && c.Type == TypeHTTP && c.URLFile != "" {
		return urlFileFormers("http:", c.URLFile)
	}
	if l := c.legacyID(); l != "" {
		return []string{l}
	}
	return nil
}

// urlFileFormers are the names a url_file's current URL had as url: now
// and before path tokens were hidden. None when the file cannot be read
// (the start refuses it then).
func urlFileFormers(prefix, file string) []string {
	u, err := readURLFile(file)
	if err != nil {
		return nil
	}
	out := []string{prefix + idURL(u)}
	if l := prefix + legacySafeURL(u); l != out[0] {
		out = append(out, l)
	}
	return out
}

// legacyName is the anchor's cursor key before path tokens were hidden,
// when it differs from Name.
func (a AnchorConfig) legacyName() string {
	if a.URL == "" || safeURL(a.URL) == legacySafeURL(a.URL) {
		return ""
	}
	return "anchor:" + legacySafeURL(a.URL)
}

// legacyID is the sink's cursor key before path tokens were hidden, when
// it differs from ID.
func (c SinkConfig) legacyID() string {
	if c.Name != "" || c.Type != TypeHTTP || c.URL == "" || safeURL(c.URL) == legacySafeURL(c.URL) {
		return ""
	}
	return "http:" + legacySafeURL(c.URL)
}

// AdoptRenamedCursors gives each unnamed sink (and the anchor) whose name
// changed (path tokens hidden; its URL moved into url_file) the cursor
// stored under a former name (formerIDs), when it has none under its
// name, so it does not deliver the trail again: authenticated under the
// old name, it is sealed under the new one (key); without an
// authenticator, or with a wrong one, it is taken as it is, for
// TrustCursor to judge. A former name that a configured sink or the
// anchor goes by now is not taken. cursors is changed in place.
func AdoptRenamedCursors(key []byte, cursors map[string]Cursor, sinks []SinkConfig, anchor AnchorConfig) {
	current := currentNames(sinks, anchor)
	adopt := func(name string, formers []string) {
		if _, ok := cursors[name]; ok {
			return
		}
		for _, old := range formers {
			c, ok := cursors[old]
			if !ok || current[old] {
				continue
			}
			if key != nil && c.MAC != "" && hmac.Equal([]byte(c.MAC), []byte(cursorMAC(key, old, c))) {
				c = SealCursor(key, name, c)
			}
			cursors[name] = c
			return
		}
	}
	for _, s := range sinks {
		adopt(s.ID(), s.formerIDs())
	}
	if anchor.Enabled() {
		adopt(anchor.Name(), anchor.formerNames())
	}
}

// ShownName is a stored cursor key as errors may show it: an earlier
// name holding a URL (before path tokens were hidden) gets its token
// segments, user info and query hidden as a sink's name does now; any
// other is cut to 300 bytes, raw (the error is escaped where it is
// printed).
func ShownName(name string) string {
	for _, p := range []string{"http:", "anchor:"} {
		if rest, ok := strings.CutPrefix(name, p); ok && (strings.HasPrefix(rest, "http://") || strings.HasPrefix(rest, "https://")) {
			return p + idURL(rest)
		}
	}
	return safetext.Cut(name, 300)
}

// currentNames are the cursor keys of the configured sinks and anchor.
func currentNames(sinks []SinkConfig, anchor AnchorConfig) map[string]bool {
	names := map[string]bool{}
	for _, s := range sinks {
		names[s.ID()] = true
	}
	if anchor.Enabled() {
		names[anchor.Name()] = true
	}
	return names
}

// ID is the sink's cursor key.
func (c SinkConfig) ID() string {
	if c.Name != "" {
		return c.Name
	}
	switch c.Type {
	case TypeSyslog:
		return "syslog:" + c.Addr
	case TypeHTTP:
		if c.URLFile != "" {
			return "http:url_file:" + c.URLFile
		}
		return "http:" + idURL(c.URL)
	case TypeFile:
		return "file:" + c.Path
	}
	return c.Type
}

// ShownURL is the sink's URL as pamctl shows it (config check): without
// user info, query and fragment, a token in its path hidden; the file's
// name for url_file, whose URL is not shown; "" when the sink has no URL.
func (c SinkConfig) ShownURL() string {
	return shownURL(c.URL, c.URLFile)
}

// ShownURL is the anchor's URL as pamctl shows it (SinkConfig.ShownURL).
func (a AnchorConfig) ShownURL() string {
	return shownURL(a.URL, a.URLFile)
}

func shownURL(raw, file string) string {
	switch {
	case file != "":
		return "url_file:" + file
	case raw == "":
		return ""
	}
	return safeURL(raw)
}

// Destination describes where the sink delivers, without credentials.
func (c SinkConfig) Destination() string {
	switch c.Type {
	case TypeSyslog:
		return c.Addr
	case TypeHTTP:
		return c.ShownURL()
	}
	return c.Path
}

// safeURL is a URL as pamctl shows and names it: without its user info,
// query and fragment, and with every path segment that looks like a token
// (tokenSegment) shown as "…", since some collectors put the ingestion
// token in the path (Sumo Logic /receiver/v1/http/<token>, Loggly
// /inputs/<token>/…).
func safeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid url)"
	}
	segs := strings.Split(u.EscapedPath(), "/")
	for i, seg := range segs {
		if tokenSegment(seg) {
			segs[i] = "…"
		}
	}
	return u.Scheme + "://" + u.Host + strings.Join(segs, "/")
}

// idURL is safeURL as a name (a sink's ID, the anchor's Name): when
// segments were hidden, "#" and 8 hex digits of the SHA-256 of the whole
// path follow, so two collectors that differ only in their token (two
// sources on one host) keep two names and two cursors. 32 bits of a
// hash tell nothing of a token worth hiding.
func idURL(raw string) string {
	safe := safeURL(raw)
	u, err := url.Parse(raw)
	if err != nil || !slices.ContainsFunc(strings.Split(u.EscapedPath(), "/"), tokenSegment) {
		return safe
	}
	sum := sha256.Sum256([]byte(u.EscapedPath()))
	return safe + "#" + hex.EncodeToString(sum[:4])
}

// legacySafeURL is what safeURL was before path tokens were hidden: the
// cursor key of an unnamed sink then (AdoptRenamedCursors).
func legacySafeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid url)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// tokenSegment reports a path segment that may be a credential: 16 bytes
// or more, or 8 or more mixing letters and digits. Words such as
// services, collector, receiver or v1 are not.
func tokenSegment(seg string) bool {
	if len(seg) >= 16 {
		return true
	}
	return len(seg) >= 8 && strings.ContainsAny(seg, "0123456789") &&
		strings.ContainsFunc(seg, func(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' })
}

func checkHTTPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url %q is not an http(s) URL", safeURL(raw))
	}
	return nil
}

// credentialHeader reports whether an inline header would put a secret in
// the config file (and in `config check`): its name is read by words as
// the proxy reads forward_headers' (headername.Credential), so a
// credential word anywhere in a word refuses it (X-Api-Key, Apikey,
// X-Amz-Security-Token, X-Monkey: fail closed) but an ordinary word
// holding one, whole, does not (X-Author, X-Keyword). Idempotency-Key,
// which only the proxy exempts, is refused here too.
func credentialHeader(name string) bool {
	return headername.Credential(name)
}

// Validate reports every problem of c.
func (c SinkConfig) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	only := func(what string, set bool) {
		if set {
			add("%s does not apply to a %s sink", what, c.Type)
		}
	}
	switch c.Type {
	case TypeSyslog:
		if _, _, err := parseSyslogAddr(c.Addr); err != nil {
			errs = append(errs, err)
		}
		only("url", c.URL != "")
		only("url_file", c.URLFile != "")
		only("path", c.Path != "")
		only("headers", len(c.Headers) > 0 || c.HeadersFile != "")
		only("format", c.Format != "")
	case TypeHTTP:
		switch {
		case c.URLFile != "" && c.URL != "":
			add("set url or url_file, not both")
		case c.URLFile != "":
			if !filepath.IsAbs(c.URLFile) {
				add("url_file %q must be an absolute path", c.URLFile)
			}
		default:
			if err := checkHTTPURL(c.URL); err != nil {
				errs = append(errs, err)
			}
		}
		switch c.Format {
		case "", FormatJSONL, FormatSplunkHEC:
		default:
			add("format %q must be %s or %s", c.Format, FormatJSONL, FormatSplunkHEC)
		}
		for name, value := range c.Headers {
			if why := headerLineProblem(name, value); why != "" {
				// Neither is quoted: a pasted line may hold anything.
				add("headers: an entry cannot be sent: %s", why)
				continue
			}
			if credentialHeader(name) {
				add("headers: %s looks like a credential: put it in headers_file (a file of \"Name: value\" lines) so it stays out of the config", name)
			}
		}
		only("addr", c.Addr != "")
		only("path", c.Path != "")
	case TypeFile:
		if c.Path == "" || !filepath.IsAbs(c.Path) {
			add("path %q must be an absolute path", c.Path)
		}
		only("addr", c.Addr != "")
		only("url", c.URL != "")
		only("url_file", c.URLFile != "")
		only("headers", len(c.Headers) > 0 || c.HeadersFile != "")
		only("ca_file", c.CAFile != "")
		only("format", c.Format != "")
	default:
		add("type %q must be syslog, http or file", c.Type)
	}
	if c.Type != TypeSyslog {
		only("max_message", c.MaxMessage != 0)
	} else if c.MaxMessage < 0 || c.MaxMessage > 0 && (c.MaxMessage < MinMaxMessage || c.MaxMessage > maxUDP && strings.HasPrefix(c.Addr, "udp://")) {
		add("max_message %d must be at least %d bytes, the largest stand-in, and at most %d over udp:// (0: whole events over TCP, %d over UDP)", c.MaxMessage, MinMaxMessage, maxUDP, maxUDP)
	}
	if c.Type != TypeFile {
		only("max_size", c.MaxSize != 0)
		only("max_files", c.MaxFiles != 0)
	}
	if c.BatchMax < 0 || c.BatchMax > 10000 {
		add("batch_max %d must be between 1 and 10000 (0: %d)", c.BatchMax, DefaultBatchMax)
	}
	if c.MaxSize < 0 || (c.MaxSize > 0 && c.MaxSize < 64<<10) {
		add("max_size %d must be at least 65536 bytes (0: %d)", c.MaxSize, DefaultMaxSize)
	}
	if c.MaxFiles < 0 || c.MaxFiles == 1 {
		add("max_files %d must be at least 2, the active file and one rotated copy (0: %d)", c.MaxFiles, DefaultMaxFiles)
	}
	return errors.Join(errs...)
}

// ValidateAll checks every sink and that their cursor keys are distinct.
func ValidateAll(sinks []SinkConfig, anchor AnchorConfig) []error {
	var errs []error
	seen := map[string]int{}
	for i, c := range sinks {
		if err := c.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("audit.sinks[%d] (%s): %w", i, c.Type, err))
		}
		if j, dup := seen[c.ID()]; dup {
			errs = append(errs, fmt.Errorf("audit.sinks[%d]: same name or destination as audit.sinks[%d] (%s): give one a distinct name", i, j, c.ID()))
		}
		seen[c.ID()] = i
	}
	if err := anchor.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("audit.anchor: %w", err))
	}
	return errs
}

// parseSyslogAddr splits tcp+tls://host:port, tcp://… or udp://…: a host
// and a port number, nothing else (no user info, path or query, which
// would end up in the sink's name, logs and metrics).
func parseSyslogAddr(raw string) (scheme, hostport string, err error) {
	scheme, hostport, ok := strings.Cut(raw, "://")
	if !ok || (scheme != "tcp+tls" && scheme != "tcp" && scheme != "udp") {
		return "", "", fmt.Errorf("addr %q must be tcp+tls://host:port, tcp://host:port or udp://host:port", shownAddr(raw))
	}
	h, p, err := net.SplitHostPort(hostport)
	if err != nil || h == "" || strings.ContainsAny(h, "@/?#") || !syslogPort(p) {
		return "", "", fmt.Errorf("addr %q: after %s:// put host:port only (a port number; no user info, path or query)", shownAddr(raw), scheme)
	}
	return scheme, hostport, nil
}

// syslogPort reports a port number (1-65535) or a service name ("syslog").
func syslogPort(p string) bool {
	if n, err := strconv.Atoi(p); err == nil {
		return n >= 1 && n <= 65535
	}
	return servicePort.MatchString(p)
}

var servicePort = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9-]{0,31}$`)

// shownAddr is a syslog address for an error: without what may be a
// credential (user info, and anything after ? or #).
func shownAddr(raw string) string {
	s := raw
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i] + "…"
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		start := 0
		if j := strings.Index(s, "://"); j >= 0 && j < i {
			start = j + 3
		}
		s = s[:start] + "…" + s[i:]
	}
	return s
}

// tlsConfig trusts caFile's certificates, or the system roots when empty.
func tlsConfig(caFile, serverName string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if caFile == "" {
		return c, nil
	}
	pem, err := safefile.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_file %s holds no PEM certificate", caFile)
	}
	c.RootCAs = pool
	return c, nil
}

// readURLFile reads a url_file: one http(s) URL, surrounding space
// ignored. Errors never quote the URL.
func readURLFile(path string) (string, error) {
	raw, err := safefile.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("url_file: %w", err)
	}
	s := strings.TrimSpace(string(raw))
	if s == "" || strings.ContainsAny(s, "\r\n\t ") {
		return "", fmt.Errorf("url_file %s must hold one URL on one line", path)
	}
	if u, err := url.Parse(s); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("url_file %s does not hold an http(s) URL", path)
	}
	return s, nil
}

// readHeaders reads a headers file: "Name: value" lines; blank lines and
// lines starting with # are skipped. Errors never quote a value.
func readHeaders(path string) (http.Header, error) {
	raw, err := safefile.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("headers_file: %w", err)
	}
	h := http.Header{}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("headers_file %s line %d: not a \"Name: value\" line", path, n)
		}
		if why := headerLineProblem(name, value); why != "" {
			return nil, fmt.Errorf("headers_file %s line %d: %s: fix the line", path, n, why)
		}
		h.Add(name, value)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("headers_file %s: %w", path, err)
	}
	return h, nil
}
