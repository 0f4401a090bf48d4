package proxy

import (
	"encoding/json"
	"testing"

	"github.com/pamctl/pamctl/proxy/payload"
)

// askedForUsageWhole is askedForUsage decoding the whole body, as it did.
func askedForUsageWhole(body []byte) bool {
	var f struct {
		StreamOptions *struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	return json.Unmarshal(body, &f) == nil && f.StreamOptions != nil && f.StreamOptions.IncludeUsage
}

// For every body ParseRequest takes, reading stream_options alone says
// what decoding the whole body says.
func FuzzAskedForUsage(f *testing.F) {
	for _, b := range []string{
		`{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}`,
		`{"model":"m","stream":true,"stream_options":{"include_usage":false},"messages":[]}`,
		`{"model":"m","stream":true,"stream_options":null,"messages":[],"x":"include_usage"}`,
		`{"model":"m","stream":true,"stream_options":{"Include_Usage":true},"messages":[]}`,
		`{"model":"m","stream":true,"stream_options":{"include_usage":1},"messages":[]}`,
		`{"model":"m","stream":true,"stream_options":"include_usage","messages":[]}`,
		`{"model":"m","stream":true,"stream\u005foptions":{"include_usage":true},"messages":[]}`,
		`{"model":"m","stream":true,"messages":[{"role":"user","content":"{\"stream_options\":{\"include_usage\":true}}"}]}`,
		`{"model":"m","stream":true,"stream_options":{"include_usage":true,"include_usage":false},"messages":[]}`,
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body string) {
		if _, err := payload.ParseRequest(payload.EndpointChat, []byte(body)); err != nil {
			return
		}
		if got, want := askedForUsage([]byte(body)), askedForUsageWhole([]byte(body)); got != want {
			t.Fatalf("askedForUsage(%s) = %v, decoding the whole body %v", body, got, want)
		}
	})
}
