package toolcall

import (
	"strings"

	"github.com/pamctl/pamctl/broker/token"
)

// MaxNameLen bounds a tool name (and an MCP server label or tool name) a
// grant with tool scopes may use; OpenAI allows 64 for functions.
const MaxNameLen = 128

// Scopes returns the values of the tool: scopes among a grant's scopes
// ("shell", "mcp:github/*"), nil when it has none: such a grant may use
// every tool, as before tool scopes existed.
func Scopes(granted []string) []string {
	var out []string
	for _, s := range granted {
		if v, ok := strings.CutPrefix(s, token.KindTool+":"); ok && v != "" {
			out = append(out, v)
		}
	}
	return out
}

// ValidName reports whether tool (as Call.Tool spells it) is a name a tool
// scope can name exactly: letters, digits, '_', '-' and '.', 1 to
// MaxNameLen bytes, or "mcp:SERVER/NAME" with both parts so. Anything else
// (a '*' or other glob byte, a space, a Unicode look-alike, an over-long
// name) is never covered by a tool scope, whatever its globs: a grant with
// tool scopes refuses it.
func ValidName(tool string) bool {
	if rest, ok := strings.CutPrefix(tool, "mcp:"); ok {
		server, name, ok := strings.Cut(rest, "/")
		return ok && validPart(server) && validPart(name)
	}
	return validPart(tool)
}

func validPart(s string) bool {
	if s == "" || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// Covered reports whether tool may be used under the tool scopes (values
// as Scopes returns them): it is a ValidName and a scope's glob matches it
// (case-sensitive; '*' matches any run of bytes). "mcp:SERVER/*" as a
// declared tool (every tool of a server) is covered only by a scope whose
// glob absorbs the '*' ("mcp:SERVER/*", "mcp:*", "*").
func Covered(scopes []string, tool string) bool {
	if rest, ok := strings.CutSuffix(tool, "/*"); ok && strings.HasPrefix(rest, "mcp:") {
		if !ValidName(rest + "/x") {
			return false
		}
	} else if !ValidName(tool) {
		return false
	}
	for _, g := range scopes {
		if token.MatchGlob(g, tool) {
			return true
		}
	}
	return false
}
