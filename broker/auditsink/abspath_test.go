package auditsink

import (
	"runtime"
	"strings"
	"testing"
)

// A file sink's path and the anchor file must be absolute by this OS's
// rules: a drive-letter or UNC path on Windows (it was refused there for
// not starting with "/"), "/..." elsewhere. A path relative to the working
// directory, or on Windows to a drive's own working directory or to the
// current drive's root, is refused everywhere.
func TestFilePathsAbsoluteOnThisOS(t *testing.T) {
	windows := runtime.GOOS == "windows"
	for path, ok := range map[string]bool{
		"/var/log/pamctl/trail.jsonl": !windows,
		"relative.jsonl":              false,
		"./trail.jsonl":               false,
		`C:\logs\trail.jsonl`:         windows,
		"C:/logs/trail.jsonl":         windows,
		`\\siem\share\trail.jsonl`:    windows,
		`C:logs\trail.jsonl`:          false,
		`\logs\trail.jsonl`:           false,
		"":                            false,
	} {
		sink := SinkConfig{Type: TypeFile, Path: path}
		err := sink.Validate()
		if got := err == nil || !strings.Contains(err.Error(), "absolute"); got != ok {
			t.Errorf("sink path %q: %v, want ok=%v", path, err, ok)
		}
		if path == "" {
			continue // no anchor
		}
		err = AnchorConfig{File: path}.Validate()
		if got := err == nil || !strings.Contains(err.Error(), "absolute"); got != ok {
			t.Errorf("anchor file %q: %v, want ok=%v", path, err, ok)
		}
	}
}
