package cli

import (
	"errors"
	"strings"
	"testing"
)

// A value written where another shape or type was expected is often a
// secret one level too high (a webhook URL as notify.slack, a header line
// as headers, a signed URL as audit.anchor) or in the wrong key. Config
// errors reach the terminal, the log and, on a reload, the trail's
// config.reloaded event (black-box red team: they quoted it). They say
// what was expected and how long the value is, never what it says; a
// short typo of a number or duration still shows.
func TestConfigErrorsDoNotShowAValueInTheWrongPlace(t *testing.T) {
	for _, body := range []string{
		"notify: { slack: \"https://hooks.slack.com/services/T0/B0/SECRETSLACK0001\" }\n",
		"audit: { sinks: [ { type: http, url: \"https://c/x\", headers: \"Authorization: Splunk SECRETHEC0001\" } ] }\n",
		"audit: { anchor: \"https://a/b?sig=SECRETSIG0001\" }\n",
		"policies: \"SECRETPOLICY0001\"\n",
		"upstreams: [ { name: o, url: \"https://x/v1\", key: o, headers: [\"SECRETLIST0001\"] } ]\n",
		"sessions: { max_lifetime: \"sk-proj-SECRETDURATION0001\" }\n",
		"upstreams: [ { name: o, url: \"https://x/v1\", key: o, timeout: \"https://x/?sig=SECRETTIMEOUT0001\" } ]\n",
		"proxy: { max_body: \"sk-proj-SECRETINT0001\" }\n",
		"memory_floor: !!binary U0VDUkVUQklOQVJZMDAwMQ==\n",
		"memory_floor: !foo SECRETTAG0001\n",
		"server: \"broker.example.com/?token=SECRETSERVER0001\"\n",
		"server: \"ftp://user:SECRETPASS0001@broker.example.com\"\n",
		"upstreams: [ { name: o, url: \"api.openai.com/v1?api-key=SECRETURL0001\", key: o } ]\n",
		"store: { backend: etcd, etcd: { endpoints: [\"ftp://root:SECRETETCD0001@etcd:2379\"] } }\n",
		"store: { backend: etcd, etcd: { endpoints: [\"http://root:SECRETETCD0002@etcd.example.com:2379\"] } }\n",
	} {
		cfg, err := LoadConfig(writeConfig(t, body), nil)
		if err == nil {
			err = errors.Join(cfg.Validate(), cfg.CheckStore())
		}
		if err == nil {
			t.Errorf("%q loaded", body)
			continue
		}
		if strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "U0VDUkVU") {
			t.Errorf("%q: the error shows the value: %v", body, err)
		}
	}
	for body, want := range map[string]string{
		"sessions: { max_lifetime: \"30 minutes\" }\n": `"30 minutes"`,
		"proxy: { max_body: \"12kb\" }\n":              `"12kb"`,
	} {
		if _, err := LoadConfig(writeConfig(t, body), nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: a typo of a number or duration should show: %v", body, err)
		}
	}
}
