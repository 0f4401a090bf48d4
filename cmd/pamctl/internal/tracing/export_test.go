package tracing

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"

	"github.com/pamctl/pamctl/broker/audit/logtest"
	"github.com/pamctl/pamctl/broker/safetext"
	"github.com/pamctl/pamctl/proxy"
)

// A collector (or a proxy in front of it) that answers an export with an
// error cannot write into pamctl's log through the error the exporter
// hands to OpenTelemetry's global handler, which New points at pamctl's
// log: the error is short (not the up to 4 MiB of answer the exporter
// reads), the collector token from OTEL_EXPORTER_OTLP_HEADERS that the
// answer echoes is redacted, and the log line is one line with the
// answer's controls escaped once (a U+202E reads \u202e in the text log
// and the JSON log, never \\u202e, an escape escaped again). The error
// Shutdown returns (printed by the CLI, which escapes it) is as short,
// without the token, and raw: escaped once, where it is printed.
func TestExportErrorsAreOneShortLineWithoutTheToken(t *testing.T) {
	const token = "collector-token-0042"
	col := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, "refused \u202edlrow "+r.Header.Get("Authorization")+" bare "+token+
			"\n2026/12/07 12:00:00 pamctl: audit verified, all good\x1b[2K\r"+strings.Repeat("z", 3<<20))
	}))
	defer col.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20"+token)
	defer otel.SetErrorHandler(otel.ErrorHandlerFunc(func(error) {}))

	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var logged logtest.Buffer
			var h slog.Handler = slog.NewTextHandler(&logged, nil)
			if format == "json" {
				h = slog.NewJSONHandler(safetext.JSONWriter(&logged), nil)
			}
			tr, err := New(context.Background(), Config{OTLPEndpoint: col.URL, Insecure: true, SampleRatio: 1}, "test", slog.New(h))
			if err != nil {
				t.Fatal(err)
			}
			ctx := tr.CallBegin(context.Background(), http.Header{})
			tr.CallEnd(ctx, &proxy.CallStats{Endpoint: "chat", Model: "gpt-4o", Status: 200})
			serr := tr.Shutdown(context.Background())
			lines := strings.Split(strings.TrimSuffix(logged.String(), "\n"), "\n")
			if logged.String() == "" {
				t.Fatal("the failed export was not logged")
			}
			for _, l := range lines {
				if l == "" {
					continue
				}
				if strings.ContainsAny(l, "\r\x1b\u202e") || len(l) > 1024 || strings.Contains(l, token) || !strings.Contains(l, "400") ||
					!strings.Contains(l, `\u202edlrow`) || strings.Contains(l, `\\u202e`) {
					t.Errorf("logged export error not one short line without the token, with the status and \\u202e once (%d bytes): %.400s", len(l), l)
				}
			}
			if serr != nil {
				m := serr.Error()
				if len(m) > 1024 || strings.Contains(m, token) || !strings.Contains(m, "refused \u202edlrow") {
					t.Errorf("Shutdown's error not short, raw and without the token (%d bytes): %.300q", len(m), m)
				}
			}
		})
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
