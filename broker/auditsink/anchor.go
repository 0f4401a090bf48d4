package auditsink

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
)

// NewTarget builds the target of one sink.
func NewTarget(c SinkConfig) (Target, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	switch c.Type {
	case TypeSyslog:
		return newSyslogTarget(c)
	case TypeHTTP:
		return newHTTPTarget(c)
	case TypeFile:
		return newFileTarget(c)
	}
	return nil, fmt.Errorf("unknown sink type %q", c.Type)
}

// NewAnchorTarget builds the anchor: signed heads appended to a file, one
// {"head":{...}} line each, or POSTed one at a time as that JSON object.
func NewAnchorTarget(a AnchorConfig) (Target, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	if a.File != "" {
		// The directory is the append-only mount or bucket: pamctl does not
		// create it, and a missing one is a setup error worth failing on.
		if fi, err := os.Stat(filepath.Dir(a.File)); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("file %s: its directory does not exist (mount the append-only location first)", a.File)
		}
		return &anchorFile{path: a.File}, nil
	}
	cl, err := newHTTPClient(a.CAFile)
	if err != nil {
		return nil, err
	}
	if a.HeadersFile != "" {
		if _, err := readHeaders(a.HeadersFile); err != nil {
			return nil, err
		}
	}
	return &anchorURL{url: a.URL, headersFile: a.HeadersFile, client: cl}, nil
}

// anchorFile appends heads to a file it only ever opens with O_APPEND, so
// it works on an append-only file (chattr +a) or mount.
type anchorFile struct{ path string }

func (t *anchorFile) Deliver(_ context.Context, recs []Record) error {
	var buf []byte
	for _, r := range recs {
		if r.Head == nil {
			continue
		}
		b, err := r.Line()
		if err != nil {
			return err
		}
		buf = append(append(buf, b...), '\n')
	}
	if len(buf) == 0 {
		return nil
	}
	f, err := os.OpenFile(t.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("anchor file: %w", err)
	}
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("anchor file: %w", err)
	}
	return nil
}

func (t *anchorFile) Close() error { return nil }

// anchorURL POSTs each head as {"head":{...}}.
type anchorURL struct {
	url         string
	headersFile string
	client      *http.Client
}

func (t *anchorURL) Deliver(ctx context.Context, recs []Record) error {
	for _, r := range recs {
		if r.Head == nil {
			continue
		}
		b, err := r.Line()
		if err != nil {
			return err
		}
		if err := post(ctx, t.client, t.url, nil, t.headersFile, "application/json", b); err != nil {
			return fmt.Errorf("anchor %w", err)
		}
	}
	return nil
}

func (t *anchorURL) Close() error {
	t.client.CloseIdleConnections()
	return nil
}
