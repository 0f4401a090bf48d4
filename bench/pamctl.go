package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pamctl/pamctl/broker/oidc/devissuer"
)

// variant is one pamctl configuration under test.
type variant struct {
	name     string // row label, e.g. "pamctl"
	mask     bool   // masking in both directions
	sync     string // audit.sync: durable or async
	upstream string // mock base URL (…/v1)
	pprof    bool   // start the pprof listener of the overlay build
	dev      bool   // serve --dev (embedded issuer) instead of the bench issuer
	issuer   string // URL of the bench's OIDC issuer (not dev)
	bin      string // a pamctl binary other than the one under test
	rules    string // the rules: block of the configuration profile
	memLimit string // GOMEMLIMIT of the process, as a container's limit sets it (memory_limit: 0); "" none
}

// benchRules are the "security" profile's prompt rules: what a security
// team ships, a deny rule among them, each able to match (the tests of
// -config show they do), none matching the benchmark prompt, so they cost
// what rules cost on every ordinary call.
const benchRules = `rules:
  - {name: no-injection, pattern: "(?i)ignore (all )?previous instructions", action: deny}
  - {name: destructive-sql, pattern: "(?i)drop\\s+table", action: require_approval, approvers: {groups: [security]}}
  - {name: no-passwords, pattern: "(?i)\\bpassw(or)?d\\s*[:=]\\s*\\S+", action: redact}
  - {name: no-exfil, literals: ["BEGIN RSA PRIVATE KEY", "exfiltrate the"], action: deny}
`

func (v variant) config() string {
	mode := "mask"
	if !v.mask {
		mode = "off"
	}
	var b strings.Builder
	if !v.dev {
		fmt.Fprintf(&b, "issuers: [{name: bench, url: %q, audience: pamctl, workload: true}]\n", v.issuer)
	}
	fmt.Fprintf(&b, "upstreams: [{name: openai, url: %q, key: openai}]\n", v.upstream)
	b.WriteString(v.rules)
	fmt.Fprintf(&b, "masking: {response: {default: %s}, prompt: {default: %s}}\n", mode, mode)
	fmt.Fprintf(&b, "audit: {sync: %s}\n", v.sync)
	b.WriteString(`policies: [{name: bench, subjects: {users: ["*"]}, scopes: ["model:*"], max_ttl: 1h, limits: {rpm: 0}}]` + "\n")
	b.WriteString("log: {format: json}\n")
	return b.String()
}

// instance is one running `pamctl serve --dev` with its own data dir,
// config dir (master key, CLI session) and access token.
type instance struct {
	v          variant
	dir        string
	brokerAddr string
	proxyAddr  string
	pprofAddr  string
	token      string
	p          *proc
}

func (in *instance) env() []string {
	return []string{"XDG_CONFIG_HOME=" + filepath.Join(in.dir, "config"), "PAMCTL_SERVER=", "PAMCTL_CONFIG=", "PAMCTL_DATA_DIR="}
}

// url is the URL of path (e.g. apiPath's) on the instance's proxy.
func (in *instance) url(path string) string { return "http://" + in.proxyAddr + path }

// startPamctl prepares a data dir with a vaulted (fake) provider key, starts
// pamctl serve on free loopback ports, logs in and gets a token for
// model:gpt-4o-mini (a model scope grants the model on every model
// endpoint: /v1/chat/completions and /v1/responses alike, so either -api
// runs with the same grant and policy). Without v.dev it runs as deployed, trusting the
// bench's OIDC issuer (iss), and logs in with a workload ID token the
// issuer minted; with v.dev it runs serve --dev and logs in through the
// embedded dev issuer.
func startPamctl(ctx context.Context, bin, root string, v variant, iss *benchIssuer) (*instance, error) {
	in := &instance{v: v, dir: filepath.Join(root, v.name)}
	data := filepath.Join(in.dir, "data")
	cfg := filepath.Join(in.dir, "config.yaml")
	if err := os.MkdirAll(filepath.Join(in.dir, "config"), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(cfg, []byte(v.config()), 0o600); err != nil {
		return nil, err
	}
	// A vaulted key makes dev mode use the configured upstream instead of
	// its built-in mock.
	if _, err := runIn(ctx, in.env(), strings.NewReader("sk-bench-not-a-real-key"), bin, "vault", "set", "openai", "--data-dir", data); err != nil {
		return nil, err
	}
	var err error
	if in.brokerAddr, err = freeAddr(); err != nil {
		return nil, err
	}
	if in.proxyAddr, err = freeAddr(); err != nil {
		return nil, err
	}
	env := in.env()
	if v.memLimit != "" {
		env = append(env, "GOMEMLIMIT="+v.memLimit)
	}
	if v.pprof {
		if in.pprofAddr, err = freeAddr(); err != nil {
			return nil, err
		}
		env = append(env, pprofEnv+"="+in.pprofAddr)
	}
	args := []string{"serve", "--data-dir", data, "--config", cfg,
		"--broker-addr", in.brokerAddr, "--proxy-addr", in.proxyAddr, "--log-format", "json"}
	if v.dev {
		args = append(args, "--dev")
	}
	in.p, err = startProc(v.name, bin, args, env, root, false)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			in.p.stop()
		}
	}()
	if err := waitHTTP(ctx, "http://"+in.proxyAddr+"/healthz", 30*time.Second, in.p); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, "http://"+in.brokerAddr+"/.well-known/jwks.json", 30*time.Second, in.p); err != nil {
		return nil, err
	}
	server := "--server=http://" + in.brokerAddr
	login := []string{"login", "--user", "bench", "--groups", "ml", server}
	if !v.dev {
		idt, err := iss.mint()
		if err != nil {
			return nil, err
		}
		f := filepath.Join(in.dir, "id-token")
		if err := os.WriteFile(f, []byte(idt), 0o600); err != nil {
			return nil, err
		}
		login = []string{"login", "--id-token-file", f, server}
	}
	if _, err := run(ctx, env, bin, login...); err != nil {
		return nil, err
	}
	if _, err := run(ctx, env, bin, "request", "--scope", "model:gpt-4o-mini", "--ttl", "1h", "--reason", "load benchmark", server); err != nil {
		return nil, err
	}
	tok, err := run(ctx, env, bin, "token", server)
	if err != nil {
		return nil, err
	}
	in.token = strings.TrimSpace(tok)
	if strings.Count(in.token, ".") != 2 {
		return nil, fmt.Errorf("pamctl token printed %q, not a JWT", in.token)
	}
	ok = true
	return in, nil
}

func (in *instance) stop() {
	if in != nil && in.p != nil {
		in.p.stop()
	}
}

// pprofEnv names the address the overlay build's pprof listener binds.
const pprofEnv = "PAMCTL_BENCH_PPROF"

// pprofOverlay is added to package main of cmd/pamctl at build time only
// (go build -overlay), never to the tree: with PAMCTL_BENCH_PPROF set it
// serves net/http/pprof and runtime.MemStats (/debug/memstats) there,
// which gives the benchmark goroutine counts, memory and profiles of the
// real binary. Unset, it does nothing.
const pprofOverlay = `package main

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/metrics"
)

func init() {
	addr := os.Getenv("` + pprofEnv + `")
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/memstats", func(w http.ResponseWriter, _ *http.Request) {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		// The stack a goroutine starts with, and how much of the stacks
		// the last GC scanned (in use) against StackInuse (allocated).
		ms := []metrics.Sample{{Name: "/gc/stack/starting-size:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/heap/live:bytes"}}
		metrics.Read(ms)
		_ = json.NewEncoder(w).Encode(map[string]uint64{"HeapInuse": m.HeapInuse, "HeapSys": m.HeapSys,
			"HeapReleased": m.HeapReleased, "StackInuse": m.StackInuse, "Sys": m.Sys, "NumGC": uint64(m.NumGC), "NextGC": m.NextGC,
			"StackStart": ms[0].Value.Uint64(), "StackScanned": ms[1].Value.Uint64(), "HeapLive": ms[2].Value.Uint64()})
	})
	go func() { _ = http.ListenAndServe(addr, mux) }()
}
`

// benchIssuer is an OIDC issuer on loopback that pamctl trusts for
// workload logins when it runs as deployed (not --dev).
type benchIssuer struct {
	iss *devissuer.Issuer
	srv *http.Server
}

func startIssuer() (*benchIssuer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	iss, err := devissuer.New("http://" + ln.Addr().String())
	if err != nil {
		ln.Close()
		return nil, err
	}
	b := &benchIssuer{iss: iss, srv: &http.Server{Handler: iss, ReadHeaderTimeout: 10 * time.Second}}
	go func() { _ = b.srv.Serve(ln) }()
	return b, nil
}

func (b *benchIssuer) url() string { return b.iss.URL() }

func (b *benchIssuer) mint() (string, error) {
	return b.iss.Mint(devissuer.Claims{Subject: "bench-agent", Groups: []string{"ml"}, TTL: time.Hour})
}

func (b *benchIssuer) close() {
	if b != nil {
		_ = b.srv.Close()
	}
}

// Configuration profiles of -config. Every profile keeps the variants'
// masking and audit.sync; a profile decides the rules.
const (
	profileSecurity = "security" // the default: four rules (deny, approval, redact, literal deny)
	profileMinimal  = "minimal"  // no rules: what the rest of pamctl costs
)

// profileRules returns the rules: block of -config: a profile name, or
// the path of a YAML file holding only a rules: list (masking and audit
// stay the variants' own, so every row keeps its meaning).
func profileRules(config string) (string, error) {
	switch config {
	case "", profileSecurity:
		return benchRules, nil
	case profileMinimal:
		return "", nil
	}
	raw, err := os.ReadFile(config)
	if err != nil {
		return "", fmt.Errorf("-config: %q is neither a profile (%s, %s) nor a readable file: %w", config, profileSecurity, profileMinimal, err)
	}
	text := strings.TrimSpace(string(raw))
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == ' ' || line[0] == '\t' || line[0] == '#' || line[0] == '-' {
			continue
		}
		if !strings.HasPrefix(line, "rules:") {
			return "", fmt.Errorf("-config %s: only a rules: list may be set (masking and audit.sync are the variants' own; use -variants and -sync), found %q", config, line)
		}
	}
	if !strings.HasPrefix(text, "rules:") {
		return "", fmt.Errorf("-config %s: the file must start with rules:", config)
	}
	return text + "\n", nil
}
