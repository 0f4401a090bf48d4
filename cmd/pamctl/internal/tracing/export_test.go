package tracing

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"

	"github.com/pamctl/pamctl/proxy"
)

// A collector (or a proxy in front of it) that answers an export with an
// error cannot write into pamctl's log through the error the exporter
// hands to OpenTelemetry's global handler (log.Print to stderr unless one
// is set): the error is one line, escaped, short (not the up to 4 MiB of
// answer the exporter reads), and the collector token from
// OTEL_EXPORTER_OTLP_HEADERS that the answer echoes is redacted.
func TestExportErrorsAreOneShortLineWithoutTheToken(t *testing.T) {
	const token = "collector-token-0042"
	col := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, "refused "+r.Header.Get("Authorization")+" bare "+token+
			"\n2026/12/07 12:00:00 pamctl: audit verified, all good\x1b[2K\r"+strings.Repeat("z", 3<<20))
	}))
	defer col.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20"+token)

	var mu sync.Mutex
	var handled []string
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		mu.Lock()
		handled = append(handled, err.Error())
		mu.Unlock()
	}))
	defer otel.SetErrorHandler(otel.ErrorHandlerFunc(func(error) {}))

	tr, err := New(context.Background(), Config{OTLPEndpoint: col.URL, Insecure: true, SampleRatio: 1}, "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx := tr.CallBegin(context.Background(), http.Header{})
	tr.CallEnd(ctx, &proxy.CallStats{Endpoint: "chat", Model: "gpt-4o", Status: 200})
	serr := tr.Shutdown(context.Background())
	mu.Lock()
	defer mu.Unlock()
	msgs := handled
	if serr != nil {
		msgs = append(msgs, serr.Error())
	}
	if len(msgs) == 0 {
		t.Fatal("the failed export was not reported")
	}
	for _, m := range msgs {
		if strings.ContainsAny(m, "\n\r\x1b") || len(m) > 1024 || strings.Contains(m, token) || !strings.Contains(m, "400") {
			t.Errorf("export error not one short line without the token, or without the status (%d bytes): %.300q", len(m), m)
		}
	}
}

// Refusing an OTLP endpoint never prints the credentials it carries, in
// whichever order its problems are found: user info and a query on an
// http:// endpoint (refused as plaintext first), or on one that is no
// http(s) URL at all, stay out of the error (config check and serve print
// it).
func TestValidateNeverEchoesCredentials(t *testing.T) {
	for _, ep := range []string{
		"http://user:S3cretPass@otel:4318",
		"http://otel:4318/base?api_key=S3cretPass",
		"http://otel:4318/base#S3cretPass",
		"ftp://user:S3cretPass@otel:4318",
		"otel:4318/?api_key=S3cretPass",
		"grpc://otel:4318?token=S3cretPass",
		"https://otel:4318/%zz?token=S3cretPass",
	} {
		err := Config{OTLPEndpoint: ep, SampleRatio: 1}.Validate()
		if err == nil {
			t.Errorf("%s: accepted", ep)
			continue
		}
		if strings.Contains(err.Error(), "S3cretPass") {
			t.Errorf("%s: the error shows the credential: %v", ep, err)
		}
	}
}
