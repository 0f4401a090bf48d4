// Package serve runs the benchmark's helper servers (mock upstream, bare
// proxy) as the harness expects: print the address, serve until SIGINT or
// SIGTERM, shut down gracefully.
package serve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Run prints "listening http://ADDR" (the harness reads it), serves srv on
// ln until a signal, and exits the process with status 1 on a serve error.
func Run(name string, srv *http.Server, ln net.Listener) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	fmt.Printf("listening http://%s\n", ln.Addr())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}
