package proxy

import "testing"

// A function or MCP call's arguments are an object for the SDKs: a JSON
// string, array, number or boolean at the top is not one a selector can
// read, and clients read it their own way (LangChain passes a string as
// the tool's first argument, so "rm -rf /srv" runs as the command a
// $.command rule never saw; openai-agents fails on it). Such arguments
// are refused as unreadable, fail closed; null reads as no arguments (the
// SDKs read {}), as empty arguments do.
func TestNonObjectFunctionArgumentsRefused(t *testing.T) {
	checkArgumentsRefused(t, []argumentsCase{
		{"shell", `"{\"command\":\"rm -rf /srv\"}"`, true}, // a29/a30: JSON in a string
		{"shell", `"rm -rf /srv"`, true},
		{"shell", ` "rm -rf /srv" `, true},
		{"shell", `[{"command":"rm -rf /srv"}]`, true},
		{"shell", `["rm -rf /srv"]`, true},
		{"shell", `[]`, true},
		{"http", `"tok-abcdefgh1 /srv"`, true},
		{"shell", `5000`, true},
		{"shell", `true`, true},
		{"shell", `null`, false},
		{"shell", `{}`, false},
		{"shell", ` {"command":"ls /srv"}`, false},
	})
}
