// Package iostreams owns how the CLI talks to a terminal: which streams it
// writes to, whether they are terminals, the lipgloss styles, tables that
// drop headers and colour when piped, and the one JSON exporter behind every
// `-o json`. Data goes to Out; people-facing notes go to ErrOut.
//
// It is also the one place where text that came from a user, a model or an
// upstream is made safe to print (see broker/safetext): table cells,
// detail views, the arguments of Notef/Successf/Warnf and whatever a Style
// renders are escaped, so a reason, prompt excerpt, model name or error
// cannot carry ANSI sequences, carriage returns, bidi overrides or line
// breaks onto the terminal, nor hide text from the person reading it. Only what the package's own Styles rendered
// (from escaped text) passes through unchanged.
package iostreams

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/charmbracelet/lipgloss"
	"golang.org/x/term"

	"github.com/pamctl/pamctl/broker/safetext"
)

// Escape makes one line of untrusted text safe to print: control
// characters, ANSI escapes, bidi overrides, line breaks and characters
// that render as nothing (tag characters, zero-width characters, runs of
// variation selectors, stacked combining marks) become visible escapes
// (\x1b, \r, \n, \u202e, \u200b, \U000e0061), as in chat notifications
// and the web page (safetext.Escape).
func Escape(s string) string { return safetext.Escape(s) }

// EscapeLines is Escape for text that may span lines: newlines stay.
func EscapeLines(s string) string { return safetext.EscapeLines(s) }

// IOStreams are the CLI's standard streams.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	inTTY, outTTY, errTTY bool
	styles                Styles
}

// rendered remembers what the Styles produced, so those strings (escaped
// text, wrapped in our own SGR sequences on a terminal) pass Notef and
// tables unchanged, escaped once, while any other text is escaped. It is
// bounded; a string it forgot is escaped again, which costs colour and
// doubles its escapes' backslashes, never safety.
type rendered struct {
	mu  sync.Mutex
	set map[string]struct{}
}

const maxRendered = 4096

func (r *rendered) add(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.set) >= maxRendered {
		clear(r.set)
	}
	r.set[s] = struct{}{}
}

func (r *rendered) has(s string) bool {
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.set[s]
	return ok
}

// Style is a lipgloss style whose Render escapes the text it is given.
type Style struct {
	l   lipgloss.Style
	reg *rendered
}

// Render escapes strs (see Escape), joins them and styles the result.
func (s Style) Render(strs ...string) string {
	esc := make([]string, len(strs))
	for i, x := range strs {
		esc[i] = Escape(x)
	}
	out := s.l.Render(esc...)
	// Remembered whenever it is not the text as given (escaped, styled or
	// both), with colour or without: escaping is not idempotent (the
	// backslash of an escape would double and read as one typed), so
	// what a Style rendered must not be escaped again.
	if s.reg != nil && out != strings.Join(strs, " ") {
		s.reg.add(out)
	}
	return out
}

// safe returns s ready to print: as is when our Styles rendered it, else
// escaped.
func (s *IOStreams) safe(v string) string {
	if s.styles.reg.has(v) {
		return v
	}
	return Escape(v)
}

// safeArgs escapes the text among args (strings, errors, Stringers).
func (s *IOStreams) safeArgs(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string:
			out[i] = s.safe(v)
		case error:
			out[i] = Escape(v.Error())
		case fmt.Stringer:
			out[i] = Escape(v.String())
		default:
			out[i] = a
		}
	}
	return out
}

// System returns the process's streams.
func System() *IOStreams {
	s := &IOStreams{
		In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr,
		inTTY:  term.IsTerminal(int(os.Stdin.Fd())),
		outTTY: term.IsTerminal(int(os.Stdout.Fd())),
		errTTY: term.IsTerminal(int(os.Stderr.Fd())),
	}
	s.styles = newStyles(s.errTTY && os.Getenv("NO_COLOR") == "")
	return s
}

// Test returns streams backed by buffers (never terminals) and the buffers.
func Test() (*IOStreams, *bytes.Buffer, *bytes.Buffer, *bytes.Buffer) {
	in, out, errOut := &bytes.Buffer{}, &bytes.Buffer{}, &bytes.Buffer{}
	return &IOStreams{In: in, Out: out, ErrOut: errOut, styles: newStyles(false)}, in, out, errOut
}

// SetTTY marks the streams as terminals (tests of styled output).
func (s *IOStreams) SetTTY(in, out, errOut bool) {
	s.inTTY, s.outTTY, s.errTTY = in, out, errOut
	s.styles = newStyles(out || errOut)
}

// IsStdinTTY reports whether standard input is a terminal.
func (s *IOStreams) IsStdinTTY() bool { return s.inTTY }

// IsStdoutTTY reports whether standard output is a terminal.
func (s *IOStreams) IsStdoutTTY() bool { return s.outTTY }

// IsStderrTTY reports whether standard error is a terminal.
func (s *IOStreams) IsStderrTTY() bool { return s.errTTY }

// Styles returns the colour styles (plain when not on a terminal).
func (s *IOStreams) Styles() Styles { return s.styles }

// Styles are the few styles the CLI uses.
type Styles struct {
	Bold, Muted, Success, Warning, Error, Header, Code Style

	reg *rendered
}

func newStyles(color bool) Styles {
	reg := &rendered{set: map[string]struct{}{}}
	if !color {
		p := Style{l: lipgloss.NewStyle(), reg: reg}
		return Styles{p, p, p, p, p, p, p, reg}
	}
	st := func(l lipgloss.Style) Style { return Style{l: l, reg: reg} }
	return Styles{
		Bold:    st(lipgloss.NewStyle().Bold(true)),
		Muted:   st(lipgloss.NewStyle().Foreground(lipgloss.Color("245"))),
		Success: st(lipgloss.NewStyle().Foreground(lipgloss.Color("42"))),
		Warning: st(lipgloss.NewStyle().Foreground(lipgloss.Color("214"))),
		Error:   st(lipgloss.NewStyle().Foreground(lipgloss.Color("203")).Bold(true)),
		Header:  st(lipgloss.NewStyle().Foreground(lipgloss.Color("245")).Bold(true)),
		Code:    st(lipgloss.NewStyle().Foreground(lipgloss.Color("81"))),
		reg:     reg,
	}
}

// Notef writes a people-facing line to ErrOut. Text among args is escaped
// (see Escape) unless one of the Styles rendered it.
func (s *IOStreams) Notef(format string, args ...any) {
	fmt.Fprintf(s.ErrOut, format+"\n", s.safeArgs(args)...)
}

// Successf writes a ✓ line to ErrOut; args as for Notef.
func (s *IOStreams) Successf(format string, args ...any) {
	mark := "✓"
	fmt.Fprintf(s.ErrOut, "%s %s\n", s.styles.Success.Render(mark), fmt.Sprintf(format, s.safeArgs(args)...))
}

// Warnf writes a ! line to ErrOut; args as for Notef.
func (s *IOStreams) Warnf(format string, args ...any) {
	fmt.Fprintf(s.ErrOut, "%s %s\n", s.styles.Warning.Render("!"), fmt.Sprintf(format, s.safeArgs(args)...))
}

// JSON writes v to Out as indented JSON: the one exporter behind -o json.
// The JSON is exact; see jsonSafe for the characters it writes as \u escapes.
func (s *IOStreams) JSON(v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := s.Out.Write(jsonSafe(buf.Bytes()))
	return err
}

// JSONLine writes v to Out as one compact JSON line (JSON Lines streams).
func (s *IOStreams) JSONLine(v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := s.Out.Write(jsonSafe(buf.Bytes()))
	return err
}

// jsonSafe is safetext.EscapeJSON: the characters encoding/json leaves
// raw but a terminal would act on or show as nothing, as \u escapes.
func jsonSafe(b []byte) []byte { return safetext.EscapeJSON(b) }

// Table prints rows under headers. On a terminal the header is styled and
// columns aligned; piped, it prints tab-separated rows with no header so
// the output is easy to cut and grep.
type Table struct {
	s       *IOStreams
	headers []string
	rows    [][]string
	styles  map[int]func(string) string
}

// NewTable starts a table.
func (s *IOStreams) NewTable(headers ...string) *Table {
	return &Table{s: s, headers: headers, styles: map[int]func(string) string{}}
}

// Row adds one row. Each cell is escaped (see Escape) unless one of the
// Styles rendered it, so data can neither break the row nor the terminal.
func (t *Table) Row(cells ...string) {
	row := make([]string, len(cells))
	for i, c := range cells {
		row[i] = t.s.safe(c)
	}
	t.rows = append(t.rows, row)
}

// Style renders column col through fn on a terminal.
func (t *Table) Style(col int, fn func(string) string) { t.styles[col] = fn }

// Render writes the table to Out.
func (t *Table) Render() error {
	if !t.s.outTTY {
		for _, r := range t.rows {
			if _, err := fmt.Fprintln(t.s.Out, strings.Join(r, "\t")); err != nil {
				return err
			}
		}
		return nil
	}
	widths := make([]int, len(t.headers))
	for i, h := range t.headers {
		widths[i] = lipgloss.Width(h)
	}
	for _, r := range t.rows {
		for i, c := range r {
			if i < len(widths) && lipgloss.Width(c) > widths[i] {
				widths[i] = lipgloss.Width(c)
			}
		}
	}
	line := func(cells []string, header bool) string {
		var b strings.Builder
		for i, c := range cells {
			pad := 0
			if i < len(widths) {
				pad = widths[i] - lipgloss.Width(c)
			}
			switch {
			case header:
				c = t.s.styles.Header.Render(c)
			case t.styles[i] != nil:
				c = t.styles[i](c)
			}
			b.WriteString(c)
			if i < len(cells)-1 {
				b.WriteString(strings.Repeat(" ", pad+2))
			}
		}
		return b.String()
	}
	if _, err := fmt.Fprintln(t.s.Out, line(t.headers, true)); err != nil {
		return err
	}
	for _, r := range t.rows {
		if _, err := fmt.Fprintln(t.s.Out, line(r, false)); err != nil {
			return err
		}
	}
	return nil
}

// Details prints one record as indented "key  value" lines, the detail
// view behind `audit show`: values are escaped like table cells, empty
// values skipped.
type Details struct {
	s      *IOStreams
	indent string
	width  int
	b      strings.Builder
}

// NewDetails starts a detail view whose keys are padded to width.
func (s *IOStreams) NewDetails(indent string, width int) *Details {
	return &Details{s: s, indent: indent, width: width}
}

// Field adds key: value (skipped when value is empty).
func (d *Details) Field(key, value string) {
	if value == "" {
		return
	}
	fmt.Fprintf(&d.b, "%s%-*s %s\n", d.indent, d.width, Escape(key), d.s.safe(value))
}

// FieldLines adds a field of several lines: the first after the key, the
// others under it at the value's column, each escaped like a value (one
// line each: a line cannot break into more). No lines, no field.
func (d *Details) FieldLines(key string, lines []string) {
	for i, l := range lines {
		k := ""
		if i == 0 {
			k = Escape(key)
		}
		fmt.Fprintf(&d.b, "%s%-*s %s\n", d.indent, d.width, k, d.s.safe(l))
	}
}

// Render writes the fields to Out.
func (d *Details) Render() error {
	_, err := io.WriteString(d.s.Out, d.b.String())
	d.b.Reset()
	return err
}
