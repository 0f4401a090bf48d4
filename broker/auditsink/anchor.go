package auditsink

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"

	"github.com/pamctl/pamctl/broker/safefile"
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

// CheckTargets builds, as Start does, the target of every syslog and http
// sink and of the anchor, and reports what would stop Start: a url_file
// that is missing or does not hold one http(s) URL, a headers_file or
// ca_file that is missing or holds nothing usable, an anchor file whose
// directory does not exist, that is a symlink or not a file, or that
// another local user may write or replace (checkFileWay). It reads
// those files (never quoting a URL or a header value), creates nothing
// and sends nothing. Entries Validate refuses are skipped (ValidateAll
// reports them), and so is an entry naming a file for which skip returns
// true (its caller has reported that file already). File sinks are not
// built, which would create their directory and file: checkFileTarget
// reads what exists of their path instead. Errors name the entry as
// ValidateAll does.
func CheckTargets(sinks []SinkConfig, anchor AnchorConfig, skip func(path string) bool) []error {
	skipped := func(paths ...string) bool {
		for _, p := range paths {
			if p != "" && skip != nil && skip(p) {
				return true
			}
		}
		return false
	}
	var errs []error
	for i, c := range sinks {
		if c.Type == TypeFile && c.Validate() == nil {
			if err := checkFileTarget(c); err != nil {
				errs = append(errs, fmt.Errorf("audit.sinks[%d] (%s): %w", i, c.Type, err))
			}
			continue
		}
		if (c.Type != TypeHTTP && c.Type != TypeSyslog) || c.Validate() != nil || skipped(c.URLFile, c.HeadersFile, c.CAFile) {
			continue
		}
		t, err := NewTarget(c)
		if err != nil {
			errs = append(errs, fmt.Errorf("audit.sinks[%d] (%s): %w", i, c.Type, err))
			continue
		}
		t.Close()
	}
	if anchor.Enabled() && anchor.Validate() == nil && !skipped(anchor.URLFile, anchor.HeadersFile, anchor.CAFile) {
		t, err := NewAnchorTarget(anchor)
		if err != nil {
			errs = append(errs, fmt.Errorf("audit.anchor: %w", err))
		} else {
			t.Close()
		}
	}
	return errs
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
		if err := checkOutputPath("file", a.File); err != nil {
			return nil, err
		}
		// Judged as a file sink's path is: another local user who may
		// write the file, or rename their own over it, could drop the
		// heads the off-host copy is for.
		if err := checkFileWay(a.File); err != nil {
			return nil, err
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
	to, err := newEndpoint(a.URL, a.URLFile)
	if err != nil {
		return nil, err
	}
	return &anchorURL{to: to, headersFile: a.HeadersFile, client: cl}, nil
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
	f, err := openAppend(t.path, os.O_RDWR)
	if err != nil {
		return fmt.Errorf("anchor file: %w", err)
	}
	if endsMidLine(f) {
		// A write a crash cut short ends the file: the heads go on a
		// line of their own (an append-only file cannot drop the part;
		// ReadAnchors skips it).
		buf = append([]byte{'\n'}, buf...)
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

// endsMidLine reports whether f holds bytes after its last newline.
func endsMidLine(f *os.File) bool {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return false
	}
	var last [1]byte
	_, err = f.ReadAt(last[:], fi.Size()-1)
	return err == nil && last[0] != '\n'
}

// anchorURL POSTs each head as {"head":{...}}.
type anchorURL struct {
	to          endpoint
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
		if err := post(ctx, t.client, t.to, nil, t.headersFile, "application/json", b); err != nil {
			return fmt.Errorf("anchor %w", err)
		}
	}
	return nil
}

func (t *anchorURL) Close() error {
	t.client.CloseIdleConnections()
	return nil
}

// checkOutputPath refuses an audit output path (the anchor file, a file
// sink's file) that is a symlink or exists as anything but a regular file:
// signed heads and events go to the file named, not to wherever a link
// planted there points. key names the setting in errors.
func checkOutputPath(key, path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // created at the first write
	case err != nil:
		return fmt.Errorf("%s %s: %w", key, path, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%s %s is a symlink: pamctl does not follow links for audit output; set the path of the file itself", key, path)
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s %s is not a regular file (%s): set the path of a file", key, path, safefile.Kind(fi.Mode()))
	}
	return nil
}

// openAppend opens path for appending (mode is os.O_WRONLY or os.O_RDWR),
// creating it 0600, without following a symlink at the path, and refuses
// anything but a regular file.
func openAppend(path string, mode int) (*os.File, error) {
	f, err := os.OpenFile(path, mode|os.O_CREATE|os.O_APPEND|appendFlags, 0o600)
	if err != nil {
		if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return nil, fmt.Errorf("%s is a symlink: pamctl does not follow links for audit output; set the path of the file itself", path)
		}
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file (%s)", path, safefile.Kind(fi.Mode()))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
