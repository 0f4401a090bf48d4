package cli

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit/logtest"
)

// runAsPamctl makes this test binary behave as the pamctl binary in a
// child process (PAMCTL_TEST_MAIN=1, arguments in PAMCTL_TEST_ARGS).
func init() {
	if os.Getenv("PAMCTL_TEST_MAIN") == "1" {
		os.Args = append([]string{"pamctl"}, strings.Fields(os.Getenv("PAMCTL_TEST_ARGS"))...)
		os.Exit(Main())
	}
}

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct{ logtest.Buffer }

// waitFor waits up to 30s (a -race child on a loaded machine) for s to
// appear in the output; it returns as soon as s is there.
func (l *lockedBuffer) waitFor(s string) bool {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(l.String(), s) {
			return true
		}
	}
	return false
}

func pamctlProcess(t *testing.T, args ...string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "PAMCTL_TEST_MAIN=1", "PAMCTL_TEST_ARGS="+strings.Join(args, " "))
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	return cmd, out
}

// freePort is a loopback address nothing listens on, for a server the
// test starts later: a child process, seconds away on a loaded machine.
// The port is free when picked, not when the child binds it; one from the
// kernel's ephemeral range (what port 0 gives) can be taken in between by
// any connection or port-0 listener of the tests running beside this one,
// so it is picked below that range when there is room.
func freePort(t *testing.T) string {
	t.Helper()
	if addr, ok := unassignedPort(); ok {
		return addr
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// unassignedPort is a free loopback address whose port the kernel never
// hands out by itself: below ip_local_port_range, from 10000 up.
func unassignedPort() (string, bool) {
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return "", false
	}
	var low int
	if _, err := fmt.Sscan(string(raw), &low); err != nil || low <= 11000 {
		return "", false
	}
	for range 100 {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", 10000+rand.IntN(low-10000)))
		if err == nil {
			addr := ln.Addr().String()
			ln.Close()
			return addr, true
		}
	}
	return "", false
}

func waitHealthy(t *testing.T, addrs ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // ends when healthy: generous for a loaded machine
	for _, a := range addrs {
		for {
			resp, err := http.Get("http://" + a + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never became healthy", a)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// serve --dev comes up with /healthz on both ports, a second server on the
// same data dir fails fast and clearly, and Ctrl-C exits 0 at once (well
// inside the grace period).
func TestServeProcessLifecycle(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	home := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", home+"/config")
	t.Setenv("XDG_DATA_HOME", home+"/data")
	t.Setenv("PAMCTL_MASTER_KEY", "")
	dataDir := home + "/pamctl-data"
	b, p := freePort(t), freePort(t)
	srv, out := pamctlProcess(t, "serve", "--dev", "--data-dir", dataDir, "--broker-addr", b, "--proxy-addr", p)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Process.Kill()
	waitHealthy(t, b, p)
	for _, a := range []string{b, p} {
		resp, err := http.Get("http://" + a + "/readyz")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("readyz on %s: %v", a, err)
		}
		resp.Body.Close()
	}
	if !out.waitFor("pamctl login --user alice --groups ml") {
		t.Fatalf("dev banner lacks the next commands:\n%s", out.String())
	}

	// The second server gives up on the lock after 500ms
	// (store.TestLockedByAnotherProcess times that in-process); the bound
	// here is the whole child, a -race binary starting on a loaded machine
	// (it took 2.5s once), so it tells failing from waiting, not 500ms
	// from 1s.
	second, out2 := pamctlProcess(t, "serve", "--dev", "--data-dir", dataDir, "--broker-addr", freePort(t), "--proxy-addr", freePort(t))
	start := time.Now()
	err := second.Run() // Run waits for the output copy: out2 is complete here
	if err == nil || time.Since(start) > 10*time.Second || !strings.Contains(out2.String(), "pamctl is already running against "+dataDir) {
		t.Fatalf("second server: err %v after %v:\n%s", err, time.Since(start), out2.String())
	}

	start = time.Now()
	srv.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	// With nothing in flight it exits at once: well before the grace
	// period, which only a request still running would wait out.
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGINT: %v\n%s", err, out.String())
		}
		if d := time.Since(start); d > gracePeriod/2 {
			t.Fatalf("took %v to exit", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("server did not exit within 30s of SIGINT")
	}
	if _, err := os.Stat(dataDir + "/pamctl.sock"); !os.IsNotExist(err) {
		t.Fatalf("admin socket left behind: %v", err)
	}
}
