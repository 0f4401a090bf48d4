//go:build linux

package safefile

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The access classes pamctl reads a secret through when it does not run
// as root: its group (a Kubernetes secret volume with fsGroup: root-owned,
// 0440) or the others bits. Root reads every file as its owner, so these
// branches run only in a process of another user: the test binary runs
// itself again as uid asUID, in group inGID (not in otherID), and reports
// what CheckPerms said of each file.
const (
	asUID = 4343
	inGID = 4344
)

// envJudge names the files the re-run test binary judges, comma-separated.
const envJudge = "PAMCTL_SAFEFILE_JUDGE"

type judged struct {
	Warning string `json:"warning"`
	Err     string `json:"err"`
}

func TestHelperJudgeAsAnotherUser(t *testing.T) {
	files := os.Getenv(envJudge)
	if files == "" {
		t.Skip("run by TestSecretAccessThroughGroupOrOthers")
	}
	out := map[string]judged{}
	for _, p := range strings.Split(files, ",") {
		w, err := CheckPerms(p, Secret)
		j := judged{Warning: w}
		if err != nil {
			j.Err = err.Error()
		}
		out[p] = j
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}

func TestSecretAccessThroughGroupOrOthers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a process as another user")
	}
	// A directory every user may traverse (t.TempDir is 0700).
	dir, err := os.MkdirTemp("", "safefile-group-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	type file struct {
		name     string
		uid, gid int
		mode     os.FileMode
		warn     []string // in the warning, all of them; nil: no warning
		refuse   string   // in the error; "": none
	}
	files := []file{
		// Read through pamctl's group, others shut out: the fsGroup
		// layout, fine.
		{name: "group-0440", uid: 0, gid: inGID, mode: 0o440},
		// pamctl's group may also write: the group is pamctl's own.
		{name: "group-0460", uid: 0, gid: inGID, mode: 0o460},
		// Read through the group, and every local user may read it too.
		{name: "group-0444", uid: 0, gid: inGID, mode: 0o444, warn: []string{"every local user", "chmod o-rwx", "through its group"}},
		// Read through the others bits: everyone may.
		{name: "others-0444", uid: 0, gid: otherID, mode: 0o444, warn: []string{"every local user", "chown", "pamctl's user"}},
		// pamctl's own file that its group may read.
		{name: "owner-0640", uid: asUID, gid: otherID, mode: 0o640, warn: []string{"group or others", "chmod go-rwx"}},
		// A group pamctl is not in may write it: refused, not warned.
		{name: "foreign-group-0460", uid: 0, gid: otherID, mode: 0o460, refuse: "writable by group 4242, which pamctl is not in"},
	}
	var paths []string
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, []byte("secret"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, f.uid, f.gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, f.mode); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	// The test binary, where that user may run it (go test's build
	// directory is root's alone).
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	self := filepath.Join(dir, "safefile.test")
	if err := os.WriteFile(self, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^TestHelperJudgeAsAnotherUser$", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), envJudge+"="+strings.Join(paths, ","))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: asUID, Gid: inGID, Groups: []uint32{inGID}}}
	raw, err := cmd.Output()
	if errors.Is(err, fs.ErrPermission) {
		// It did not start: a temporary directory mounted noexec.
		t.Skipf("cannot run a copy of the test binary from %s: %v", dir, err)
	}
	if err != nil {
		t.Fatalf("the test binary as uid %d: %v\n%s", asUID, err, raw)
	}
	// The report is the first line (go test prints PASS after it).
	line, _, _ := strings.Cut(string(raw), "\n")
	got := map[string]judged{}
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("report %q: %v", raw, err)
	}
	for i, f := range files {
		j, ok := got[paths[i]]
		switch {
		case !ok:
			t.Errorf("%s: not judged", f.name)
		case f.refuse != "":
			if !strings.Contains(j.Err, f.refuse) {
				t.Errorf("%s: want refused (%q), got %+v", f.name, f.refuse, j)
			}
		case j.Err != "":
			t.Errorf("%s: refused: %s", f.name, j.Err)
		case f.warn == nil && j.Warning != "":
			t.Errorf("%s: warned: %s", f.name, j.Warning)
		default:
			for _, w := range f.warn {
				if !strings.Contains(j.Warning, w) {
					t.Errorf("%s: warning %q does not say %q", f.name, j.Warning, w)
				}
			}
		}
	}
}
