package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/pamctl/pamctl/proxy/scrub"
)

// keyScrubHandler removes every known vaulted key from what the proxy
// logs: the message and every attribute, however deep in a group, an
// error's text and anything else printed. Go's transport quotes the bytes
// of an answer it cannot parse in its errors, so an upstream can put a key
// in an error the proxy logs (and so can anything else that echoes one).
// It reads the set the proxy last built (keys), never lists the vault
// itself: listing logs its own failures.
type keyScrubHandler struct {
	next slog.Handler
	keys *atomic.Pointer[scrub.Set]
}

func (h *keyScrubHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *keyScrubHandler) Handle(ctx context.Context, r slog.Record) error {
	set := h.keys.Load()
	if set.Empty() {
		return h.next.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, set.String(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(scrubAttr(a, set))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *keyScrubHandler) WithAttrs(as []slog.Attr) slog.Handler {
	set := h.keys.Load()
	clean := make([]slog.Attr, len(as))
	for i, a := range as {
		clean[i] = scrubAttr(a, set)
	}
	// Attributes fixed now are scrubbed with today's keys; a key vaulted
	// later is not in them (they are the logger's, not an upstream's).
	return &keyScrubHandler{next: h.next.WithAttrs(clean), keys: h.keys}
}

func (h *keyScrubHandler) WithGroup(name string) slog.Handler {
	return &keyScrubHandler{next: h.next.WithGroup(name), keys: h.keys}
}

// scrubAttr returns a with every key removed from its key and value. A
// value that is neither a string, a group nor a plain number, time or
// bool is printed and, if it held a key, logged as the scrubbed text.
func scrubAttr(a slog.Attr, set *scrub.Set) slog.Attr {
	if set.Empty() {
		return a
	}
	a.Key = set.String(a.Key)
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		a.Value = slog.StringValue(set.String(v.String()))
	case slog.KindGroup:
		g := v.Group()
		clean := make([]slog.Attr, len(g))
		for i, ga := range g {
			clean[i] = scrubAttr(ga, set)
		}
		a.Value = slog.GroupValue(clean...)
	case slog.KindAny:
		var text string
		switch x := v.Any().(type) {
		case error:
			text = x.Error()
		default:
			text = fmt.Sprint(x)
		}
		if clean := set.String(text); clean != text {
			a.Value = slog.StringValue(clean)
		} else {
			a.Value = v
		}
	default:
		a.Value = v
	}
	return a
}
