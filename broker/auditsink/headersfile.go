package auditsink

import "golang.org/x/net/http/httpguts"

// headerLineProblem says what is wrong with a headers_file line's name
// or value, or "", never quoting either: a name that is not an HTTP token
// (RFC 9110) or a value with a control character would make every
// delivery fail (Go's transport refuses both), the error quoting the name
// in the log and `pamctl audit sinks`; refused when the file is read
// (config check, serve), by its line number.
func headerLineProblem(name, value string) string {
	if !httpguts.ValidHeaderFieldName(name) {
		return "the name is not a header name (ASCII letters, digits and !#$%&'*+-.^_`|~ only; an editor's byte-order mark or a pasted character?)"
	}
	if !httpguts.ValidHeaderFieldValue(value) {
		return "the value holds a control character (CR, NUL, escape, ...)"
	}
	return ""
}
