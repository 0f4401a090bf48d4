package payload

import (
	"fmt"
	"strings"
)

// DeclaredTool is a tool a request makes available to the model (or tells
// it to call), named as tool: scopes name it: a function or custom tool by
// its name, a hosted tool by its kind ("web_search", "file_search",
// "code_interpreter", "computer_use", "image_generation", "local_shell"),
// and an MCP server's tools as "mcp:SERVER/TOOL" ("mcp:SERVER/*" when the
// request lets the model use every tool of the server). Name is "" when
// the request names the tool in a way pamctl cannot read (the caller
// refuses it). Where is the JSON path, e.g. "tools[2]".
type DeclaredTool struct {
	Name  string
	Where string
	// Stored is set for a Responses stored prompt (prompt.id): it may
	// declare tools pamctl cannot see.
	Stored bool
}

// DeclaredTools lists the tools a chat or Responses request declares:
// tools[] (chat and Responses), chat's legacy functions[], and the tools
// tool_choice (and chat's legacy function_call) names, including those of
// an allowed_tools choice. Duplicates are kept (in order). The body must
// have passed ParseRequest. Other endpoints declare nothing.
func DeclaredTools(endpoint string, body []byte) ([]DeclaredTool, error) {
	ep, err := normalize(endpoint)
	if err != nil || ep == EndpointEmbeddings {
		return nil, nil
	}
	root, err := decodeObject(body)
	if err != nil {
		return nil, err
	}
	d := &declared{}
	for i, v := range arr(root["tools"]) {
		d.tool(obj(v), fmt.Sprintf("tools[%d]", i))
	}
	if p := obj(root["prompt"]); ep == EndpointResponses && p != nil {
		if id, _ := p["id"].(string); id != "" {
			d.out = append(d.out, DeclaredTool{Where: "prompt.id", Stored: true})
		}
	}
	if ep == EndpointChat {
		for i, v := range arr(root["functions"]) {
			d.named(obj(v), "name", fmt.Sprintf("functions[%d]", i))
		}
		if fc := obj(root["function_call"]); fc != nil {
			d.named(fc, "name", "function_call")
		}
	}
	switch tc := root["tool_choice"].(type) {
	case map[string]any:
		d.choice(tc, "tool_choice")
	case string, nil:
	default:
		d.add("", "tool_choice")
	}
	return d.out, nil
}

type declared struct{ out []DeclaredTool }

func (d *declared) add(name, where string) {
	d.out = append(d.out, DeclaredTool{Name: name, Where: where})
}

// named adds m[key] when it is a string, else an unnamed tool.
func (d *declared) named(m map[string]any, key, where string) {
	s, _ := m[key].(string)
	d.add(s, where)
}

// names adds the name of a function or custom tool (or choice): chat
// nests it (function.name), Responses has it at the top (name). Whichever
// the upstream reads, both are checked when both are there; neither is an
// unnamed tool.
func (d *declared) names(t map[string]any, typ, where string) {
	n := len(d.out)
	if inner := obj(t[typ]); typ != "" && inner != nil {
		if s, _ := inner["name"].(string); s != "" || inner["name"] != nil {
			d.add(s, where+"."+typ)
		}
	}
	if s, _ := t["name"].(string); s != "" || t["name"] != nil {
		d.add(s, where)
	}
	if len(d.out) == n {
		d.add("", where)
	}
}

// hostedName maps a hosted tool's type to the name its scope uses.
func hostedName(typ string) string {
	switch {
	case strings.HasPrefix(typ, "web_search"):
		return "web_search" // web_search, web_search_preview, dated versions
	case typ == "computer" || strings.HasPrefix(typ, "computer_use"):
		return "computer_use" // computer (the GA tool), computer_use_preview
	}
	return typ // file_search, code_interpreter, image_generation, local_shell, and kinds pamctl does not know
}

// tool adds one entry of a tools array (chat, Responses, or an
// allowed_tools list).
func (d *declared) tool(t map[string]any, where string) {
	if t == nil {
		d.add("", where)
		return
	}
	typ, _ := t["type"].(string)
	switch typ {
	case "", "function", "custom":
		d.names(t, typ, where)
	case "mcp":
		d.mcp(t, where)
	default:
		d.add(hostedName(typ), where)
	}
}

// mcp adds the tools of an MCP server entry: those of allowed_tools (an
// array of names, or an object with tool_names), or every tool of the
// server when it lists none or pamctl cannot read the list.
func (d *declared) mcp(t map[string]any, where string) {
	server, _ := t["server_label"].(string)
	if server == "" {
		d.add("", where)
		return
	}
	var names []any
	switch at := t["allowed_tools"].(type) {
	case []any:
		names = at
	case map[string]any:
		names, _ = at["tool_names"].([]any)
	}
	if len(names) == 0 {
		d.add("mcp:"+server+"/*", where)
		return
	}
	for i, v := range names {
		s, _ := v.(string)
		if s == "" {
			d.add("", fmt.Sprintf("%s.allowed_tools[%d]", where, i))
			continue
		}
		d.add("mcp:"+server+"/"+s, fmt.Sprintf("%s.allowed_tools[%d]", where, i))
	}
}

// choice adds the tools a tool_choice object names.
func (d *declared) choice(tc map[string]any, where string) {
	typ, _ := tc["type"].(string)
	switch typ {
	case "function", "custom":
		d.names(tc, typ, where)
	case "mcp":
		server, _ := tc["server_label"].(string)
		name, _ := tc["name"].(string)
		switch {
		case server == "":
			d.add("", where)
		case name == "":
			d.add("mcp:"+server+"/*", where)
		default:
			d.add("mcp:"+server+"/"+name, where)
		}
	case "allowed_tools":
		list := arr(tc["tools"]) // Responses
		if inner := obj(tc["allowed_tools"]); inner != nil {
			list = arr(inner["tools"]) // chat
		}
		for i, v := range list {
			d.tool(obj(v), fmt.Sprintf("%s.tools[%d]", where, i))
		}
	case "":
		d.add("", where)
	default:
		d.add(hostedName(typ), where)
	}
}
