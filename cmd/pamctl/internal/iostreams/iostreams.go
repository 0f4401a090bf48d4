// Package iostreams owns how the CLI talks to a terminal: which streams it
// writes to, whether they are terminals, the lipgloss styles, tables that
// drop headers and colour when piped, and the one JSON exporter behind every
// `-o json`. Data goes to Out; people-facing notes go to ErrOut.
package iostreams

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/charmbracelet/lipgloss"
	"golang.org/x/term"
)

// IOStreams are the CLI's standard streams.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	inTTY, outTTY, errTTY bool
	styles                Styles
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
	Bold, Muted, Success, Warning, Error, Header, Code lipgloss.Style
}

func newStyles(color bool) Styles {
	if !color {
		p := lipgloss.NewStyle()
		return Styles{p, p, p, p, p, p, p}
	}
	return Styles{
		Bold:    lipgloss.NewStyle().Bold(true),
		Muted:   lipgloss.NewStyle().Foreground(lipgloss.Color("245")),
		Success: lipgloss.NewStyle().Foreground(lipgloss.Color("42")),
		Warning: lipgloss.NewStyle().Foreground(lipgloss.Color("214")),
		Error:   lipgloss.NewStyle().Foreground(lipgloss.Color("203")).Bold(true),
		Header:  lipgloss.NewStyle().Foreground(lipgloss.Color("245")).Bold(true),
		Code:    lipgloss.NewStyle().Foreground(lipgloss.Color("81")),
	}
}

// Notef writes a people-facing line to ErrOut.
func (s *IOStreams) Notef(format string, args ...any) {
	fmt.Fprintf(s.ErrOut, format+"\n", args...)
}

// Successf writes a ✓ line to ErrOut.
func (s *IOStreams) Successf(format string, args ...any) {
	mark := "✓"
	fmt.Fprintf(s.ErrOut, "%s %s\n", s.styles.Success.Render(mark), fmt.Sprintf(format, args...))
}

// Warnf writes a ! line to ErrOut.
func (s *IOStreams) Warnf(format string, args ...any) {
	fmt.Fprintf(s.ErrOut, "%s %s\n", s.styles.Warning.Render("!"), fmt.Sprintf(format, args...))
}

// JSON writes v to Out as indented JSON: the one exporter behind -o json.
func (s *IOStreams) JSON(v any) error {
	enc := json.NewEncoder(s.Out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// JSONLine writes v to Out as one compact JSON line (JSON Lines streams).
func (s *IOStreams) JSONLine(v any) error {
	enc := json.NewEncoder(s.Out)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

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

// Row adds one row.
func (t *Table) Row(cells ...string) { t.rows = append(t.rows, cells) }

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
