package payload

import (
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pamctl/pamctl/broker/audit"
)

// A Place is where one text of a request is in its body: a field, or the
// text parts of one content array (the texts Request.Text puts on lines
// of their own), by its JSON path and the role (or item type) of the
// message or input item it belongs to.
type Place struct {
	// Start is where the text begins in the text Places returns.
	Start int

	path []pathSeg
	role string // the role of the message or item the text is in, as sent
	typ  string // the type of the input item the text is in, as sent
}

// Places reads body, the body of r's call as it goes upstream (after
// Rewrite, whose text is the prompt as forwarded), as ParseRequest read
// r's, and returns the text of its model-visible fields, joined as Text
// joins them, and the place of each of its texts, in order (empty ones
// have none). It decodes the body again: it is for a call a rule holds,
// never for every call.
func (r *Request) Places(body []byte) (string, []Place, error) {
	root, err := decodeObject(body)
	if err != nil {
		return "", nil, err
	}
	var b strings.Builder
	var places []Place
	last := -1
	w := &walker{places: true}
	w.visit = func(g int, s string) string {
		if s == "" {
			return s
		}
		if g != last {
			if b.Len() > 0 {
				b.WriteByte('\n')
			}
			p := Place{Start: b.Len(), path: slices.Clone(w.path)}
			p.role, p.typ = member(root, w.path)
			places = append(places, p)
			last = g
		}
		b.WriteString(s)
		return s
	}
	walkRequest(r.Endpoint, root, w)
	if w.err != nil {
		return "", nil, w.err
	}
	return b.String(), places, nil
}

// member returns the role and type of the message or input item a path
// is in: messages[i] of a chat request, input[i] (and an array
// instructions[i]) of a Responses request, items[i] of an items request.
func member(root map[string]any, path []pathSeg) (role, typ string) {
	if len(path) < 2 || path[0].isIndex || !path[1].isIndex {
		return "", ""
	}
	switch path[0].key {
	case "messages", "input", "instructions", "items":
	default:
		return "", ""
	}
	list, _ := root[path[0].key].([]any)
	if path[1].index >= len(list) {
		return "", ""
	}
	m, _ := list[path[1].index].(map[string]any)
	role, _ = m["role"].(string)
	typ, _ = m["type"].(string)
	return role, typ
}

// Bounds of what Where shows of a place.
const (
	maxPlacePath = 160 // the path; a longer one keeps its start and end
	maxPlaceName = 40  // a role or type that is not shown as a plain word, quoted
	maxNameInput = 64 << 10
)

// roles are the roles OpenAI's APIs know; Where shows them as they are.
var roles = map[string]bool{"system": true, "developer": true, "user": true, "assistant": true, "tool": true, "function": true}

// Where names the place for a person: its path, "messages[2]" for the
// content of a message or input item, and in parentheses the role of that
// message or the type of that item: "messages[2] (system)", "input[0]
// (developer)", "instructions", "tools[1].function.description",
// "input[3].output (function_call_output)",
// "messages[1].tool_calls[0].function.arguments (assistant)".
//
// The agent chose the names in a path (property names of a schema, keys
// of an item), the role and the type: each goes through name first (a
// masker: none may show a secret the prompt's masking hides), a key that
// is not a plain identifier of at most 40 bytes shows as <key>, a role
// that is not one OpenAI knows (or a type spelled as one) is quoted
// (quoteCut: raw, a quote doubled, a line feed as ⏎ outside the quotes)
// and cut, and the path is cut to about 160 bytes (its start and its
// end): Where is short and one line, and no name can end its quote early
// or forge another place, whatever the agent sent. A control or bidi
// character of a name stays raw: every view escapes the place once.
func (p Place) Where(name func(string) string) string {
	path := p.path
	if (p.role != "" || p.typ != "") && len(path) >= 3 && !path[2].isIndex && path[2].key == "content" &&
		(len(path) == 3 || len(path) == 4 && path[3].isIndex) {
		path = path[:2] // the message's content: the message
	}
	var b strings.Builder
	for _, s := range path {
		if s.isIndex {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.index))
			b.WriteByte(']')
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		k := s.key
		if !safeKey([]byte(k)) {
			k = "<key>"
		} else if n := name(k); n != k { // it holds a secret: its placeholder
			k = n
			if !placeholder(k) {
				k = "<key>"
			}
		}
		b.WriteString(k)
	}
	where := cutMiddle(b.String(), maxPlacePath)
	switch {
	case p.role != "" && (p.typ == "" || p.typ == "message"):
		if r := name(clipBytes(p.role, maxNameInput)); roles[r] {
			where += " (" + r + ")"
		} else {
			where += " (role " + quoteCut(r) + ")"
		}
	case p.typ != "":
		if t := name(clipBytes(p.typ, maxNameInput)); safeKey([]byte(t)) && !roles[t] {
			where += " (" + t + ")"
		} else {
			where += " (type " + quoteCut(t) + ")"
		}
	}
	return where
}

// placeholder reports whether k has the shape of a masking placeholder,
// "[EMAIL]", "[REDACTED]": what name made of a key that held a secret.
func placeholder(k string) bool {
	if len(k) < 3 || len(k) > 64 || k[0] != '[' || k[len(k)-1] != ']' {
		return false
	}
	for i := 1; i < len(k)-1; i++ {
		c := k[i]
		if !('A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == ':' || c == '-' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

// quoteCut quotes s for a place line (audit.QuoteLine: raw, a quote
// doubled, a line feed as ⏎ outside the quotes), at most maxPlaceName
// bytes of it, "…" after the quote when it was cut. Control, bidi and
// invisible characters stay raw: whatever shows the place escapes it,
// once (escaping them here too would show an escape as typed text).
func quoteCut(s string) string {
	if len(s) <= maxPlaceName {
		return audit.QuoteLine(s)
	}
	return audit.QuoteLine(clipBytes(s, maxPlaceName)) + "…"
}

// clipBytes cuts s to at most n bytes, on a rune boundary.
func clipBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// cutMiddle cuts the path s to at most about n bytes, keeping its start
// and its end, each cut before a "." or "[", with "…" between them.
func cutMiddle(s string, n int) string {
	if len(s) <= n {
		return s
	}
	head := clipBytes(s, n*5/8)
	if i := strings.LastIndexAny(head, ".["); i > 0 {
		head = head[:i]
	}
	tail := len(s) - (n - len(head))
	for tail < len(s) && !utf8.RuneStart(s[tail]) {
		tail++
	}
	if j := strings.IndexAny(s[tail:], ".["); j >= 0 {
		tail += j
	}
	return head + "…" + s[tail:]
}
