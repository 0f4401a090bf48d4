package cli

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/pamctl/pamctl/broker/api"
)

// NewCmdConfig builds `pamctl config`.
func NewCmdConfig(f *Factory) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Check the configuration"}
	cmd.AddCommand(NewCmdConfigCheck(f, nil))
	return cmd
}

// ConfigCheckOptions are the inputs of `pamctl config check`.
type ConfigCheckOptions struct {
	f      *Factory
	Output string
}

// NewCmdConfigCheck builds `pamctl config check`.
func NewCmdConfigCheck(f *Factory, runF func(*cobra.Command, *ConfigCheckOptions) error) *cobra.Command {
	o := &ConfigCheckOptions{f: f}
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration and print it with secrets hidden",
		Long: `Load the configuration as 'pamctl serve' would (the file, PAMCTL_*
variables and flags), report every problem at once (unknown keys with their
line, bad values, durations without a unit, a data dir or master key file
that others can read, a file others could replace), read the files serve
reads at start or at first use as it reads them (TLS certificates and
keys, the store's, the audit sinks' and anchor's url_file, headers_file and
ca_file, a file sink's existing file, the Slack and Teams webhook_url_file),
and print the effective
configuration with secrets hidden. Errors name settings and files, never a
secret they hold. Exit 0 when it is usable, 2 when it is not.`,
		Example: `  pamctl config check --config /etc/pamctl/config.yaml
  pamctl config check -o json | jq .policies`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(o.Output); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd, o)
			}
			return configCheckRun(cmd, o)
		},
	}
	cmd.Flags().String("master-key-file", "", "master key file (default $XDG_CONFIG_HOME/pamctl/master.key)")
	cmd.Flags().String("broker-addr", "", "broker listen address")
	cmd.Flags().String("proxy-addr", "", "proxy listen address")
	cmd.Flags().String("log-format", "", "log format: text or json")
	addOutputFlag(cmd, &o.Output)
	return cmd
}

func configCheckRun(cmd *cobra.Command, o *ConfigCheckOptions) error {
	ios := o.f.IO
	cfg, err := o.f.Config(cmd) // unknown keys, bad YAML, durations: ExitUsage
	if err != nil {
		return err
	}
	fileWarnings, refused, filesErr := cfg.checkNamedFiles()
	if err := errors.Join(cfg.Validate(), cfg.checkCLIServer(), cfg.CheckPrivate(), filesErr, cfg.CheckAuditTargets(refused), cfg.CheckNotifyFiles(cmd.Context(), refused), cfg.CheckTLS(), cfg.CheckStore()); err != nil {
		return withCode(ExitUsage, fmt.Errorf("invalid configuration%s:\n%w", settingSources(cfg.File, err), err))
	}
	for _, w := range slices.Concat(cfg.NotifyWarnings(), cfg.PolicyIssuerWarnings(), cfg.IssuerStepUpWarnings(), fileWarnings) {
		ios.Warnf("%s", w)
	}
	view := cfg.Effective()
	if o.Output == "json" {
		var v any
		if err := view.Decode(&v); err != nil {
			return err
		}
		return ios.JSON(v)
	}
	enc := yaml.NewEncoder(ios.Out)
	enc.SetIndent(2)
	if err := enc.Encode(view); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	ios.Successf("configuration is valid (%s)", orDefault(cfg.File, "no file: defaults, PAMCTL_* and flags"))
	return nil
}

// Hidden replaces a secret in the effective configuration.
const Hidden = "<hidden>"

// Effective renders c as the YAML document it amounts to, keys in file
// order, durations in config syntax, with secrets hidden: keys named like
// secrets, webhook URLs (they embed tokens) past their host, and passwords
// and query strings of every URL.
func (c *Config) Effective() *yaml.Node {
	return effectiveNode(reflect.ValueOf(c).Elem(), "")
}

func effectiveNode(v reflect.Value, key string) *yaml.Node {
	scalar := func(tag, s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: s} }
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return scalar("!!null", "null")
		}
		v = v.Elem()
	}
	switch {
	case v.Type() == durationType:
		return scalar("!!str", fmtDur(time.Duration(v.Int())))
	case v.Kind() == reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode}
		var add func(v reflect.Value)
		add = func(v reflect.Value) {
			t := v.Type()
			for i := 0; i < t.NumField(); i++ {
				f := t.Field(i)
				if !f.IsExported() {
					continue
				}
				name, opts, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
				switch {
				case name == "-":
				case strings.Contains(opts, "squash") || (f.Anonymous && name == ""):
					add(reflect.Indirect(v.Field(i)))
				case strings.Contains(opts, "remain"):
					m := effectiveNode(v.Field(i), key)
					if m.Kind == yaml.MappingNode {
						n.Content = append(n.Content, m.Content...)
					}
				default:
					if name == "" {
						name = f.Name
					}
					n.Content = append(n.Content, scalar("!!str", name), effectiveNode(v.Field(i), name))
				}
			}
		}
		add(v)
		if s, ok := v.Interface().(interface{ ShownURL() string }); ok && s.ShownURL() != "" {
			// An audit sink's or anchor's URL, as pamctl shows it
			// everywhere else: a token in its path hidden too.
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == "url" && n.Content[i+1].Value != "" {
					n.Content[i+1] = scalar("!!str", s.ShownURL())
				}
			}
		}
		return n
	case v.Kind() == reflect.Slice || v.Kind() == reflect.Array:
		n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for i := 0; i < v.Len(); i++ {
			item := effectiveNode(v.Index(i), key)
			if item.Kind != yaml.ScalarNode {
				n.Style = 0
			}
			n.Content = append(n.Content, item)
		}
		return n
	case v.Kind() == reflect.Map:
		n := &yaml.Node{Kind: yaml.MappingNode}
		keys := v.MapKeys()
		names := make([]string, len(keys))
		for i, k := range keys {
			names[i] = fmt.Sprint(k.Interface())
		}
		order := make([]int, len(keys))
		for i := range order {
			order[i] = i
		}
		sortByName(order, names)
		for _, i := range order {
			val := effectiveNode(v.MapIndex(keys[i]), names[i])
			if key == "headers" && val.Kind == yaml.ScalarNode && val.Value != "" {
				val = scalar("!!str", Hidden) // HTTP header values may carry credentials
			}
			n.Content = append(n.Content, scalar("!!str", names[i]), val)
		}
		return n
	case v.Kind() == reflect.String:
		return scalar("!!str", redact(key, v.String()))
	case v.Kind() == reflect.Bool:
		return scalar("!!bool", fmt.Sprint(v.Bool()))
	case v.CanInt():
		return scalar("!!int", fmt.Sprint(v.Int()))
	case v.CanUint():
		return scalar("!!int", fmt.Sprint(v.Uint()))
	case v.CanFloat():
		return scalar("!!float", fmt.Sprint(v.Float()))
	}
	return scalar("!!str", fmt.Sprint(v.Interface()))
}

func sortByName(order []int, names []string) {
	for i := 1; i < len(order); i++ {
		for j := i; j > 0 && names[order[j]] < names[order[j-1]]; j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
}

// redact hides what key's value s must not show.
func redact(key, s string) string {
	if s == "" {
		return s
	}
	k := strings.ToLower(key)
	if !strings.HasSuffix(k, "_file") && !strings.HasSuffix(k, "_claim") &&
		(strings.Contains(k, "secret") || strings.Contains(k, "password") || strings.Contains(k, "token") || k == "private_key") {
		return Hidden
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return s
	}
	if strings.Contains(k, "webhook") {
		return u.Scheme + "://" + u.Host + "/" + Hidden
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), Hidden)
	}
	if u.RawQuery != "" {
		u.RawQuery = Hidden
	}
	return strings.Replace(u.String(), url.QueryEscape(Hidden), Hidden, -1)
}

// checkCLIServer judges server: as every CLI command that contacts the
// broker does (checkServer, api.CheckServer): plain http:// is for
// loopback only. serve does not refuse it (the broker does not use it),
// but the CLI would, after `config check` said the file is valid. With
// role proxy, Validate says it already.
func (c *Config) checkCLIServer() error {
	err := api.CheckServer(c.Server)
	if c.Role == RoleProxy && errors.Is(err, api.ErrPlaintextServer) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("server: %w (the CLI refuses it: every command that talks to the broker sends an ID token or a session)", err)
	}
	return nil
}
