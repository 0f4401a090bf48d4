package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pamctl/pamctl/proxy/scrub"
)

type stringerOf string

func (s stringerOf) String() string { return string(s) }

// TestLogScrubsKeys: whatever way a key reaches a log line (message,
// attribute key or value, an error, a Stringer, a struct, a group, an
// attribute fixed with With), the line holds none of it, text and JSON
// alike; what holds no key is logged as it was.
func TestLogScrubsKeys(t *testing.T) {
	const key = "sk-proj-LOGLEAK0123456789abcdefghij"
	var keys atomic.Pointer[scrub.Set]
	keys.Store(scrub.New(key))
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			var next slog.Handler = slog.NewTextHandler(&buf, nil)
			if format == "json" {
				next = slog.NewJSONHandler(&buf, nil)
			}
			log := slog.New(&keyScrubHandler{next: next, keys: &keys})
			log.With("fixed", "x"+key).WithGroup("g").Warn("msg "+key,
				"err", fmt.Errorf("malformed HTTP status code %q", key),
				"str", stringerOf(key),
				"any", struct{ K string }{key},
				"list", []string{"a", key},
				"x-"+key, 1,
				slog.Group("inner", "deep", key, "n", 7),
				"clean", "fine", "num", 42, "e2", errors.New("plain"))
			out := buf.String()
			if strings.Contains(out, key) || strings.Contains(out, key[8:]) {
				t.Errorf("key logged: %s", out)
			}
			for _, want := range []string{"fine", "42", "plain", "malformed HTTP status code", "7"} {
				if !strings.Contains(out, want) {
					t.Errorf("%q lost: %s", want, out)
				}
			}
		})
	}
	// No keys known yet: the line is logged as it is.
	var none atomic.Pointer[scrub.Set]
	var buf bytes.Buffer
	slog.New(&keyScrubHandler{next: slog.NewTextHandler(&buf, nil), keys: &none}).Warn("m", "v", "abc")
	if !strings.Contains(buf.String(), "v=abc") {
		t.Errorf("got %s", buf.String())
	}
}
