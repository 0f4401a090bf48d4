// Package memlimit chooses the Go runtime's soft memory limit for `pamctl
// serve`: the configured memory_limit, or 90 % of the memory limit of the
// container (cgroup v2 or v1) the process runs in. With a limit the
// garbage collector works harder as the heap nears it instead of letting
// the heap double past what is live (a burst of a thousand streams ending
// at once took the proxy from 118 to 177 MB without one; docs/performance.md).
// It also keeps the heap floor (memory_floor, floor.go): the collector
// runs when the heap reaches it, not each time a live heap of a few MiB
// doubles.
package memlimit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
)

// Share is the part of a container's memory limit given to the Go heap:
// the rest covers goroutine stacks outside it, the runtime and the kernel's
// buffers for the process's sockets and files.
const Share = 0.9

// Min is the smallest limit Apply sets: below it the collector would run
// continuously on an idle server.
const Min = 32 << 20

// Choice is the limit Apply set and where it came from.
type Choice struct {
	Bytes  int64  // 0: none
	Source string // "GOMEMLIMIT", "memory_limit", "cgroup PATH", "none"
}

// Apply sets the runtime's soft memory limit. configured is memory_limit: a
// positive number of bytes, 0 for automatic (Share of the cgroup limit, none
// outside a limited cgroup), -1 for none. GOMEMLIMIT in the environment
// wins, as the Go runtime has applied it already. root is the file system
// holding /proc and /sys (os.DirFS("/") outside tests).
func Apply(configured int64, root fs.FS) (Choice, error) {
	c, err := Decide(configured, os.Getenv("GOMEMLIMIT"), root)
	if err != nil || c.Bytes == 0 || c.Source == "GOMEMLIMIT" {
		return c, err
	}
	debug.SetMemoryLimit(c.Bytes)
	return c, nil
}

// Decide picks the limit without setting it.
func Decide(configured int64, env string, root fs.FS) (Choice, error) {
	if env != "" {
		return Choice{Bytes: debug.SetMemoryLimit(-1), Source: "GOMEMLIMIT"}, nil
	}
	switch {
	case configured < -1:
		return Choice{}, fmt.Errorf("memory_limit %d: want bytes (at least %d), 0 for automatic or -1 for none", configured, Min)
	case configured == -1:
		return Choice{Source: "none"}, nil
	case configured > 0:
		if configured < Min {
			return Choice{}, fmt.Errorf("memory_limit %d is below %d bytes (32 MiB): the collector would never rest; raise it, or 0 for automatic", configured, Min)
		}
		return Choice{Bytes: configured, Source: "memory_limit"}, nil
	}
	limit, where, err := cgroupLimit(root)
	if err != nil || limit <= 0 {
		return Choice{Source: "none"}, err
	}
	b := int64(float64(limit) * Share)
	if b < Min {
		b = Min
	}
	return Choice{Bytes: b, Source: "cgroup " + where}, nil
}

// cgroupLimit reads the memory limit of the process's cgroup: v2's
// memory.max (the unified hierarchy, "0::PATH" in /proc/self/cgroup), else
// v1's memory.limit_in_bytes. 0 means unlimited or not found.
func cgroupLimit(root fs.FS) (int64, string, error) {
	raw, err := fs.ReadFile(root, "proc/self/cgroup")
	if errors.Is(err, fs.ErrNotExist) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("memory limit: read /proc/self/cgroup: %w", err)
	}
	var v2, v1 string
	hasV2 := false
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		id, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		ctrls, p, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		if id == "0" && ctrls == "" {
			v2, hasV2 = p, true
		}
		for _, c := range strings.Split(ctrls, ",") {
			if c == "memory" {
				v1 = p
			}
		}
	}
	// Inside a container's cgroup namespace the path is "/" and the
	// limit is the mount's own file; outside one, the file of the path.
	if hasV2 {
		for _, p := range []string{path.Join("sys/fs/cgroup", v2, "memory.max"), "sys/fs/cgroup/memory.max"} {
			if n, ok, err := readLimit(root, p); ok || err != nil {
				return n, "/" + p, err
			}
		}
	}
	if v1 != "" {
		for _, p := range []string{path.Join("sys/fs/cgroup/memory", v1, "memory.limit_in_bytes"), "sys/fs/cgroup/memory/memory.limit_in_bytes"} {
			if n, ok, err := readLimit(root, p); ok || err != nil {
				return n, "/" + p, err
			}
		}
	}
	return 0, "", nil
}

// readLimit reads one limit file: "max", or a number of bytes (v1 writes
// a huge number for unlimited). ok is false when the file does not exist.
func readLimit(root fs.FS, p string) (int64, bool, error) {
	raw, err := fs.ReadFile(root, p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("memory limit: read /%s: %w", p, err)
	}
	s := strings.TrimSpace(string(raw))
	if s == "max" {
		return 0, true, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, false, fmt.Errorf("memory limit: /%s holds %q, not a number of bytes", p, clip(s))
	}
	if n >= math.MaxInt64/2 || n >= 1<<60 {
		return 0, true, nil // v1's "unlimited"
	}
	return n, true, nil
}

func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "…"
	}
	return s
}
