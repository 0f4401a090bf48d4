package cli

import (
	"reflect"
	"testing"

	"github.com/pamctl/pamctl/proxy/rules"
)

// A local proxy gets tool_call rules whole from its broker: a rule that
// lost its target or tool on the way would judge prompts instead.
func TestProxyDocumentCarriesToolCallRules(t *testing.T) {
	cfg := &Config{Rules: []rules.Rule{{
		Name: "rm", Target: rules.TargetToolCall, Tool: "shell", Action: rules.Deny,
		Arguments: &rules.ArgumentMatch{Path: "$.command", Pattern: "rm -rf", Unless: "^ls$"},
	}}}
	pc, err := proxyConfigOf(cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := decodeProxyDocument(&Config{}, pc)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Rules, cfg.Rules) {
		t.Fatalf("got %+v", got.Rules)
	}
}
