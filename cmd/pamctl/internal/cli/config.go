package cli

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/auditsink"
	"github.com/pamctl/pamctl/broker/link"
	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/policy"
	"github.com/pamctl/pamctl/broker/safefile"
	"github.com/pamctl/pamctl/broker/tlsconf"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/ui"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/memlimit"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/tracing"
	"github.com/pamctl/pamctl/proxy"
	"github.com/pamctl/pamctl/proxy/mask"
	"github.com/pamctl/pamctl/proxy/payload"
	"github.com/pamctl/pamctl/proxy/rules"
	"github.com/pamctl/pamctl/store"
	"github.com/pamctl/pamctl/store/etcdstore"
)

// Config is the typed configuration: flags > PAMCTL_* environment > file.
type Config struct {
	// Role is what `pamctl serve` runs: all (broker and proxy in one
	// process, the default), broker, or proxy (docs/deployment.md).
	Role   string `mapstructure:"role"`
	Server string `mapstructure:"server"`
	// CAFile is a PEM file of CA certificates the CLI trusts besides the
	// system roots, for the broker, its dev issuer and (in pamctl exec's
	// child) the proxy.
	CAFile string `mapstructure:"ca_file"`
	// ClientCertFile and ClientKeyFile are the certificate and key the CLI
	// and a proxy-role process present to a broker that requires client
	// certificates (broker.tls.client_ca_file: mTLS), re-read when they
	// change.
	ClientCertFile string         `mapstructure:"client_cert_file"`
	ClientKeyFile  string         `mapstructure:"client_key_file"`
	Broker         ListenConfig   `mapstructure:"broker"`
	Proxy          ProxyConfig    `mapstructure:"proxy"`
	DataDir        string         `mapstructure:"data_dir"`
	MasterKeyFile  string         `mapstructure:"master_key_file"`
	Sessions       SessionsConfig `mapstructure:"sessions"`
	// SessionTTL is the old name of sessions.max_lifetime (still read).
	SessionTTL time.Duration       `mapstructure:"session_ttl"`
	Issuers    []oidc.IssuerConfig `mapstructure:"issuers"`
	Upstreams  []UpstreamConfig    `mapstructure:"upstreams"`
	Policies   policy.Set          `mapstructure:"policies"`
	Rules      []rules.Rule        `mapstructure:"rules"`
	Masking    MaskingConfig       `mapstructure:"masking"`
	Audit      AuditConfig         `mapstructure:"audit"`
	Requests   RequestsConfig      `mapstructure:"requests"`
	Notify     NotifyConfig        `mapstructure:"notify"`
	UI         UIConfig            `mapstructure:"ui"`
	Approvals  ApprovalsConfig     `mapstructure:"approvals"`
	Log        LogConfig           `mapstructure:"log"`
	Metrics    MetricsConfig       `mapstructure:"metrics"`
	Tracing    tracing.Config      `mapstructure:"tracing"`

	// MemoryLimit is the Go heap's soft limit for serve, in bytes: 0 picks
	// 90 % of the container's memory limit (none outside a limited
	// cgroup), -1 none. GOMEMLIMIT wins (package memlimit).
	MemoryLimit int64 `mapstructure:"memory_limit"`
	// MemoryFloor is the heap goal serve keeps at least, in bytes, so the
	// collector does not run every few MiB of garbage: 0 for 32 MiB, -1 for
	// none. GOGC wins; at most half the memory limit (package memlimit).
	MemoryFloor int64 `mapstructure:"memory_floor"`

	// Store picks where shared state lives: bbolt in data_dir (one host)
	// or an etcd cluster (replicas). See docs/deployment.md.
	Store StoreConfig `mapstructure:"store"`

	// File is the config file that was read, if any.
	File string `mapstructure:"-"`
	// present holds the top-level keys the file sets to something other
	// than null (see Sets).
	present map[string]bool
}

// Sets reports whether the config file states top-level key k explicitly
// (an empty list counts; a missing key or a bare "k:" does not).
func (c *Config) Sets(k string) bool { return c.present[k] }

// MetricsConfig is the Prometheus listener (off while Addr is empty).
type MetricsConfig struct {
	// Addr serves GET /metrics, e.g. 127.0.0.1:9700.
	Addr string `mapstructure:"addr"`
	// Hostnames are DNS names the metrics listener answers to besides IP
	// literals, localhost and the broker's and proxy's names (a scrape by
	// another name); other Host headers get 421 (DNS rebinding).
	Hostnames []string `mapstructure:"hostnames"`
	// TLS and InsecurePlaintext work as on the broker's and proxy's
	// listeners: off loopback, plaintext is refused unless
	// insecure_plaintext says something in front terminates TLS.
	TLS               tlsconf.Config `mapstructure:"tls"`
	InsecurePlaintext bool           `mapstructure:"insecure_plaintext"`
}

// ListenConfig is an address to listen on.
type ListenConfig struct {
	Addr string `mapstructure:"addr"`
	// Hostnames (broker only) are the DNS names clients reach the broker by; other Host
	// headers are refused (IP literals, localhost and the host of `server:`
	// are always accepted). See docs/identity.md, "Browsers and serve --dev".
	Hostnames []string `mapstructure:"hostnames"`
	// TLS serves the listener over TLS; without it a non-loopback address
	// is refused unless InsecurePlaintext (a TLS-terminating load
	// balancer in front).
	TLS               tlsconf.Config `mapstructure:"tls"`
	InsecurePlaintext bool           `mapstructure:"insecure_plaintext"`
}

// ProxyConfig configures the proxy listener and its limits.
type ProxyConfig struct {
	Addr        string        `mapstructure:"addr"`
	MaxBody     int64         `mapstructure:"max_body"`
	Timeout     time.Duration `mapstructure:"timeout"`
	HoldTimeout time.Duration `mapstructure:"hold_timeout"`
	// MaxInflightBytes bounds the request-body bytes held by all calls in
	// flight (0: 8 × max_body); BodyTimeout bounds the time a client may
	// take to send one; Hostnames are the Host names the proxy answers to
	// besides the loopback names it always accepts on a loopback address.
	MaxInflightBytes int64         `mapstructure:"max_inflight_bytes"`
	BodyTimeout      time.Duration `mapstructure:"body_timeout"`
	Hostnames        []string      `mapstructure:"hostnames"`
	// TLS and InsecurePlaintext: as for the broker (ListenConfig).
	TLS               tlsconf.Config `mapstructure:"tls"`
	InsecurePlaintext bool           `mapstructure:"insecure_plaintext"`
	// The proxy role (docs/deployment.md): the workload identity it
	// enrolls with; how long it serves without the broker's revocation
	// stream (0: the 30s default); how many unshipped audit bytes it
	// spools before refusing calls (0: 1 GiB).
	Identity            ProxyIdentityConfig `mapstructure:"identity"`
	RevocationStaleness time.Duration       `mapstructure:"revocation_staleness"`
	SpoolMax            int64               `mapstructure:"spool_max"`
}

// Store backends.
const (
	BackendBbolt = "bbolt"
	BackendEtcd  = "etcd"
)

// StoreConfig is the store: section.
type StoreConfig struct {
	// Backend is bbolt (the default: pamctl.db in data_dir) or etcd.
	Backend string     `mapstructure:"backend"`
	Etcd    EtcdConfig `mapstructure:"etcd"`
}

// EtcdConfig is store.etcd: the cluster the replicas share.
type EtcdConfig struct {
	// Endpoints are the members' client URLs (https://, or http:// on
	// loopback only).
	Endpoints []string `mapstructure:"endpoints"`
	// Prefix is the key prefix ("/pamctl/"): one per deployment.
	Prefix      string        `mapstructure:"prefix"`
	DialTimeout time.Duration `mapstructure:"dial_timeout"`
	TLS         EtcdTLSConfig `mapstructure:"tls"`
	// Username and PasswordFile: etcd's own authentication; the password
	// is read from the file (never from the config itself).
	Username     string `mapstructure:"username"`
	PasswordFile string `mapstructure:"password_file"`
}

// EtcdTLSConfig is store.etcd.tls: the CA that signed the members'
// certificates (default: the system roots) and the client certificate
// when the cluster requires one.
type EtcdTLSConfig struct {
	CAFile   string `mapstructure:"ca_file"`
	CertFile string `mapstructure:"cert_file"`
	KeyFile  string `mapstructure:"key_file"`
}

// Enabled reports whether any TLS setting is given.
func (t EtcdTLSConfig) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// ProxyIdentityConfig is proxy.identity: the workload's OIDC ID token
// file (a Kubernetes service-account or CI token), re-read when it rotates.
type ProxyIdentityConfig struct {
	IDTokenFile string `mapstructure:"id_token_file"`
}

// Server roles.
const (
	RoleAll    = "all"
	RoleBroker = "broker"
	RoleProxy  = "proxy"
)

// SessionsConfig bounds broker sessions: an absolute lifetime from login
// and an idle timeout (0 turns it off). See docs/sessions.md.
type SessionsConfig struct {
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
	MaxLifetime time.Duration `mapstructure:"max_lifetime"`
}

// UpstreamConfig is one OpenAI-compatible upstream.
type UpstreamConfig struct {
	Name         string        `mapstructure:"name"`
	URL          string        `mapstructure:"url"`
	Key          string        `mapstructure:"key"` // vault entry
	Organization string        `mapstructure:"organization"`
	Project      string        `mapstructure:"project"`
	Timeout      time.Duration `mapstructure:"timeout"`
	// ForwardHeaders are client headers this upstream gets besides the
	// ones the OpenAI SDKs send (proxy/headers.go).
	ForwardHeaders []string `mapstructure:"forward_headers"`
	// KeyHeader is the header the vaulted key goes in (default
	// Authorization, as "Bearer <key>"; any other carries the key alone).
	KeyHeader string `mapstructure:"key_header"`
	// ExtraKey is a second vaulted key sent in a header of its own.
	ExtraKey ExtraKeyConfig `mapstructure:"extra_key"`
}

// ExtraKeyConfig names a second vaulted key and the header it goes in.
type ExtraKeyConfig struct {
	Header string `mapstructure:"header"`
	Key    string `mapstructure:"key"` // vault entry
}

// proxyUpstream is u as the proxy takes it.
func (u UpstreamConfig) proxyUpstream() proxy.Upstream {
	up := proxy.Upstream{Name: u.Name, URL: u.URL, KeyName: u.Key, Organization: u.Organization, Project: u.Project, Timeout: u.Timeout,
		ForwardHeaders: u.ForwardHeaders, KeyHeader: u.KeyHeader}
	if u.ExtraKey != (ExtraKeyConfig{}) {
		up.ExtraKey = &proxy.ExtraKey{Header: u.ExtraKey.Header, KeyName: u.ExtraKey.Key}
	}
	return up
}

// MaskingConfig picks detectors and actions per direction: the prompt on its
// way upstream, the response on its way back.
type MaskingConfig struct {
	Response mask.Config `mapstructure:"response"`
	Prompt   mask.Config `mapstructure:"prompt"`
}

// AuditConfig configures the audit trail.
type AuditConfig struct {
	Sync         string        `mapstructure:"sync"` // durable | async
	Retention    time.Duration `mapstructure:"retention"`
	SummaryBytes int           `mapstructure:"summary_bytes"` // how much of each (masked) answer an event keeps
	// HeadEvery and HeadInterval: the chain head is signed every N events
	// and on a timer while unsigned events exist; each signed head also
	// goes to the sinks and the anchor.
	HeadEvery    int           `mapstructure:"head_every"`
	HeadInterval time.Duration `mapstructure:"head_interval"`
	// Sinks stream the trail out (syslog, HTTP, file); Anchor receives the
	// signed heads somewhere this host can append to but not rewrite.
	Sinks  []auditsink.SinkConfig `mapstructure:"sinks"`
	Anchor auditsink.AnchorConfig `mapstructure:"anchor"`
}

// RequestsConfig is the requests: section.
type RequestsConfig struct {
	// Retention is how long a request that is over (denied, expired,
	// revoked) stays in the store; 0 keeps them forever.
	Retention time.Duration `mapstructure:"retention"`
}

// NotifyConfig configures notifications (docs/notifications.md): the
// generic JSON webhook, and Slack and Teams channels.
type NotifyConfig struct {
	Webhook string         `mapstructure:"webhook"`
	Slack   ChatHookConfig `mapstructure:"slack"`
	Teams   ChatHookConfig `mapstructure:"teams"`
}

// UIConfig is the web approval page the broker serves under /ui/
// (broker/ui, docs/approvals.md).
type UIConfig struct {
	Enabled bool `mapstructure:"enabled"`
	// PublicURL is the address people reach the broker by, e.g.
	// https://pam.example.com: the OIDC redirect URI is
	// <public_url>/ui/callback and links in notifications, `pamctl
	// request` and held-call errors point below it.
	PublicURL string `mapstructure:"public_url"`
	// InsecurePlaintext allows an http:// public_url (on loopback only)
	// outside serve --dev. Browsers do not keep cookies apart by port, so
	// any other listener on that host is sent the approvers' session
	// cookies: only for a host where nobody else runs anything.
	InsecurePlaintext bool `mapstructure:"insecure_plaintext"`
}

// ApprovalsConfig is the approvals: section.
type ApprovalsConfig struct {
	// ReauthAfter is how recent an IdP authentication approving, denying,
	// revoking another person's grant and reading the audit trail need
	// (step-up; docs/sessions.md). Applied on reload.
	ReauthAfter time.Duration `mapstructure:"reauth_after"`
}

// LogConfig configures server logs.
type LogConfig struct {
	Format string `mapstructure:"format"` // text | json ("" = text on a terminal, json otherwise)
	Level  string `mapstructure:"level"`
}

// Defaults.
const (
	DefaultBrokerAddr = "127.0.0.1:8700"
	DefaultProxyAddr  = "127.0.0.1:8701"
)

// DataHome is $XDG_DATA_HOME or ~/.local/share.
func DataHome() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".local", "share")
}

// ConfigHome is $XDG_CONFIG_HOME or ~/.config (os.UserConfigDir on Linux).
func ConfigHome() string {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return d
	}
	if d, err := os.UserConfigDir(); err == nil {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".config")
}

func setDefaults(v *viper.Viper) {
	v.SetDefault("role", RoleAll)
	v.SetDefault("server", "http://"+DefaultBrokerAddr)
	v.SetDefault("broker.addr", DefaultBrokerAddr)
	v.SetDefault("proxy.addr", DefaultProxyAddr)
	v.SetDefault("proxy.max_body", 8<<20)
	v.SetDefault("proxy.timeout", 10*time.Minute)
	v.SetDefault("proxy.hold_timeout", 60*time.Second)
	v.SetDefault("proxy.body_timeout", proxy.DefaultBodyTimeout)
	v.SetDefault("data_dir", filepath.Join(DataHome(), "pamctl"))
	v.SetDefault("master_key_file", filepath.Join(ConfigHome(), "pamctl", "master.key"))
	v.SetDefault("store.backend", BackendBbolt)
	v.SetDefault("store.etcd.prefix", etcdstore.DefaultPrefix)
	v.SetDefault("store.etcd.dial_timeout", etcdstore.DefaultDialTimeout)
	v.SetDefault("sessions.idle_timeout", broker.DefaultIdleTimeout)
	v.SetDefault("approvals.reauth_after", broker.DefaultReauthAfter)
	v.SetDefault("masking.response.default", "mask")
	v.SetDefault("masking.prompt.default", "off")
	v.SetDefault("audit.sync", "durable")
	v.SetDefault("audit.retention", 90*24*time.Hour)
	v.SetDefault("requests.retention", 90*24*time.Hour)
	v.SetDefault("audit.summary_bytes", proxy.DefaultSummaryBytes)
	v.SetDefault("audit.head_every", store.DefaultHeadEvery)
	v.SetDefault("audit.head_interval", store.DefaultHeadInterval)
	v.SetDefault("tracing.sample_ratio", 1.0)
	v.SetDefault("upstreams", []map[string]any{{"name": "openai", "url": "https://api.openai.com/v1", "key": "openai"}})
}

// flagKeys maps command-line flag names to config keys.
var flagKeys = map[string]string{
	"server":           "server",
	"data-dir":         "data_dir",
	"master-key-file":  "master_key_file",
	"broker-addr":      "broker.addr",
	"proxy-addr":       "proxy.addr",
	"log-format":       "log.format",
	"ca-file":          "ca_file",
	"client-cert-file": "client_cert_file",
	"client-key-file":  "client_key_file",
	"role":             "role",
}

// BrokerClientFiles is how pamctl's clients of the broker (the CLI, a
// proxy-role process) authenticate it and, for mTLS, themselves.
func (c *Config) BrokerClientFiles() tlsconf.ClientFiles {
	return tlsconf.ClientFiles{CAFile: c.CAFile, CertFile: c.ClientCertFile, KeyFile: c.ClientKeyFile}
}

// brokerTransport is the HTTP transport of BrokerClientFiles, its error
// naming the setting at fault.
func (c *Config) brokerTransport() (*http.Transport, error) {
	if _, err := tlsconf.ClientConfig(c.CAFile); err != nil {
		return nil, fmt.Errorf("ca_file (--ca-file, PAMCTL_CA_FILE): %w", err)
	}
	tr, err := tlsconf.ClientTransport(c.BrokerClientFiles())
	if err != nil {
		return nil, fmt.Errorf("client_cert_file / client_key_file (--client-cert-file, --client-key-file, PAMCTL_CLIENT_CERT_FILE, PAMCTL_CLIENT_KEY_FILE): %w", err)
	}
	return tr, nil
}

// LoadConfig reads the configuration. file may be empty: then PAMCTL_CONFIG
// or $XDG_CONFIG_HOME/pamctl/config.yaml is used if it exists.
func LoadConfig(file string, flags *pflag.FlagSet) (*Config, error) {
	if err := checkEnv(os.Environ()); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	v := viper.New()
	setDefaults(v)
	v.SetEnvPrefix("PAMCTL")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	// AutomaticEnv only sees keys viper knows; bind every single-valued
	// key so each one can come from PAMCTL_*.
	for _, k := range envKeys() {
		if err := v.BindEnv(k); err != nil {
			return nil, err
		}
	}
	if flags != nil {
		for name, key := range flagKeys {
			if f := flags.Lookup(name); f != nil {
				if err := v.BindPFlag(key, f); err != nil {
					return nil, err
				}
			}
		}
	}
	if file == "" {
		file = os.Getenv("PAMCTL_CONFIG")
	}
	explicit := file != ""
	if file == "" {
		file = filepath.Join(ConfigHome(), "pamctl", "config.yaml")
	}
	var present map[string]bool
	if _, err := os.Stat(file); err == nil || explicit {
		raw, err := readConfigFile(file)
		if err != nil {
			return nil, err
		}
		// Check the file's keys first: viper would drop unknown ones.
		if present, err = checkFile(raw); err != nil {
			return nil, fmt.Errorf("config %s:\n%w", file, err)
		}
		v.SetConfigType("yaml")
		if err := v.ReadConfig(bytes.NewReader(raw)); err != nil {
			return nil, fmt.Errorf("config %s: %w", file, err)
		}
	} else {
		file = ""
	}
	cfg, err := decode(v)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", decodeSource(err, file), err)
	}
	cfg.File = file
	cfg.present = present
	return cfg, nil
}

// maxConfigFile bounds the config file: far above any real one (a
// thousand policies and rules are a few hundred KiB).
const maxConfigFile = 8 << 20

// readConfigFile reads the config file as pamctl reads every file that
// decides whom it trusts (safefile): a regular file, at most
// maxConfigFile, that no local user but root and pamctl's own may write
// or replace (its mode, owner and group, and every directory and symlink
// on its way). The file names the policies, issuers and upstreams serve
// enforces and the broker the CLI sends ID tokens to: whoever may change
// it decides who gets access. A file on a read-only mount is judged by
// the directories on its way only (safefile).
func readConfigFile(file string) ([]byte, error) {
	raw, err := safefile.Read(file, maxConfigFile)
	if errors.Is(err, safefile.ErrSwappable) {
		return nil, fmt.Errorf("config: %w; pamctl refuses a config file another local user may change: it names the policies and issuers serve enforces and the broker the CLI sends your ID token to", err)
	}
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", file, err)
	}
	return raw, nil
}

// decodeSource names where the settings a decode error names came from:
// the PAMCTL_* variables set for them, the file, or both. Each of the
// decoder's lines starts with the key it is about, in quotes.
func decodeSource(err error, file string) string {
	set := envSet()
	var env []string
	fromFile := false
	for _, line := range strings.Split(err.Error(), "\n") {
		key, ok := strings.CutPrefix(strings.TrimSpace(line), "'")
		if !ok {
			continue
		}
		if key, _, ok = strings.Cut(key, "'"); !ok {
			continue
		}
		if name, ok := set[key]; ok {
			if !slices.Contains(env, name) {
				env = append(env, name)
			}
		} else {
			fromFile = true
		}
	}
	switch {
	case len(env) == 0:
		return orDefault(file, "(defaults)")
	case fromFile && file != "":
		return file + " and the environment (" + strings.Join(env, ", ") + ")"
	default:
		return "from the environment (" + strings.Join(env, ", ") + ")"
	}
}

// namesKey reports whether text names the config key k: the whole key
// ("broker.tls.client_ca_file"), or its section and its last part each as
// a whole word ("broker.tls: client_ca_file needs …"). A key inside a
// longer one (ca_file in client_ca_file) does not count.
func namesKey(text, k string) bool {
	if hasWord(text, k) {
		return true
	}
	i := strings.LastIndexByte(k, '.')
	return i > 0 && hasWord(text, k[:i]) && hasWord(text, k[i+1:])
}

// hasWord reports whether w occurs in text with no key character (letter,
// digit, _, - or a . that goes on) right before or after it.
func hasWord(text, w string) bool {
	keyChar := func(c byte) bool {
		return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
	}
	for from := 0; ; {
		i := strings.Index(text[from:], w)
		if i < 0 {
			return false
		}
		i += from
		end := i + len(w)
		before := i > 0 && (keyChar(text[i-1]) || text[i-1] == '.')
		after := end < len(text) && (keyChar(text[end]) || text[end] == '.' && end+1 < len(text) && keyChar(text[end+1]))
		if !before && !after {
			return true
		}
		from = i + 1
	}
}

// envSet maps each configuration key set in the environment to its
// PAMCTL_* variable.
func envSet() map[string]string {
	set := map[string]string{}
	for _, k := range envKeys() {
		if _, ok := os.LookupEnv(EnvName(k)); ok {
			set[k] = EnvName(k)
		}
	}
	return set
}

// settingSources is where the settings an error about a loaded
// configuration names came from, for its first line: " in FILE", and the
// PAMCTL_* variables set for the keys the error names (they override the
// file).
func settingSources(file string, err error) string {
	var env []string
	for k, name := range envSet() {
		if namesKey(err.Error(), k) {
			env = append(env, name)
		}
	}
	slices.Sort(env)
	switch {
	case len(env) == 0 && file == "":
		return ""
	case len(env) == 0:
		return " in " + file
	case file == "":
		return " (set by " + strings.Join(env, ", ") + ")"
	default:
		return " in " + file + " or the environment (" + strings.Join(env, ", ") + ")"
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func decode(v *viper.Viper) (*Config, error) {
	var cfg Config
	// ErrorUnused backs up checkFile: nothing viper holds may go unused.
	err := v.Unmarshal(&cfg, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		durationHook,
		integerHook,
		mapstructure.StringToSliceHookFunc(","),
	)), func(dc *mapstructure.DecoderConfig) { dc.ErrorUnused = true })
	if err != nil {
		return nil, err
	}
	// session_ttl is the old name of sessions.max_lifetime; Validate
	// refuses the two set to different values.
	if cfg.Sessions.MaxLifetime == 0 {
		cfg.Sessions.MaxLifetime = cfg.SessionTTL
	}
	if cfg.Sessions.MaxLifetime == 0 {
		cfg.Sessions.MaxLifetime = broker.MaxSessionTTL
	}
	return &cfg, nil
}

// durationHook accepts Go durations plus a "d" (day) suffix: "90d",
// "1d12h". A bare number is refused: `retention: 90` used to mean 90ns.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != durationType {
		return data, nil
	}
	if d, ok := data.(string); ok {
		return ParseDuration(d)
	}
	if from == durationType {
		return data, nil // a default set in code
	}
	switch from.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return nil, fmt.Errorf("%v has no unit; write e.g. %vs, %vm, %vh or %vd (a bare number is not a duration)", data, data, data, data, data)
	}
	return data, nil
}

// integerHook decodes whole-number settings strictly: YAML integers (and
// floats with nothing after the point, as YAML reads 1e9), and decimal
// strings, as environment variables arrive. Viper's weak typing would read
// true as 1, 1.9 as 1, "010" as octal 8 and wrap values out of range.
func integerHook(from, to reflect.Type, data any) (any, error) {
	if to == durationType {
		return data, nil
	}
	if !isInteger(to) {
		return data, nil
	}
	signed := to.Kind() >= reflect.Int && to.Kind() <= reflect.Int64
	v := reflect.ValueOf(data)
	var n big.Int
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n.SetInt64(v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n.SetUint64(v.Uint())
	case reflect.Float32, reflect.Float64:
		f := v.Float()
		if f != math.Trunc(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%v is not a whole number", data)
		}
		// Whether it is the number written (past 2^53 a float64 may not
		// be) only the file's text says: checkFile compared them.
		big.NewFloat(f).Int(&n)
	case reflect.String:
		s := strings.TrimSpace(v.String())
		if len(s) > maxNumeral {
			return nil, fmt.Errorf("a value of %d bytes is too long to be a whole number", len(s))
		}
		if _, ok := n.SetString(s, 10); !ok {
			return nil, fmt.Errorf("%s is not a whole number in decimal", shownValue(v.String()))
		}
	default:
		return nil, fmt.Errorf("%v is not a whole number", data)
	}
	if err := inRange(&n, to); err != nil {
		return nil, err
	}
	if signed {
		return n.Int64(), nil
	}
	return n.Uint64(), nil
}

// isInteger reports whether t is a Go integer type (not a duration).
func isInteger(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return t != durationType
	}
	return false
}

// inRange refuses n when the integer type t cannot hold it.
func inRange(n *big.Int, t reflect.Type) error {
	lo, hi := new(big.Int), new(big.Int).Lsh(big.NewInt(1), uint(t.Bits()))
	if t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64 {
		hi.Rsh(hi, 1)
		lo.Neg(hi)
	}
	hi.Sub(hi, big.NewInt(1))
	if n.Cmp(lo) < 0 {
		return fmt.Errorf("%s is too small (at least %s)", n.String(), lo)
	}
	if n.Cmp(hi) > 0 {
		return fmt.Errorf("%s is too large (at most %s)", n.String(), hi)
	}
	return nil
}

// maxDays is the most whole days a time.Duration holds (about 292 years).
const maxDays = int(math.MaxInt64 / int64(24*time.Hour))

// durationFlag is a flag that reads durations as the config does: Go
// durations plus whole days ("2d", "1d12h").
type durationFlag struct{ d *time.Duration }

func (f durationFlag) Set(s string) error {
	d, err := ParseDuration(s)
	if err != nil {
		return err
	}
	if d <= 0 {
		// Left out, the flag means its default; 0 or a negative
		// duration would silently mean the same.
		return fmt.Errorf("%q is not a length of time: give one more than 0, e.g. 30m, 8h or 2d, or leave the flag out", s)
	}
	*f.d = d
	return nil
}

func (f durationFlag) String() string {
	if f.d == nil || *f.d == 0 {
		return "0" // no "(default …)" in help
	}
	return f.d.String()
}

func (durationFlag) Type() string { return "duration" }

// ParseDuration parses a Go duration that may start with whole days ("90d", "1d12h").
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	const hint = "(use e.g. 30m, 8h, 90d or 1d12h)"
	if i := strings.Index(s, "d"); i > 0 && strings.Trim(s[:i], "0123456789") == "" {
		days, err := strconv.Atoi(s[:i])
		if err != nil || days > maxDays {
			return 0, fmt.Errorf("invalid duration %s: whole days from 0 to %d %s", shownValue(s), maxDays, hint)
		}
		rest := time.Duration(0)
		if tail := s[i+1:]; strings.HasPrefix(tail, "-") || strings.HasPrefix(tail, "+") {
			return 0, fmt.Errorf("invalid duration %s: days take no signed remainder %s", shownValue(s), hint)
		} else if tail != "" {
			if rest, err = time.ParseDuration(tail); err != nil {
				return 0, fmt.Errorf("invalid duration %s %s", shownValue(s), hint)
			}
		}
		if rest > math.MaxInt64-time.Duration(days)*24*time.Hour {
			return 0, fmt.Errorf("invalid duration %s: too long (at most %d days) %s", shownValue(s), maxDays, hint)
		}
		return time.Duration(days)*24*time.Hour + rest, nil
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return 0, fmt.Errorf("%s has no unit; write e.g. %ss, %sm, %sh or %sd (a bare number is not a duration)", s, s, s, s, s)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %s %s", shownValue(s), hint)
	}
	return d, nil
}

// shownValue quotes a value an error is about when it looks like a
// mistyped number or duration (at most 16 bytes of letters, digits,
// spaces and . + -, a digit among them: "30 minutes", "12kb"), and
// otherwise only says how long it is: a value in the wrong place may be a
// secret, and config errors reach the log and, on a reload, the trail.
func shownValue(s string) string {
	if len(s) <= 16 && strings.ContainsAny(s, "0123456789") &&
		strings.Trim(s, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .+-") == "" {
		return strconv.Quote(s)
	}
	return fmt.Sprintf("(%d bytes, not shown)", len(s))
}

// Validate reports every problem at once.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if (c.ClientCertFile == "") != (c.ClientKeyFile == "") {
		add("client_cert_file and client_key_file go together: set both (the certificate the broker's client_ca_file signed, and its key) or neither")
	}
	for _, a := range []struct{ name, addr string }{{"broker.addr", c.Broker.Addr}, {"proxy.addr", c.Proxy.Addr}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			add("%s: %q is not host:port", a.name, a.addr)
		}
	}
	for _, h := range []struct {
		name  string
		names []string
	}{{"broker.hostnames", c.Broker.Hostnames}, {"proxy.hostnames", c.Proxy.Hostnames}, {"metrics.hostnames", c.Metrics.Hostnames}} {
		if err := proxy.CheckHostnames(h.names); err != nil {
			add("%s: %v", h.name, err)
		}
	}
	for _, t := range []struct {
		name string
		tls  tlsconf.Config
	}{{"broker.tls", c.Broker.TLS}, {"proxy.tls", c.Proxy.TLS}} {
		if err := t.tls.Validate(t.name); err != nil {
			errs = append(errs, err)
		}
	}
	if u, err := url.Parse(c.Server); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		add("server: %s is not an http(s) URL", shownURL(c.Server))
	}
	errs = append(errs, c.validateDurations()...)
	errs = append(errs, c.Notify.validate()...)
	if c.UI.Enabled || c.UI.PublicURL != "" {
		if err := ui.ValidatePublicURL(c.UI.PublicURL); err != nil {
			add("ui.public_url: %v", err)
		} else if c.UI.Enabled && c.Role != RoleProxy && !c.UI.InsecurePlaintext && ui.PlainHTTP(c.UI.PublicURL) {
			add("ui.public_url: %v", ui.ErrPlainLoopback)
		}
	}
	if c.UI.Enabled && c.Role == RoleProxy {
		add("ui.enabled: the web approval page is served by the broker, not by a proxy-role process; set only ui.public_url (the broker's address) so held-call errors link to it")
	}
	if c.SessionTTL != 0 && c.SessionTTL != c.Sessions.MaxLifetime {
		add("session_ttl (%s) is the old name of sessions.max_lifetime (%s): set only sessions.max_lifetime", c.SessionTTL, c.Sessions.MaxLifetime)
	}
	if c.Proxy.MaxBody <= 0 {
		add("proxy.max_body must be positive")
	}
	if c.Proxy.MaxInflightBytes < 0 || (c.Proxy.MaxInflightBytes > 0 && c.Proxy.MaxInflightBytes < c.Proxy.MaxBody) {
		add("proxy.max_inflight_bytes must be at least proxy.max_body (%d), or 0 for 8 × max_body", c.Proxy.MaxBody)
	}
	// The issuers as serve's start checks them (oidc.NewVerifier).
	errs = append(errs, oidc.ValidateIssuers(c.Issuers)...)
	seen := map[string]bool{}
	for i, u := range c.Upstreams {
		if u.Name == "" {
			add("upstreams[%d]: name is required", i)
		}
		if seen[u.Name] {
			add("upstreams[%d]: duplicate name %q", i, u.Name)
		}
		seen[u.Name] = true
		if p, err := url.Parse(u.URL); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			add("upstreams[%d] (%s): url %s is not an http(s) URL", i, u.Name, shownURL(u.URL))
		}
		if u.Key == "" {
			add("upstreams[%d] (%s): key (the vault entry holding the provider key) is required", i, u.Name)
		}
		if err := u.proxyUpstream().CheckHeaders(); err != nil {
			add("upstreams[%d] (%s): %v", i, u.Name, err)
		}
	}
	for _, err := range c.Policies.Validate() {
		errs = append(errs, fmt.Errorf("policies: %w", err))
	}
	errs = append(errs, c.proxyServeToPersons()...)
	if _, err := c.Inspection(); err != nil {
		errs = append(errs, err)
	}
	if c.Audit.SummaryBytes < 1 || c.Audit.SummaryBytes > payload.SummaryBytes {
		add("audit.summary_bytes: %d must be between 1 and %d", c.Audit.SummaryBytes, payload.SummaryBytes)
	}
	if c.Audit.HeadEvery < 1 || c.Audit.HeadEvery > 1_000_000 {
		add("audit.head_every: %d must be between 1 and 1000000", c.Audit.HeadEvery)
	}
	errs = append(errs, auditsink.ValidateAll(c.Audit.Sinks, c.Audit.Anchor)...)
	switch c.Audit.Sync {
	case "durable", "async":
	default:
		add("audit.sync: %q must be durable or async", c.Audit.Sync)
	}
	switch c.Role {
	case RoleAll, RoleBroker:
	case RoleProxy:
		if c.Proxy.Identity.IDTokenFile == "" {
			add("proxy.identity.id_token_file is required with role: proxy (the workload identity the proxy enrolls with)")
		}
		// The proxy logs in with its workload identity and ships
		// prompts and audit events to server: never in clear off the
		// machine.
		if err := api.CheckServer(c.Server); err != nil && errors.Is(err, api.ErrPlaintextServer) {
			add("server (role: proxy): %v", err)
		}
	default:
		add("role: %q must be all, broker or proxy", c.Role)
	}
	errs = append(errs, c.Store.validate()...)
	if c.MemoryLimit < -1 || c.MemoryLimit > 0 && c.MemoryLimit < memlimit.Min {
		add("memory_limit %d: want bytes (at least %d, 32 MiB), 0 for 90 %% of the container's limit, or -1 for none", c.MemoryLimit, memlimit.Min)
	}
	if err := memlimit.CheckFloor(c.MemoryFloor); err != nil {
		add("%v", err)
	}
	if c.Proxy.SpoolMax < 0 {
		add("proxy.spool_max must not be negative (0: 1 GiB)")
	}
	switch c.Log.Format {
	case "", "text", "json":
	default:
		add("log.format: %q must be text or json", c.Log.Format)
	}
	if err := c.Tracing.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// CheckTLS does what serve does with the listeners' TLS settings before
// it binds: it refuses plaintext off loopback (unless insecure_plaintext)
// and loads each certificate, key and client CA.
func (c *Config) CheckTLS() error {
	var errs []error
	for _, l := range []struct {
		name, addr string
		tls        tlsconf.Config
		insecure   bool
	}{{"broker", c.Broker.Addr, c.Broker.TLS, c.Broker.InsecurePlaintext}, {"proxy", c.Proxy.Addr, c.Proxy.TLS, c.Proxy.InsecurePlaintext},
		{"metrics", c.Metrics.Addr, c.Metrics.TLS, c.Metrics.InsecurePlaintext}} {
		if l.addr == "" {
			continue // metrics off
		}
		if _, err := tlsconf.CheckListener(l.name, l.addr, l.tls, l.insecure); err != nil {
			errs = append(errs, err)
			continue
		}
		if l.tls.Enabled() && l.tls.Validate(l.name+".tls") == nil {
			if _, err := tlsconf.NewServer(l.tls, tlsconf.Options{Poll: -1}); err != nil {
				errs = append(errs, fmt.Errorf("%s.tls: %w", l.name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Inspection compiles the prompt rules and both maskers.
func (c *Config) Inspection() (proxy.Inspection, error) {
	var errs []error
	var in proxy.Inspection
	var err error
	if in.Rules, err = rules.Compile(c.Rules); err != nil {
		errs = append(errs, fmt.Errorf("rules: %w", err))
	}
	if in.PromptMask, err = mask.New(c.Masking.Prompt); err != nil {
		errs = append(errs, fmt.Errorf("masking.prompt: %w", err))
	}
	if in.ResponseMask, err = mask.New(c.Masking.Response); err != nil {
		errs = append(errs, fmt.Errorf("masking.response: %w", err))
	}
	return in, errors.Join(errs...)
}

// CheckReload refuses a reloaded config that would silently drop every
// policy, rule or masking setting in force because the file no longer
// mentions them: an empty or truncated file (an editor mid-save, a full
// disk, a bad deploy) must not open the gate. Removing them on purpose
// takes an explicit empty value: `policies: []`, `rules: []`, `masking: {}`.
func CheckReload(running, next *Config) error {
	var errs []error
	for _, c := range []struct {
		key       string
		was, now  any
		n         int
		empty     string
		inForceAs string
	}{
		{"policies", running.Policies, next.Policies, len(running.Policies), "policies: []", "%d policies"},
		{"rules", running.Rules, next.Rules, len(running.Rules), "rules: []", "%d rules"},
		{"masking", running.Masking, next.Masking, maskingSettings(running.Masking), "masking: {}", "masking settings"},
	} {
		if c.n == 0 || next.Sets(c.key) || reflect.DeepEqual(c.was, c.now) {
			continue
		}
		what := c.inForceAs
		if strings.Contains(what, "%d") {
			what = fmt.Sprintf(what, c.n)
		}
		errs = append(errs, fmt.Errorf("%s: %s are in force but the new file does not set %s (empty or truncated?); to remove them on purpose write `%s`",
			c.key, what, c.key, c.empty))
	}
	return errors.Join(errs...)
}

// maskingSettings is nonzero when m differs from the built-in defaults.
func maskingSettings(m MaskingConfig) int {
	def := MaskingConfig{Response: mask.Config{Default: mask.ActionMask}, Prompt: mask.Config{Default: mask.ActionOff}}
	if reflect.DeepEqual(m, def) {
		return 0
	}
	return 1
}

// proxyServeToPersons refuses every policy that grants proxy:serve (or a
// pattern covering it) to subjects a person may match: proxy:serve hands
// out every vaulted provider key, and only a workload identity may
// enroll a proxy (the broker refuses anyone else at enrollment too). A
// policy's subjects match from the issuers it pins (subjects.issuers),
// else from every trusted one; each of those must be workload: true.
func (c *Config) proxyServeToPersons() []error {
	workload := map[string]bool{}
	var all []string
	for _, is := range c.Issuers {
		workload[is.Name] = is.Workload
		all = append(all, is.Name)
	}
	var errs []error
	for i, p := range c.Policies {
		if !token.Covers(p.Scopes, link.ScopeServe) {
			continue
		}
		from := p.Subjects.Issuers
		if len(from) == 0 {
			from = all
		}
		var persons []string
		for _, name := range from {
			if w, ok := workload[name]; ok && !w {
				persons = append(persons, name)
			}
		}
		if len(persons) > 0 {
			errs = append(errs, fmt.Errorf("policies[%d]: policy %q grants %s, which hands out every vaulted provider key, to subjects that may be persons (issuer %s is not workload: true); "+
				"only a workload identity may run a proxy: pin subjects.issuers to issuers with workload: true, or take %s out of this policy",
				i, p.Name, link.ScopeServe, strings.Join(persons, ", "), link.ScopeServe))
		}
	}
	return errs
}
