// Command bareproxy is the baseline of pamctl's end-to-end load benchmark
// (pamctl/bench): a bare httputil.ReverseProxy that forwards /v1/... to an
// upstream and only swaps the client's Authorization header for the
// provider key. No token check, no parsing, no masking, no audit.
//
//	bareproxy -upstream http://127.0.0.1:PORT/v1 [-addr 127.0.0.1:0] [-key sk-bench]
//
// Like pamctl it reads the whole request body before forwarding it:
// ReverseProxy handing the server's request body to the transport lets the
// server discard the body's end once the answer's headers go out, the
// transport then sees its request write fail and closes the upstream
// connection, and a streamed answer is cut (a few streams in a hundred on
// loopback). Its transport keeps up to 64 idle connections to the
// upstream, as pamctl's proxy does. It prints "listening http://ADDR" on stdout once it
// accepts connections and stops on SIGINT or SIGTERM.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/pamctl/pamctl/bench/internal/serve"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	upstream := flag.String("upstream", "", "upstream API base URL, e.g. http://127.0.0.1:9000/v1")
	key := flag.String("key", "sk-bench", "provider key sent upstream")
	flag.Parse()

	target, err := url.Parse(*upstream)
	if err != nil || target.Host == "" {
		fmt.Fprintln(os.Stderr, "bareproxy: -upstream must be an absolute URL such as http://127.0.0.1:9000/v1")
		os.Exit(2)
	}
	base := strings.TrimSuffix(target.Path, "/")
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.URL.Path = base + strings.TrimPrefix(pr.In.URL.Path, "/v1")
			pr.Out.URL.RawPath = ""
			pr.Out.Header.Set("Authorization", "Bearer "+*key)
		},
		Transport:     tr,
		FlushInterval: -1,
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bareproxy:", err)
		os.Exit(1)
	}
	const maxBody = 8 << 20
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			http.Error(w, "bareproxy: read request body: "+err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		rp.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	serve.Run("bareproxy", srv, ln)
}
