package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/store"
)

// crashChild runs a dev server in this (child) process for TestCrashKeepsAcknowledgedCalls
// and never returns: the parent kills it with SIGKILL.
func crashChild(dir string) {
	cfg, err := LoadConfig("", nil)
	if err != nil {
		fmt.Println("config:", err)
		os.Exit(2)
	}
	cfg.Broker.Addr, cfg.Proxy.Addr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.MasterKeyFile = filepath.Join(dir, "master.key")
	app, err := NewApp(context.Background(), cfg, AppOptions{Dev: true})
	if err != nil {
		fmt.Println("app:", err)
		os.Exit(2)
	}
	fmt.Printf("READY %s %s\n", app.BrokerURL(), app.ProxyURL())
	_ = app.Serve(context.Background(), func() (*Config, error) { return cfg, nil })
	os.Exit(0)
}

// A server killed with SIGKILL under load loses no acknowledged call: every
// call a client saw complete has its proxy.call event, and the chain verifies.
func TestCrashKeepsAcknowledgedCalls(t *testing.T) {
	if dir := os.Getenv("PAMCTL_CRASH_CHILD"); dir != "" {
		crashChild(dir)
	}
	if testing.Short() {
		t.Skip("starts a child server")
	}
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config-admin"))
	t.Setenv("PAMCTL_MASTER_KEY", "")
	child := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsAcknowledgedCalls$")
	child.Env = append(os.Environ(), "PAMCTL_CRASH_CHILD="+dir)
	stdout, _ := child.StdoutPipe()
	child.Stderr = io.Discard
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			child.Process.Kill()
			child.Wait()
		}
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "READY ") {
		t.Fatalf("child: %q %v", line, err)
	}
	f := strings.Fields(line)
	brokerURL, proxyURL := f[1], f[2]

	s := &testServer{dir: dir}
	t.Setenv("PAMCTL_SERVER", brokerURL)
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "login")
	s.as(t, "alice", "", "request", "--scope", "model:gpt-4o-mini").must(t, "request")
	tok := strings.TrimSpace(s.as(t, "alice", "", "token").must(t, "token").out)

	var completed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("POST", proxyURL+"/v1/chat/completions", strings.NewReader(`{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"count to three"}]}`))
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := client.Do(req)
				if err != nil {
					return // the server is gone
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode == 200 && strings.Contains(string(body), "data: [DONE]") {
					completed.Add(1)
				}
			}
		}()
	}
	deadline := time.Now().Add(20 * time.Second)
	for completed.Load() < 150 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed = true
	child.Wait()
	close(stop)
	wg.Wait()
	seen := completed.Load()
	if seen < 50 {
		t.Fatalf("only %d calls completed before the kill; the load did not run", seen)
	}

	l, err := openExistingLocal(context.Background(), &Config{DataDir: filepath.Join(dir, "data"), MasterKeyFile: filepath.Join(dir, "master.key")})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	kr, err := l.keyring(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	lg, err := l.db.AuditLog(store.AuditOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	var calls int64
	lg.Range(context.Background(), 0, func(e audit.Event) bool {
		if e.Type == audit.TypeProxyCall && e.Status == 200 {
			calls++
		}
		return true
	})
	if calls < seen {
		t.Fatalf("clients saw %d completed calls but only %d proxy.call events survived the crash", seen, calls)
	}
	rep, err := lg.Verify(context.Background(), audit.KeyFunc(kr.AnyPublicKey))
	var be *audit.BreakError
	if errors.As(err, &be) || err != nil {
		t.Fatalf("verify after crash: %v", err)
	}
	t.Logf("completed %d, proxy.call events %d, verified %d events (%d after the signed head)", seen, calls, rep.Events, rep.Unsigned)
}
