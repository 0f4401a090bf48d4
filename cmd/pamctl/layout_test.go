package main

import (
	"os/exec"
	"strings"
	"testing"
)

const (
	etcdtest   = "github.com/pamctl/pamctl/store/etcdtest"
	etcdServer = "go.etcd.io/etcd/server"
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
		{under("github.com/pamctl/pamctl/broker"), under("go.etcd.io/etcd"), "broker never imports etcd"},
		{under("github.com/pamctl/pamctl/proxy"), under("go.etcd.io/etcd"), "proxy never imports etcd"},
		// The etcd server is for tests: store/etcdtest starts members in
		// the test process, and only tests import it (Deps holds what
		// non-test code links), so the pamctl binary carries the client only.
		{func(p string) bool { return !under(etcdtest)(p) }, under(etcdServer), "only store/etcdtest imports the etcd server"},
		{func(p string) bool { return p != etcdtest }, under(etcdtest), "only tests import store/etcdtest"},
	}
	checked, sawServer := 0, false
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, deps, _ := strings.Cut(line, "|")
		if pkg == etcdtest {
			sawServer = strings.Contains(deps, etcdServer)
		}
		for _, dep := range strings.Fields(deps) {
			for _, r := range rules {
				if r.who(pkg) && r.banned(dep) {
					t.Errorf("%s imports %s: %s", pkg, dep, r.why)
				}
			}
		}
		checked++
	}
	if !sawServer {
		t.Errorf("%s does not list %s among its dependencies: the etcd server rule is not looking at the right module path", etcdtest, etcdServer)
	}
	if checked < 10 {
		t.Fatalf("only %d packages listed; the check is not looking at the tree", checked)
	}
}

// TestTopLevelFolders keeps the repository's top level to the folders the
// design names (cmd, broker, proxy, store, docs, testdata, and .ci, bench,
// deploy): a package shared by the broker and the proxy goes under
// broker/audit or broker/token, the two the proxy may import.
func TestTopLevelFolders(t *testing.T) {
	out, err := exec.Command("git", "ls-files", "--full-name", ":/").CombinedOutput()
	if err != nil {
		t.Skipf("git ls-files: %v (not a git checkout)", err)
	}
	allowed := map[string]bool{"cmd": true, "broker": true, "proxy": true, "store": true, "docs": true, "testdata": true, ".ci": true, "bench": true, "deploy": true}
	seen := map[string]bool{}
	// Top-level files: the module, the README and the build's own; a
	// stray one (an editor's accident once added a file named after a
	// line of Go) is as wrong as a stray folder.
	files := map[string]bool{"go.mod": true, "go.sum": true, "README.md": true, "LICENSE": true, ".gitignore": true, ".dockerignore": true, ".goreleaser.yaml": true}
	for _, f := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		dir, _, nested := strings.Cut(f, "/")
		if !nested {
			if !files[f] {
				t.Errorf("top-level file %q is not one the design allows: move it under a folder, or delete it if nothing uses it", f)
			}
			continue
		}
		if seen[dir] {
			continue
		}
		seen[dir] = true
		if !allowed[dir] {
			t.Errorf("top-level folder %q is not one the design allows (docs/architecture.md): move %s under one of cmd, broker, proxy, store", dir, f)
		}
	}
	if !seen["broker"] || !seen["cmd"] {
		t.Fatalf("git ls-files listed %d top-level folders, without broker or cmd: the check is not looking at the tree", len(seen))
	}
}
