package cli

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/safetext"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/iostreams"
)

func addOutputFlag(cmd *cobra.Command, out *string) {
	cmd.Flags().StringVarP(out, "output", "o", "", "output format: json (default: a table on a terminal)")
}

func checkOutput(o string) error {
	if o != "" && o != "json" {
		return withCode(ExitUsage, fmt.Errorf("unknown output format %q: use -o json", o))
	}
	return nil
}

func humanDuration(d time.Duration) string {
	if d < 0 {
		return "0s"
	}
	switch {
	case d >= 24*time.Hour:
		return fmt.Sprintf("%dd%dh", int(d.Hours())/24, int(d.Hours())%24)
	case d >= time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	case d >= time.Minute:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}

// RequestOptions are the inputs of `pamctl request`.
type RequestOptions struct {
	f      *Factory
	Scopes []string
	TTL    time.Duration
	Reason string
	NoWait bool
	Output string
}

// NewCmdRequest builds `pamctl request`.
func NewCmdRequest(f *Factory, runF func(*cobra.Command, *RequestOptions) error) *cobra.Command {
	o := &RequestOptions{f: f}
	cmd := &cobra.Command{
		Use:   "request --scope SCOPE [--scope SCOPE ...]",
		Short: "Ask for a just-in-time grant",
		Long: `Ask for a just-in-time grant of one or more scopes (model:gpt-4o,
model:gpt-4o*, endpoint:/v1/audio/*, audit:read, tool:shell). A grant with
tool: scopes may use only the tools they name (docs/tools.md). Depending on
policy the request is approved at once or waits for approvers. By default the command
waits for the decision; Ctrl-C stops waiting and leaves the request pending.

Exit status: with --nowait, 0 once the request is created, whatever its
state (read it from the output or -o json). Waiting (the default): 0 when
approved, 8 when still pending as the wait ends (Ctrl-C), 5 when denied or
expired. A request policy refuses outright exits 5 either way.`,
		Example: `  pamctl request --scope model:gpt-4o --ttl 30m --reason "eval run"
  pamctl request --scope model:gpt-4o-mini --nowait
  pamctl request --scope model:gpt-4o --scope tool:shell --scope 'tool:mcp:github/search_*'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(o.Scopes) == 0 {
				return withCode(ExitUsage, errors.New("name at least one --scope, e.g. --scope model:gpt-4o"))
			}
			if err := checkOutput(o.Output); err != nil {
				return err
			}
			if wait, _ := cmd.Flags().GetBool("wait"); !wait {
				o.NoWait = true
			}
			if runF != nil {
				return runF(cmd, o)
			}
			return requestRun(cmd, o)
		},
	}
	cmd.Flags().StringArrayVar(&o.Scopes, "scope", nil, "scope to request (repeatable)")
	cmd.Flags().Var(durationFlag{&o.TTL}, "ttl", "grant lifetime, e.g. 30m, 8h or 2d (default 15m; capped by policy max_ttl)")
	cmd.Flags().StringVar(&o.Reason, "reason", "", "why you need it (shown to approvers and audited)")
	cmd.Flags().BoolVar(&o.NoWait, "nowait", false, "return at once instead of waiting for a decision")
	cmd.Flags().Bool("wait", true, "wait for a decision (the default; --wait=false is --nowait)")
	addOutputFlag(cmd, &o.Output)
	return cmd
}

func requestRun(cmd *cobra.Command, o *RequestOptions) error {
	ctx := cmd.Context()
	ios := o.f.IO
	cfg, err := o.f.Config(cmd)
	if err != nil {
		return err
	}
	c, _, err := o.f.BrokerClient(cfg)
	if err != nil {
		return err
	}
	in := api.CreateRequest{Scopes: o.Scopes, Reason: o.Reason}
	if o.TTL > 0 {
		in.TTL = o.TTL.String()
	}
	r, err := c.CreateRequest(ctx, in)
	if err != nil {
		return unreachable(err, cfg.Server)
	}
	if r.Clamped {
		ios.Warnf("ttl clamped to %s by policy (%s)", r.TTL, strings.Join(r.Policies, ", "))
	}
	if r.State == broker.StatePending {
		// The broker's web page for it, when the broker serves one: send
		// it to an approver.
		if in, err := c.Info(ctx); err == nil && in.UIURL != "" {
			if link := broker.ItemURL(strings.TrimSuffix(in.UIURL, "/ui/"), r.ID); strings.HasPrefix(link, "https://") || strings.HasPrefix(link, "http://") {
				ios.Notef("Review page:  %s", link)
			}
		}
	}
	if r.State == broker.StatePending && !o.NoWait {
		r, err = waitForDecision(ctx, o.f, c, r)
		if err != nil {
			return err
		}
	}
	return reportRequest(o.f, r, o.Output, !o.NoWait)
}

// waitForDecision long-polls the broker until r leaves pending or the user
// presses Ctrl-C (then the request stays pending and its id is printed).
func waitForDecision(ctx context.Context, f *Factory, c *api.Client, r *broker.Request) (*broker.Request, error) {
	ios := f.IO
	stop := spinner(ios, fmt.Sprintf("Waiting for approval of %s (%s); Ctrl-C leaves it pending", r.ID, r.Approval.Approvers.String()))
	defer stop()
	for r.State == broker.StatePending {
		next, err := c.Request(ctx, r.ID, 50*time.Second)
		if ctx.Err() != nil {
			stop()
			ios.Notef("Stopped waiting; request %s is still pending. Check it with: pamctl requests", r.ID)
			return r, withCode(ExitPending, fmt.Errorf("request %s is pending approval", r.ID))
		}
		if err != nil {
			return nil, err
		}
		r = next
	}
	return r, nil
}

// reportRequest prints r and returns its exit status: nil for an approved
// request, and for any request when the caller did not wait (it was
// created; the state is in the output); ExitPending or ExitForbidden after
// a wait that ended pending, or denied or expired.
func reportRequest(f *Factory, r *broker.Request, output string, waited bool) error {
	ios := f.IO
	if output == "json" {
		if err := ios.JSON(r); err != nil {
			return err
		}
	}
	st := ios.Styles()
	switch r.State {
	case broker.StateApproved:
		if output != "json" {
			ios.Successf("Request %s approved: %s until %s", st.Bold.Render(r.ID), strings.Join(r.Scopes, " "), r.ExpiresAt.Local().Format("15:04 MST"))
			ios.Notef("Use it:  pamctl exec --request %s -- <command>    or: pamctl token %s", r.ID, r.ID)
		}
		return nil
	case broker.StatePending:
		if output != "json" {
			ios.Notef("Request %s is pending approval by %s.", st.Bold.Render(r.ID), r.Approval.Approvers.String())
			ios.Notef("An approver runs:  pamctl approve %s", r.ID)
		}
		if !waited {
			return nil
		}
		return withCode(ExitPending, fmt.Errorf("request %s is pending approval", r.ID))
	default:
		why := ""
		if n := len(r.Reviews); n > 0 && r.Reviews[n-1].Reason != "" {
			why = ": " + r.Reviews[n-1].Reason
		}
		if !waited {
			ios.Notef("Request %s was created and is %s%s", r.ID, r.State, why)
			return nil
		}
		return withCode(ExitForbidden, fmt.Errorf("request %s was %s%s", r.ID, r.State, why))
	}
}

// spinner shows a spinner with msg on a terminal; it returns a stop func
// that is safe to call more than once.
func spinner(ios *iostreams.IOStreams, msg string) func() {
	if !ios.IsStderrTTY() {
		ios.Notef("%s…", msg)
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		frames := []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				fmt.Fprint(ios.ErrOut, "\r\033[K")
				return
			case <-t.C:
				fmt.Fprintf(ios.ErrOut, "\r%s %s", frames[i%len(frames)], msg)
			}
		}
	}()
	var once bool
	return func() {
		if !once {
			once = true
			close(done)
			<-finished
		}
	}
}

// RequestsOptions are the inputs of `pamctl requests`.
type RequestsOptions struct {
	f       *Factory
	Pending bool
	Output  string
}

// NewCmdRequests builds `pamctl requests`.
func NewCmdRequests(f *Factory, runF func(*cobra.Command, *RequestsOptions) error) *cobra.Command {
	o := &RequestsOptions{f: f}
	cmd := &cobra.Command{
		Use:     "requests",
		Aliases: []string{"ls-requests"},
		Short:   "List requests you made or may review",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(o.Output); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd, o)
			}
			return requestsRun(cmd, o)
		},
	}
	cmd.Flags().BoolVar(&o.Pending, "pending", false, "only pending requests")
	addOutputFlag(cmd, &o.Output)
	return cmd
}

func requestsRun(cmd *cobra.Command, o *RequestsOptions) error {
	cfg, err := o.f.Config(cmd)
	if err != nil {
		return err
	}
	c, sess, err := o.f.BrokerClient(cfg)
	if err != nil {
		return err
	}
	rs, err := c.Requests(cmd.Context(), o.Pending)
	if err != nil {
		return unreachable(err, cfg.Server)
	}
	return renderRequests(o, rs, sess.Identity)
}

// renderRequests prints rs, listed for me, as JSON or a table. On a
// terminal the table has an ISSUER column as soon as a requester's issuer
// is not me's: two IdPs may each have an "alice", and an approver must see
// which one asks. Piped, the columns stay fixed for scripts (-o json has
// requester.issuer).
func renderRequests(o *RequestsOptions, rs []*broker.Request, me broker.Identity) error {
	ios := o.f.IO
	if o.Output == "json" {
		return ios.JSON(rs)
	}
	if len(rs) == 0 {
		ios.Notef("No requests. Ask for access with: pamctl request --scope model:gpt-4o")
		return nil
	}
	issuers := ios.IsStdoutTTY() && slices.ContainsFunc(rs, func(r *broker.Request) bool { return r.Requester.Issuer != me.Issuer })
	st := ios.Styles()
	cols := []string{"ID", "KIND", "STATE", "REQUESTER", "SCOPES", "TTL", "APPROVALS", "AGE", "REASON"}
	if issuers {
		cols = slices.Insert(cols, 4, "ISSUER")
	}
	t := ios.NewTable(cols...)
	t.Style(2, func(s string) string {
		switch broker.State(s) {
		case broker.StateApproved:
			return st.Success.Render(s)
		case broker.StatePending:
			return st.Warning.Render(s)
		}
		return st.Muted.Render(s)
	})
	for _, r := range rs {
		who := PartyName(r.Requester)
		if r.Requester.Same(me) {
			who += " (you)"
		}
		scopes := strings.Join(r.Scopes, " ")
		reason := truncate(r.Reason, 40)
		switch {
		case r.EndReason != "":
			// A grant that ended early says why, whole: the proxy
			// sends its agent here to find out.
			reason = "ended: " + truncate(r.EndReason, 120)
		case r.State == broker.StateRevoked && r.EndedBy != nil:
			reason = "revoked by " + PartyName(*r.EndedBy)
		}
		if r.Prompt != nil {
			scopes = heldValue(r.Prompt.Model) + " " + heldCall(r.Prompt) + " rule:" + r.Prompt.Rule
			reason = r.Prompt.Excerpt
			if m := r.Prompt.Matches; len(m) > 0 {
				// Where the first match is, then its words: a place
				// holding "; " or ':' is quoted, so none passes for
				// two places or for the boundary (safetext.Join).
				reason = safetext.Join(m[0].Where, "; ", ":") + ": " + m[0].Text
			}
			if r.Prompt.Tool != "" {
				scopes = heldValue(r.Prompt.Model) + " " + heldCall(r.Prompt) + " tool:" + heldValue(r.Prompt.Tool) + " rule:" + r.Prompt.Rule
				reason = r.Prompt.Arguments
			}
			reason = truncate(reason, 40)
		}
		approvals := "-"
		if r.Approval.Required {
			approvals = fmt.Sprintf("%d/%d", r.Approvals(), max(r.Approval.Count, 1))
		}
		row := []string{r.ID, r.Kind, string(r.State), who, scopes, r.TTL.String(), approvals, humanDuration(o.f.Now().Sub(r.CreatedAt)), reason}
		if issuers {
			row = slices.Insert(row, 4, r.Requester.Issuer)
		}
		t.Row(row...)
	}
	return t.Render()
}

// heldValue is a held call's model, path or tool as a view that puts it
// between words shows it: the agent chose it, so one holding a space, a
// quote or a parenthesis (or empty) is quoted (safetext.Join), and a
// model "gpt-4o rule:harmless" cannot pass for the fields after it.
func heldValue(v string) string { return safetext.Join([]string{v}, " ", "()") }

// heldCall is p.Call() with its path as heldValue shows it (the method is
// an HTTP token, or pamctl's own "(method not reported)").
func heldCall(p *broker.PromptHold) string {
	m := p.Method
	if m == "" {
		m = broker.MethodNotReported
	}
	return m + " " + heldValue(p.Endpoint)
}

// truncate cuts s to about n runes once escaped (what a person reads),
// never inside an escape, "…" where it is cut (safetext.Clip). The result is
// raw text, for the table or message that escapes it.
func truncate(s string, n int) string { return safetext.Clip(s, n, false) }

// ReviewOptions are the inputs of `pamctl approve` and `pamctl deny`.
type ReviewOptions struct {
	f       *Factory
	StepUp  StepUpOptions
	Approve bool
	ID      string
	Reason  string
	Scopes  []string
	Output  string
}

// NewCmdReview builds `pamctl approve` (approve=true) or `pamctl deny`.
func NewCmdReview(f *Factory, approve bool, runF func(*cobra.Command, *ReviewOptions) error) *cobra.Command {
	o := &ReviewOptions{f: f, Approve: approve}
	verb, short := "deny", "Deny a pending request"
	if approve {
		verb, short = "approve", "Approve a pending request (optionally narrowing its scopes)"
	}
	cmd := &cobra.Command{
		Use:   verb + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.ID = args[0]
			if err := checkOutput(o.Output); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd, o)
			}
			return reviewRun(cmd, o)
		},
	}
	cmd.Flags().StringVar(&o.Reason, "reason", "", "why (shown to the requester and audited)")
	addStepUpFlags(cmd, &o.StepUp, false)
	if approve {
		cmd.Flags().StringArrayVar(&o.Scopes, "scope", nil, "approve only these scopes (must be within the requested ones)")
	}
	addOutputFlag(cmd, &o.Output)
	return cmd
}

func reviewRun(cmd *cobra.Command, o *ReviewOptions) error {
	cfg, err := o.f.Config(cmd)
	if err != nil {
		return err
	}
	c, _, err := o.f.BrokerClient(cfg)
	if err != nil {
		return err
	}
	var r *broker.Request
	o.StepUp.Target = func(ctx context.Context) string { return describeRequest(ctx, c, o.ID) }
	err = o.f.withStepUp(cmd, cfg, c, &o.StepUp, func() (err error) {
		r, err = c.Review(cmd.Context(), o.ID, o.Approve, api.ReviewRequest{Reason: o.Reason, Scopes: o.Scopes})
		return err
	})
	if err != nil {
		return unreachable(err, cfg.Server)
	}
	ios := o.f.IO
	if o.Output == "json" {
		return ios.JSON(r)
	}
	switch {
	case r.State == broker.StateApproved && r.Prompt != nil && r.Prompt.Tool != "":
		ios.Successf("Released %s for %s: a call of tool %s (rule %s) with arguments %s", r.ID, PartyName(r.Requester), heldValue(r.Prompt.Tool), r.Prompt.Rule, truncate(r.Prompt.Arguments, 200))
	case r.State == broker.StateApproved && r.Prompt != nil:
		ios.Successf("Released %s for %s: %s to %s (rule %s)", r.ID, PartyName(r.Requester), heldCall(r.Prompt), heldValue(r.Prompt.Model), r.Prompt.Rule)
	case r.State == broker.StateApproved:
		ios.Successf("Approved %s for %s: %s until %s", r.ID, PartyName(r.Requester), strings.Join(r.Scopes, " "), r.ExpiresAt.Local().Format("15:04 MST"))
	case r.State == broker.StateDenied:
		ios.Successf("Denied %s", r.ID)
	default:
		ios.Successf("Recorded your approval of %s (%d/%d approvals; waiting for another approver)", r.ID, r.Approvals(), max(r.Approval.Count, 1))
	}
	return nil
}

// TokenOptions are the inputs of `pamctl token`.
type TokenOptions struct {
	f      *Factory
	ID     string
	Output string
}

// NewCmdToken builds `pamctl token`.
func NewCmdToken(f *Factory, runF func(*cobra.Command, *TokenOptions) error) *cobra.Command {
	o := &TokenOptions{f: f}
	cmd := &cobra.Command{
		Use:   "token [ID]",
		Short: "Print the scoped access token of an approved grant",
		Long: `Print the access token of an approved grant (the newest live one when no
ID is given). Agents use it as their OpenAI API key against the proxy.`,
		Example: `  OPENAI_API_KEY=$(pamctl token) OPENAI_BASE_URL=http://127.0.0.1:8701/v1 python agent.py`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.ID = args[0]
			}
			if err := checkOutput(o.Output); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd, o)
			}
			return tokenRun(cmd, o)
		},
	}
	addOutputFlag(cmd, &o.Output)
	return cmd
}

func tokenRun(cmd *cobra.Command, o *TokenOptions) error {
	cfg, err := o.f.Config(cmd)
	if err != nil {
		return err
	}
	c, _, err := o.f.BrokerClient(cfg)
	if err != nil {
		return err
	}
	t, err := c.AccessToken(cmd.Context(), o.ID)
	if err != nil {
		return unreachable(err, cfg.Server)
	}
	if o.Output == "json" {
		return o.f.IO.JSON(map[string]any{"token": t.Token, "expires_at": t.ExpiresAt, "grant": t.Request.ID, "scopes": t.Request.Scopes})
	}
	_, err = fmt.Fprintln(o.f.IO.Out, t.Token)
	return err
}

// RevokeOptions are the inputs of `pamctl revoke`.
type RevokeOptions struct {
	f      *Factory
	StepUp StepUpOptions
	ID     string
}

// NewCmdRevoke builds `pamctl revoke`.
func NewCmdRevoke(f *Factory, runF func(*cobra.Command, *RevokeOptions) error) *cobra.Command {
	o := &RevokeOptions{f: f}
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a grant: the proxy refuses its tokens at once",
		Long: `Revoke an approved grant. The requester, any approver of the request, or
the local admin (through the server's admin socket, when no session is
available) may revoke. The proxy refuses the grant's tokens within a second.
Revoking another person's grant needs a recent login (approvals.reauth_after):
pamctl logs in again when needed, unless --no-input.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.ID = args[0]
			if runF != nil {
				return runF(cmd, o)
			}
			return revokeRun(cmd, o)
		},
	}
	addStepUpFlags(cmd, &o.StepUp, false)
	return cmd
}

func revokeRun(cmd *cobra.Command, o *RevokeOptions) error {
	cfg, err := o.f.Config(cmd)
	if err != nil {
		return err
	}
	c, _, err := o.f.BrokerClient(cfg)
	admin := false
	if err != nil {
		if c = o.f.AdminClient(cfg); c == nil {
			return err
		}
		admin = true
	}
	var r *broker.Request
	o.StepUp.Target = func(ctx context.Context) string { return describeRequest(ctx, c, o.ID) }
	err = o.f.withStepUp(cmd, cfg, c, &o.StepUp, func() (err error) {
		r, err = c.Revoke(cmd.Context(), o.ID, admin)
		return err
	})
	if err != nil {
		return unreachable(err, cfg.Server)
	}
	o.f.IO.Successf("Revoked %s (%s); its tokens are refused from now on", r.ID, strings.Join(r.Scopes, " "))
	return nil
}

// describeRequest names request id for a step-up confirmation: "req_…
// (alice: model:gpt-4o)", or the id alone when it cannot be read.
func describeRequest(ctx context.Context, c *api.Client, id string) string {
	r, err := c.Request(ctx, id, 0)
	if err != nil || r == nil {
		return id
	}
	what := strings.Join(r.Scopes, " ")
	if p := r.Prompt; p != nil {
		what = "held call to " + p.Model + " (rule " + p.Rule + ")"
		if p.Tool != "" {
			what = "held call of tool " + p.Tool + " (rule " + p.Rule + ")"
		}
	}
	return fmt.Sprintf("%s (%s: %s)", r.ID, PartyName(r.Requester), truncate(what, 200))
}
