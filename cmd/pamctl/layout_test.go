package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportRules keeps the architecture of docs/architecture.md true:
// imports point one way, storage and CLI libraries stay in their corners.
func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps=false", "-f", "{{.ImportPath}}|{{join .Deps \" \"}}", "github.com/pamctl/pamctl/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	type rule struct {
		who    func(pkg string) bool
		banned func(dep string) bool
		why    string
	}
	under := func(prefix string) func(string) bool {
		return func(p string) bool { return p == prefix || strings.HasPrefix(p, prefix+"/") }
	}
	cliLibs := func(d string) bool {
		for _, lib := range []string{"github.com/spf13/cobra", "github.com/spf13/viper", "github.com/charmbracelet/lipgloss"} {
			if d == lib || strings.HasPrefix(d, lib+"/") {
				return true
			}
		}
		return false
	}
	rules := []rule{
		{func(p string) bool { return !under("github.com/pamctl/pamctl/cmd")(p) }, under("github.com/pamctl/pamctl/cmd"), "nothing imports cmd"},
		{under("github.com/pamctl/pamctl/broker"), under("github.com/pamctl/pamctl/store"), "broker never imports store"},
		{under("github.com/pamctl/pamctl/proxy"), under("github.com/pamctl/pamctl/store"), "proxy never imports store"},
		{under("github.com/pamctl/pamctl/broker"), under("go.etcd.io/bbolt"), "broker never imports bbolt"},
		{under("github.com/pamctl/pamctl/proxy"), under("go.etcd.io/bbolt"), "proxy never imports bbolt"},
		{under("github.com/pamctl/pamctl/proxy"), func(d string) bool {
			return under("github.com/pamctl/pamctl/broker")(d) && !under("github.com/pamctl/pamctl/broker/token")(d) && !under("github.com/pamctl/pamctl/broker/audit")(d)
		}, "proxy uses only broker/token and broker/audit of the broker"},
		{func(p string) bool { return !under("github.com/pamctl/pamctl/cmd")(p) }, cliLibs, "cobra, viper and lipgloss only under cmd/"},
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, deps, _ := strings.Cut(line, "|")
		for _, dep := range strings.Fields(deps) {
			for _, r := range rules {
				if r.who(pkg) && r.banned(dep) {
					t.Errorf("%s imports %s: %s", pkg, dep, r.why)
				}
			}
		}
		checked++
	}
	if checked < 10 {
		t.Fatalf("only %d packages listed; the check is not looking at the tree", checked)
	}
}
