package tlsconf

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/pamctl/pamctl/broker/safefile"
)

// Options tune a Server.
type Options struct {
	// OnError is told each new failure to reload (unreadable files, a key
	// that does not match its certificate, an expired certificate); the
	// certificate in force stays. The same bad files are reported once.
	OnError func(error)
	// OnReload is told each successful reload of changed files.
	OnReload func()
	// Logger receives watch problems (nil: discarded).
	Logger *slog.Logger
	// Poll re-reads the files on this interval as a backstop to the file
	// watch (default one minute; negative: never).
	Poll time.Duration
	// Settle is how long the files must be quiet after a change before
	// they are read, so a half-written pair is not loaded (default 200ms).
	Settle time.Duration
	// Now is the clock that checks validity dates (nil: time.Now).
	Now func() time.Time
}

// Server is the TLS side of a listener. Its tls.Config picks the
// certificate and client CAs in force at each handshake, so reloading them
// changes new handshakes only: open connections are not touched.
type Server struct {
	cfg Config
	o   Options

	cur atomic.Pointer[material]

	mu      sync.Mutex
	failing bool     // the last reload failed
	badSum  [32]byte // files last refused, so they are reported once
	hasBad  bool
	watched map[string]bool
}

// material is one loaded certificate, key and client CA set.
type material struct {
	sum    [32]byte
	leaf   *x509.Certificate
	config *tls.Config
}

// nextProtos offers HTTP/1.1 only: the listeners' slow-client guards
// (header and body deadlines, per-connection limits) are built and tested
// for HTTP/1.1, and TLS must not change how a listener behaves.
var nextProtos = []string{"http/1.1"}

// NewServer loads c's files; it fails when they are unusable.
func NewServer(c Config, o Options) (*Server, error) {
	if err := c.Validate("tls"); err != nil {
		return nil, err
	}
	if !c.Enabled() {
		return nil, errors.New("tls: cert_file and key_file are not set")
	}
	if o.Poll == 0 {
		o.Poll = time.Minute
	}
	if o.Settle <= 0 {
		o.Settle = 200 * time.Millisecond
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: c, o: o, watched: map[string]bool{}}
	m, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(m)
	return s, nil
}

// TLSConfig is the listener's configuration: TLS 1.2 or later, the
// certificate in force at each handshake, and with client_ca_file a
// verified client certificate required.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: MinVersion,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load().config, nil
		},
	}
}

// Leaf is the certificate in force.
func (s *Server) Leaf() *x509.Certificate { return s.cur.Load().leaf }

// Reload re-reads the files. Unchanged files are a no-op; unusable ones
// leave the certificate in force and are reported through OnError (once
// for the same content) and returned.
func (s *Server) Reload() error {
	m, err := s.load()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.failing = true
		var le *loadError
		if errors.As(err, &le) {
			if s.hasBad && le.sum == s.badSum {
				return err // already reported
			}
			s.badSum, s.hasBad = le.sum, true
		} else {
			s.hasBad = false
		}
		if s.o.OnError != nil {
			s.o.OnError(err)
		}
		return err
	}
	wasBad := s.failing
	s.failing, s.hasBad = false, false
	if m.sum == s.cur.Load().sum {
		if wasBad && s.o.OnReload != nil {
			s.o.OnReload() // back to the files in force
		}
		return nil
	}
	s.cur.Store(m)
	if s.o.OnReload != nil {
		s.o.OnReload()
	}
	return nil
}

// loadError is a failure to load files whose content hashes to sum.
type loadError struct {
	sum [32]byte
	err error
}

func (e *loadError) Error() string { return e.err.Error() }
func (e *loadError) Unwrap() error { return e.err }

func (s *Server) files() []string {
	out := []string{s.cfg.CertFile, s.cfg.KeyFile}
	if s.cfg.ClientCAFile != "" {
		out = append(out, s.cfg.ClientCAFile)
	}
	return out
}

func (s *Server) load() (*material, error) {
	var raw [3][]byte
	h := sha256.New()
	for i, f := range s.files() {
		b, err := safefile.ReadFile(f)
		if errors.Is(err, safefile.ErrNotRegular) || errors.Is(err, safefile.ErrTooLarge) || errors.Is(err, safefile.ErrSwappable) {
			// Not a certificate file at all (a device, a FIFO, a huge
			// file), or one any local user could have replaced: refused
			// like bad content, reported once.
			return nil, &loadError{sum: sha256.Sum256([]byte(err.Error())), err: fmt.Errorf("tls: %w", err)}
		}
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err) // e.g. mid-swap; the health registry logs it once per outage
		}
		raw[i] = b
		h.Write([]byte{byte(i)})
		h.Write(b)
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	fail := func(format string, args ...any) (*material, error) {
		return nil, &loadError{sum: sum, err: fmt.Errorf(format, args...)}
	}
	cert, err := tls.X509KeyPair(raw[0], raw[1])
	if err != nil {
		return fail("tls: %s and %s: %v (both must be PEM, and the key must belong to the certificate)", s.cfg.CertFile, s.cfg.KeyFile, err)
	}
	leaf := cert.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fail("tls: %s: %v", s.cfg.CertFile, err)
		}
	}
	now := s.o.Now()
	if now.After(leaf.NotAfter) {
		return fail("tls: %s expired on %s; install a renewed certificate", s.cfg.CertFile, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return fail("tls: %s is not valid before %s (check the clock or the certificate)", s.cfg.CertFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	tc := &tls.Config{MinVersion: MinVersion, NextProtos: nextProtos, Certificates: []tls.Certificate{cert}}
	if s.cfg.ClientCAFile != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(raw[2]) {
			return fail("tls: client_ca_file %s holds no PEM certificate", s.cfg.ClientCAFile)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return &material{sum: sum, leaf: leaf, config: tc}, nil
}

// Watch reloads the files when they change until ctx ends. It watches
// their directories, not the files: editors and cert tools replace files
// by rename, and Kubernetes swaps a ..data symlink beside them. A poll
// every Options.Poll backs the watch up.
//
// The watches are in place when Watch returns, so a change made after it
// returned is never missed; the reloads run on a goroutine of their own,
// and the returned channel closes when it has stopped.
func (s *Server) Watch(ctx context.Context) (done <-chan struct{}) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.o.Logger.Warn("cannot watch TLS files; polling instead", "err", err.Error(), "every", s.o.Poll.String())
		w = nil
	} else {
		s.addWatches(w)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		s.watch(ctx, w)
	}()
	return stopped
}

// watch is Watch's loop over w's events (w nil: the poll only).
func (s *Server) watch(ctx context.Context, w *fsnotify.Watcher) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w != nil {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	var poll <-chan time.Time
	if s.o.Poll > 0 {
		t := time.NewTicker(s.o.Poll)
		defer t.Stop()
		poll = t.C
	}
	settle := time.NewTimer(time.Hour)
	settle.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-events:
			if !ok {
				events = nil // the watcher is gone; the poll remains
				continue
			}
			settle.Reset(s.o.Settle)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			s.o.Logger.Warn("TLS file watch error; re-reading the files", "err", err.Error())
			settle.Reset(s.o.Settle)
		case <-settle.C:
			_ = s.Reload()
			if w != nil {
				s.addWatches(w)
			}
		case <-poll:
			_ = s.Reload()
		}
	}
}

// addWatches watches the directory of each file and, when a file is a
// symlink, the directory it resolves to now.
func (s *Server) addWatches(w *fsnotify.Watcher) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.files() {
		dirs := []string{filepath.Dir(f)}
		if r, err := filepath.EvalSymlinks(f); err == nil {
			dirs = append(dirs, filepath.Dir(r))
		}
		for _, d := range dirs {
			if s.watched[d] {
				continue
			}
			if err := w.Add(d); err != nil {
				s.o.Logger.Warn("cannot watch a TLS file directory; polling covers it", "dir", d, "err", err.Error())
				continue
			}
			s.watched[d] = true
		}
	}
}
