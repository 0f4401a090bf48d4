// Package mask owns the detection and replacement of personal data and secrets
// in text: the built-in detectors (EMAIL, PHONE, CREDIT_CARD, SSN, IBAN,
// IP_ADDRESS, OPENAI_KEY, AWS_ACCESS_KEY, GITHUB_TOKEN, SLACK_TOKEN,
// GOOGLE_API_KEY, JWT, PRIVATE_KEY), user-defined regular-expression
// detectors, the per-detector actions (off, mask, redact) and a streaming
// masker whose output for any split of a text equals Mask of the whole text.
//
// The package is pure: it does no I/O and knows nothing about HTTP, JSON
// payloads or SSE. A Masker is compiled once from a Config and is safe for
// concurrent use; a Stream is not.
//
// Detection is one pass over the bytes: a 256-entry table marks the bytes
// that can start or anchor a candidate ('@', digits, '+', '(', ':', '-', '_',
// 'A', 'J', 'x'), and the detectors and their validators (Luhn, mod-97, NANP,
// netip, JWT header decoding, ...) run only at those positions.
package mask

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"sort"
	"strings"
)

// Action says what happens to text found by a detector.
type Action string

const (
	// ActionOff disables the detector.
	ActionOff Action = "off"
	// ActionMask replaces a finding with a typed placeholder such as [EMAIL].
	ActionMask Action = "mask"
	// ActionRedact replaces a finding with [REDACTED], hiding even its type.
	ActionRedact Action = "redact"
)

// RedactedPlaceholder replaces findings of detectors whose action is redact.
const RedactedPlaceholder = "[REDACTED]"

// Built-in detector type names, as used in Config.Detectors, placeholders and
// Counts.
const (
	TypeEmail        = "EMAIL"
	TypePhone        = "PHONE"
	TypeCreditCard   = "CREDIT_CARD"
	TypeSSN          = "SSN"
	TypeIBAN         = "IBAN"
	TypeIPAddress    = "IP_ADDRESS"
	TypeOpenAIKey    = "OPENAI_KEY"
	TypeAWSAccessKey = "AWS_ACCESS_KEY"
	TypeGitHubToken  = "GITHUB_TOKEN"
	TypeSlackToken   = "SLACK_TOKEN"
	TypeGoogleAPIKey = "GOOGLE_API_KEY"
	TypeJWT          = "JWT"
	TypePrivateKey   = "PRIVATE_KEY"
)

// Detector kinds. The order is the tie-break order between candidates that
// start at the same byte and have the same length.
const (
	kPEM = iota
	kJWT
	kOpenAI
	kGitHub
	kSlack
	kGoogle
	kAWS
	kEmail
	kIBAN
	kCard
	kSSN
	kPhone
	kIP
	numBuiltin
)

var builtinNames = [numBuiltin]string{
	kPEM:    TypePrivateKey,
	kJWT:    TypeJWT,
	kOpenAI: TypeOpenAIKey,
	kGitHub: TypeGitHubToken,
	kSlack:  TypeSlackToken,
	kGoogle: TypeGoogleAPIKey,
	kAWS:    TypeAWSAccessKey,
	kEmail:  TypeEmail,
	kIBAN:   TypeIBAN,
	kCard:   TypeCreditCard,
	kSSN:    TypeSSN,
	kPhone:  TypePhone,
	kIP:     TypeIPAddress,
}

// openEnded reports whether a detector's match can grow without bound (a
// token or a PEM block). Such a match wins over any bounded candidate that
// starts at the same byte, so that a stream can release its placeholder
// before it has seen the match's end.
func openEnded(kind int) bool {
	switch kind {
	case kPEM, kJWT, kOpenAI, kGitHub, kSlack, kGoogle:
		return true
	}
	return false
}

// Types returns the names of the built-in detectors.
func Types() []string {
	out := make([]string, 0, numBuiltin)
	for _, n := range builtinNames {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Config selects detectors and actions for one direction (masking.prompt or
// masking.response). The YAML shape is
//
//	response: { default: mask, IP_ADDRESS: off, custom: [{name: EMPLOYEE_ID, pattern: 'EMP-\d{6}'}] }
//
// Detector names are case-insensitive (viper lower-cases keys).
type Config struct {
	// Default applies to every built-in detector not listed in Detectors.
	// Empty means off.
	Default Action `mapstructure:"default" yaml:"default" json:"default,omitempty"`
	// Detectors overrides the action per type name, e.g. "EMAIL": "redact".
	// It may also name a custom detector.
	Detectors map[string]Action `mapstructure:",remain" yaml:",inline" json:"detectors,omitempty"`
	// Custom adds user-defined regular-expression detectors.
	Custom []Custom `mapstructure:"custom" yaml:"custom" json:"custom,omitempty"`
}

// Custom is a user-defined detector: every match of Pattern (RE2 syntax) is
// replaced per Action (default mask) with the placeholder [Name].
//
// Patterns must not match the empty string nor use the text anchors ^ $ \A
// \z (text reaches the masker in pieces; use (?m) for line anchors). A match
// is expected to be at most MaxCustomMatch bytes long: streams decide a
// custom match once MaxCustomMatch bytes past its start are known, so a
// longer match may be cut differently in a stream than in Mask.
type Custom struct {
	Name    string `mapstructure:"name" yaml:"name" json:"name"`
	Pattern string `mapstructure:"pattern" yaml:"pattern" json:"pattern"`
	Action  Action `mapstructure:"action" yaml:"action" json:"action,omitempty"`
}

// MaxCustomMatch bounds the length of a custom detector's match; with custom
// detectors a stream holds back up to this many bytes.
const MaxCustomMatch = 256

// Counts is the number of findings per type name.
type Counts map[string]int

// Add adds o into c.
func (c Counts) Add(o Counts) {
	for k, v := range o {
		c[k] += v
	}
}

// Total is the number of findings of every type.
func (c Counts) Total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

type customDet struct {
	name string
	re   *regexp.Regexp
}

// Masker finds and replaces sensitive data. It is immutable and safe for
// concurrent use. A nil *Masker masks nothing.
type Masker struct {
	on      [numBuiltin]bool
	custom  []customDet // only enabled ones
	names   []string    // per kind: builtins then customs
	repl    []string    // placeholder per kind
	trig    [256]uint8
	enabled bool
	// localHold: some enabled detector anchors after its start inside a run
	// of email-local characters (EMAIL, OPENAI_KEY, GITHUB_TOKEN, JWT, IBAN).
	localHold bool
}

var nameRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`)

func parseAction(a Action) (Action, bool) {
	switch Action(strings.ToLower(strings.TrimSpace(string(a)))) {
	case ActionOff, "false", "none", "disabled":
		return ActionOff, true
	case ActionMask, "true", "on":
		return ActionMask, true
	case ActionRedact:
		return ActionRedact, true
	}
	return "", false
}

// New compiles cfg. It reports every problem at once: unknown detector names,
// bad actions and bad custom patterns.
func New(cfg Config) (*Masker, error) {
	var errs []error
	def := ActionOff
	if cfg.Default != "" {
		a, ok := parseAction(cfg.Default)
		if !ok {
			errs = append(errs, fmt.Errorf("mask: default: unknown action %q (want off, mask or redact)", cfg.Default))
		} else {
			def = a
		}
	}
	acts := make(map[string]Action, len(builtinNames)+len(cfg.Custom))
	for _, n := range builtinNames {
		acts[n] = def
	}
	customActs := make([]Action, len(cfg.Custom))
	customRE := make([]*regexp.Regexp, len(cfg.Custom))
	customName := make([]string, len(cfg.Custom))
	for i, c := range cfg.Custom {
		name := strings.ToUpper(strings.TrimSpace(c.Name))
		customName[i] = name
		switch {
		case !nameRE.MatchString(name):
			errs = append(errs, fmt.Errorf("mask: custom detector %d: name %q must be letters, digits and _ starting with a letter", i, c.Name))
		case slices.Contains(builtinNames[:], name):
			errs = append(errs, fmt.Errorf("mask: custom detector %q: name clashes with a built-in detector", name))
		case slices.Contains(customName[:i], name):
			errs = append(errs, fmt.Errorf("mask: custom detector %q: defined twice", name))
		}
		a := ActionMask
		if c.Action != "" {
			var ok bool
			if a, ok = parseAction(c.Action); !ok {
				errs = append(errs, fmt.Errorf("mask: custom detector %q: unknown action %q (want off, mask or redact)", name, c.Action))
			}
		}
		customActs[i] = a
		acts[name] = a
		re, err := compileCustom(c.Pattern)
		if err != nil {
			errs = append(errs, fmt.Errorf("mask: custom detector %q: %w", name, err))
		}
		customRE[i] = re
	}
	keys := make([]string, 0, len(cfg.Detectors))
	for k := range cfg.Detectors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := strings.ToUpper(strings.TrimSpace(k))
		if _, known := acts[name]; !known {
			errs = append(errs, fmt.Errorf("mask: unknown detector %q (known: %s)", k, strings.Join(Types(), ", ")))
			continue
		}
		a, ok := parseAction(cfg.Detectors[k])
		if !ok {
			errs = append(errs, fmt.Errorf("mask: detector %s: unknown action %q (want off, mask or redact)", name, cfg.Detectors[k]))
			continue
		}
		acts[name] = a
		if i := slices.Index(customName, name); i >= 0 {
			customActs[i] = a
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	m := &Masker{}
	for k, n := range builtinNames {
		m.names = append(m.names, n)
		m.repl = append(m.repl, placeholder(n, acts[n]))
		m.on[k] = acts[n] != ActionOff
	}
	for i := range cfg.Custom {
		if customActs[i] == ActionOff {
			continue
		}
		m.custom = append(m.custom, customDet{name: customName[i], re: customRE[i]})
		m.names = append(m.names, customName[i])
		m.repl = append(m.repl, placeholder(customName[i], customActs[i]))
	}
	m.build()
	return m, nil
}

func placeholder(name string, a Action) string {
	if a == ActionRedact {
		return RedactedPlaceholder
	}
	return "[" + name + "]"
}

func compileCustom(pattern string) (*regexp.Regexp, error) {
	if pattern == "" {
		return nil, errors.New("empty pattern")
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("bad pattern: %w", err)
	}
	if re.MatchString("") || MinMatchLen(pattern) == 0 {
		return nil, errors.New(`pattern can match the empty string (\b, ^, a*, x| …): give it text to match`)
	}
	st, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("bad pattern: %w", err)
	}
	if hasTextAnchor(st) {
		return nil, errors.New(`text anchors (^ $ \A \z) are not supported; text is masked in pieces (use (?m) for line anchors)`)
	}
	return re, nil
}

func hasTextAnchor(re *syntax.Regexp) bool {
	if re.Op == syntax.OpBeginText || re.Op == syntax.OpEndText {
		return true
	}
	for _, s := range re.Sub {
		if hasTextAnchor(s) {
			return true
		}
	}
	return false
}

// Trigger classes: what a byte can anchor.
const (
	tAt = iota + 1
	tDigit
	tPlus
	tParen
	tColon
	tDash
	tUpperA
	tJ
	tUnderscore
	tX
)

func (m *Masker) build() {
	on := m.on
	set := func(b byte, t uint8) { m.trig[b] = t }
	if on[kEmail] {
		set('@', tAt)
	}
	if on[kCard] || on[kPhone] || on[kSSN] || on[kIP] || on[kIBAN] {
		for c := byte('0'); c <= '9'; c++ {
			set(c, tDigit)
		}
	}
	if on[kPhone] {
		set('+', tPlus)
		set('(', tParen)
	}
	if on[kIP] {
		set(':', tColon)
	}
	if on[kPEM] || on[kOpenAI] {
		set('-', tDash)
	}
	if on[kAWS] || on[kGoogle] {
		set('A', tUpperA)
	}
	if on[kJWT] {
		set('J', tJ)
	}
	if on[kGitHub] {
		set('_', tUnderscore)
	}
	if on[kSlack] {
		set('x', tX)
	}
	m.localHold = on[kEmail] || on[kOpenAI] || on[kGitHub] || on[kJWT] || on[kIBAN]
	for _, b := range on {
		m.enabled = m.enabled || b
	}
	m.enabled = m.enabled || len(m.custom) > 0
}

// Enabled reports whether any detector is on.
func (m *Masker) Enabled() bool { return m != nil && m.enabled }

// Mask returns text with every finding replaced, and the number of findings
// per type. When nothing is found it returns text itself.
func (m *Masker) Mask(text string) (string, Counts) {
	counts := Counts{}
	if !m.Enabled() || text == "" {
		return text, counts
	}
	r := m.run(text, 0, true)
	if len(r.sel) == 0 {
		return text, counts
	}
	var b strings.Builder
	b.Grow(len(text))
	m.emit(&b, text, 0, r, counts)
	return b.String(), counts
}

// MaskOffsets is Mask, and where each of offsets (byte offsets into
// text, ascending) lands in the masked text: an offset before a finding
// moves by what the placeholders before it changed, and one inside a
// finding lands where the finding's placeholder ends. A caller that knows
// where the parts of a text begin finds them again in its masked form.
func (m *Masker) MaskOffsets(text string, offsets []int) (string, []int) {
	out := slices.Clone(offsets)
	if !m.Enabled() || text == "" {
		return text, out
	}
	r := m.run(text, 0, true)
	if len(r.sel) == 0 {
		return text, out
	}
	var b strings.Builder
	b.Grow(len(text))
	m.emit(&b, text, 0, r, Counts{})
	shift, k := 0, 0 // shift: the growth of the text before r.sel[k]
	for i, o := range offsets {
		for k < len(r.sel) && r.sel[k].end <= o {
			c := r.sel[k]
			shift += len(m.repl[c.kind]) - (c.end - c.start)
			k++
		}
		if k < len(r.sel) && r.sel[k].start < o {
			c := r.sel[k]
			out[i] = c.start + shift + len(m.repl[c.kind]) // inside: after its placeholder
			continue
		}
		out[i] = o + shift
	}
	return b.String(), out
}

// emit writes w[from:r.rel] with r's selected matches replaced.
func (m *Masker) emit(b *strings.Builder, w string, from int, r runResult, counts Counts) {
	pos := from
	for _, c := range r.sel {
		b.WriteString(w[pos:c.start])
		b.WriteString(m.repl[c.kind])
		counts[m.names[c.kind]]++
		pos = c.end
	}
	if pos < r.rel {
		b.WriteString(w[pos:r.rel])
	}
}
