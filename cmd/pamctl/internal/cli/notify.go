package cli

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/notify"
	"github.com/pamctl/pamctl/broker/policy"
	"github.com/pamctl/pamctl/broker/safefile"
	"github.com/pamctl/pamctl/broker/vault"
)

// ChatHookConfig is a chat channel's incoming webhook (notify.slack,
// notify.teams). The URL is a secret (whoever has it can post to the
// channel): give it as a file or a vault entry; inline is accepted with a
// warning from `pamctl config check` and at start.
type ChatHookConfig struct {
	WebhookURL      string `mapstructure:"webhook_url"`
	WebhookURLFile  string `mapstructure:"webhook_url_file"`
	WebhookURLVault string `mapstructure:"webhook_url_vault"`
}

// Enabled reports whether the channel is configured.
func (c ChatHookConfig) Enabled() bool {
	return c.WebhookURL != "" || c.WebhookURLFile != "" || c.WebhookURLVault != ""
}

// vaultEntryName is the shape of vault entry names (broker/vault).
var vaultEntryName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

func (n NotifyConfig) validate() []error {
	var errs []error
	if n.Webhook != "" {
		if err := notify.CheckURL(n.Webhook); err != nil {
			errs = append(errs, fmt.Errorf("notify.webhook: the URL %v", err))
		}
	}
	for _, ch := range []struct {
		key string
		c   ChatHookConfig
	}{{"notify.slack", n.Slack}, {"notify.teams", n.Teams}} {
		set := 0
		for _, v := range []string{ch.c.WebhookURL, ch.c.WebhookURLFile, ch.c.WebhookURLVault} {
			if v != "" {
				set++
			}
		}
		if set > 1 {
			errs = append(errs, fmt.Errorf("%s: set one of webhook_url_file, webhook_url_vault and webhook_url, not %d", ch.key, set))
		}
		if ch.c.WebhookURL != "" {
			if err := notify.CheckURL(ch.c.WebhookURL); err != nil {
				errs = append(errs, fmt.Errorf("%s.webhook_url: the URL %v", ch.key, err))
			}
		}
		if v := ch.c.WebhookURLVault; v != "" && !vaultEntryName.MatchString(v) {
			errs = append(errs, fmt.Errorf("%s.webhook_url_vault: %q is not a vault entry name (lower-case letters, digits, '.', '_', '-'; e.g. slack-hook)", ch.key, v))
		}
	}
	return errs
}

// NotifyWarnings are the notify settings that work but should change:
// webhook URLs written inline in the file or the environment.
func (c *Config) NotifyWarnings() []string {
	var out []string
	for _, ch := range []struct{ key, name, vault string }{{"notify.slack", "Slack", "slack-hook"}, {"notify.teams", "Teams", "teams-hook"}} {
		hook := c.Notify.Slack
		if ch.name == "Teams" {
			hook = c.Notify.Teams
		}
		if hook.WebhookURL != "" {
			out = append(out, fmt.Sprintf("%s.webhook_url is inline: the %s webhook URL is a secret (anyone who has it can post to the channel); move it to %s.webhook_url_file (mode 0600) or the vault (pamctl vault set %s, then %s.webhook_url_vault: %s)",
				ch.key, ch.name, ch.key, ch.vault, ch.key, ch.vault))
		}
	}
	return out
}

// IssuerStepUpWarnings are the issuers' settings that weaken step-up
// (oidc.IssuerConfig.StepUpWarnings).
func (c *Config) IssuerStepUpWarnings() []string {
	var ws []string
	for _, is := range c.Issuers {
		ws = append(ws, is.StepUpWarnings()...)
	}
	return ws
}

// PolicyIssuerWarnings flags, when several issuers are trusted, policy
// subjects (requesters, approvers, break-glass) named by user or group
// without issuers: they match the same sub, email or group from any of
// them, so a second issuer (another cluster's service accounts, another
// IdP) that mints that name is admitted, or approves.
func (c *Config) PolicyIssuerWarnings() []string {
	if len(c.Issuers) < 2 {
		return nil
	}
	var out []string
	for _, p := range c.Policies {
		for _, s := range []struct {
			key string
			sub policy.Subjects
		}{{"subjects", p.Subjects}, {"approval.approvers", p.Approval.Approvers}, {"approval.break_glass", p.Approval.BreakGlass}} {
			if len(s.sub.Issuers) == 0 && (len(s.sub.Users) > 0 || len(s.sub.Groups) > 0) {
				out = append(out, fmt.Sprintf("policy %q: %s names users or groups without issuers:, so they match from any of the %d trusted issuers (a second issuer minting the same sub, email or group is admitted); add issuers: [...] to pin them", p.Name, s.key, len(c.Issuers)))
			}
		}
	}
	return out
}

// CheckNotifyFiles reads each chat hook's webhook_url_file as a delivery
// does (webhookURL) and judges the URL (notify.CheckURL), for `pamctl
// config check`: a file serve would read at the first notification, and
// fail on, fails the check now, naming the setting and file, never the
// URL (anyone who has it can post to the channel). Files the permission
// check refused already (refused) are not read again.
func (c *Config) CheckNotifyFiles(ctx context.Context, refused map[string]bool) error {
	var errs []error
	for _, ch := range []struct {
		key string
		c   ChatHookConfig
	}{{"notify.slack", c.Notify.Slack}, {"notify.teams", c.Notify.Teams}} {
		if ch.c.WebhookURLFile == "" || refused[ch.c.WebhookURLFile] {
			continue
		}
		u, err := webhookURL(ChatHookConfig{WebhookURLFile: ch.c.WebhookURLFile}, ch.key, nil)(ctx)
		if err == nil {
			if cerr := notify.CheckURL(u); cerr != nil {
				err = fmt.Errorf("%s.webhook_url_file: the URL in %s %v", ch.key, ch.c.WebhookURLFile, cerr)
			}
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// webhookURL returns how to get a chat hook's URL at delivery time: the
// file read again (a rotated secret is used without a restart), the vault
// entry opened, or the inline value. Errors never contain the URL.
func webhookURL(c ChatHookConfig, key string, v *vault.Vault) func(context.Context) (string, error) {
	switch {
	case c.WebhookURLFile != "":
		return func(context.Context) (string, error) {
			raw, err := safefile.Read(c.WebhookURLFile, 4<<10)
			if err != nil {
				return "", fmt.Errorf("%s.webhook_url_file: %w", key, err)
			}
			return strings.TrimSpace(string(raw)), nil
		}
	case c.WebhookURLVault != "":
		return func(ctx context.Context) (string, error) {
			s, err := v.Get(ctx, c.WebhookURLVault)
			if err != nil {
				return "", fmt.Errorf("%s.webhook_url_vault: vault entry %q could not be opened (set it with: pamctl vault set %s): %w", key, c.WebhookURLVault, c.WebhookURLVault, err)
			}
			return strings.TrimSpace(s.Reveal()), nil
		}
	default:
		u := c.WebhookURL
		return func(context.Context) (string, error) { return u, nil }
	}
}

// notifyHooks builds the configured notification channels. Each posts from
// its own queue with retries (never on the request path); an event one
// cannot deliver turns the notify check degraded and is audited as
// notify.failed with the channel and the reason, never the URL.
func (a *App) notifyHooks(cfg *Config) []*notify.Webhook {
	mk := func(channel string) *notify.Webhook {
		// The default client follows no redirect; each attempt is bounded
		// by notify.DefaultTimeout, retries back off up to a minute.
		return &notify.Webhook{
			OnFailure: func(e notify.Event, err error) {
				// Logged once per outage by health; every lost event is audited.
				a.health.Fail(checkNotify, fmt.Errorf("%s: %s %s: %w", channel, e.Type, e.RequestID, err))
				a.emit(&audit.Event{Type: audit.TypeNotifyFailed, Request: e.RequestID, Target: e.Type, Error: err.Error(),
					Details: map[string]string{"channel": channel}})
			},
			OnDelivered: func(notify.Event) { a.health.OK(checkNotify) },
		}
	}
	var hooks []*notify.Webhook
	if cfg.Notify.Webhook != "" {
		h := mk("webhook")
		h.URL = cfg.Notify.Webhook
		hooks = append(hooks, h)
	}
	for _, ch := range []struct {
		name   string
		c      ChatHookConfig
		format func(notify.Event) ([]byte, error)
	}{{"slack", cfg.Notify.Slack, notify.SlackPayload}, {"teams", cfg.Notify.Teams, notify.TeamsPayload}} {
		if !ch.c.Enabled() {
			continue
		}
		h := mk(ch.name)
		h.Format, h.Resolve = ch.format, webhookURL(ch.c, "notify."+ch.name, a.vault)
		hooks = append(hooks, h)
	}
	for _, w := range cfg.NotifyWarnings() {
		a.log.Warn(w)
	}
	return hooks
}

// notifierOf is the broker's notifier over hooks (nil without any).
func notifierOf(hooks []*notify.Webhook, publicURL string) broker.Notifier {
	if len(hooks) == 0 {
		return nil
	}
	n := broker.WebhookNotifier{PublicURL: publicURL}
	for _, h := range hooks {
		n.Hooks = append(n.Hooks, h)
	}
	return n
}
