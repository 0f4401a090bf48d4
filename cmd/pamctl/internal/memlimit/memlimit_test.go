package memlimit

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestDecide(t *testing.T) {
	v2 := fstest.MapFS{
		"proc/self/cgroup":                          {Data: []byte("0::/kubepods/pod1/c1\n")},
		"sys/fs/cgroup/kubepods/pod1/c1/memory.max": {Data: []byte("268435456\n")},
	}
	v2ns := fstest.MapFS{ // inside a cgroup namespace: the path is "/"
		"proc/self/cgroup":         {Data: []byte("0::/\n")},
		"sys/fs/cgroup/memory.max": {Data: []byte("134217728\n")},
	}
	v2max := fstest.MapFS{
		"proc/self/cgroup":         {Data: []byte("0::/user.slice\n")},
		"sys/fs/cgroup/memory.max": {Data: []byte("max\n")},
	}
	v1 := fstest.MapFS{
		"proc/self/cgroup": {Data: []byte("12:cpu,cpuacct:/docker/x\n4:memory:/docker/x\n")},
		"sys/fs/cgroup/memory/docker/x/memory.limit_in_bytes": {Data: []byte("536870912\n")},
	}
	v1unlimited := fstest.MapFS{
		"proc/self/cgroup":                           {Data: []byte("4:memory:/\n")},
		"sys/fs/cgroup/memory/memory.limit_in_bytes": {Data: []byte("9223372036854771712\n")},
	}
	tiny := fstest.MapFS{
		"proc/self/cgroup":         {Data: []byte("0::/\n")},
		"sys/fs/cgroup/memory.max": {Data: []byte("1048576\n")},
	}
	garbage := fstest.MapFS{
		"proc/self/cgroup":         {Data: []byte("0::/\n")},
		"sys/fs/cgroup/memory.max": {Data: []byte("lots\n")},
	}
	for _, tc := range []struct {
		name       string
		configured int64
		env        string
		root       fstest.MapFS
		bytes      int64
		source     string
		err        string
	}{
		{name: "v2 cgroup", root: v2, bytes: 241591910, source: "cgroup /sys/fs/cgroup/kubepods/pod1/c1/memory.max"},
		{name: "v2 namespace", root: v2ns, bytes: 120795955, source: "cgroup /sys/fs/cgroup/memory.max"},
		{name: "v2 max", root: v2max, source: "none"},
		{name: "v1", root: v1, bytes: 483183820, source: "cgroup /sys/fs/cgroup/memory/docker/x/memory.limit_in_bytes"},
		{name: "v1 unlimited", root: v1unlimited, source: "none"},
		{name: "no cgroup", root: fstest.MapFS{}, source: "none"},
		{name: "tiny cgroup", root: tiny, bytes: Min, source: "cgroup /sys/fs/cgroup/memory.max"},
		{name: "garbage", root: garbage, source: "none", err: "not a number"},
		{name: "configured", configured: 100 << 20, root: v2, bytes: 100 << 20, source: "memory_limit"},
		{name: "off", configured: -1, root: v2, source: "none"},
		{name: "too small", configured: 1 << 20, root: v2, err: "below"},
		{name: "negative", configured: -2, root: v2, err: "want bytes"},
		{name: "GOMEMLIMIT wins", configured: 100 << 20, env: "200MiB", root: v2, source: "GOMEMLIMIT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Decide(tc.configured, tc.env, tc.root)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.source != "GOMEMLIMIT" && c.Bytes != tc.bytes || c.Source != tc.source {
				t.Fatalf("got %+v, want %d from %q", c, tc.bytes, tc.source)
			}
		})
	}
}
