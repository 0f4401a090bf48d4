package auditsink

import (
	"strings"
	"testing"
)

// TestInlineHeaderNamesByWords: an inline header whose value may be a
// secret must come from headers_file; whether it may is read from the
// name's words as the proxy reads forward_headers (headername): a
// credential word anywhere in a word, in any letter case, with '_' as
// '-', refuses it (fail closed: X-Monkey, X-Tokenizer, XAuthorization),
// and only an ordinary word holding a fragment (X-Author, X-Keyword),
// whole, does not. The error names the header, never its value.
func TestInlineHeaderNamesByWords(t *testing.T) {
	const value = "INLINEVALUE0001"
	refused := []string{
		"Authorization", "Proxy-Authorization", "X-Api-Key", "Api_Key", "X_API_KEY", "Apikey", "X-Auth-Token", "X-Authtoken",
		"XAuthorization", "Cookie", "Set-Cookie", "X-Amz-Security-Token", "X-Amz-Credential", "X-Amz-Date", "DD-API-KEY",
		"X-Splunk-Token", "Splunk-Token", "X-Splunktoken", "X-Splunk-Hec-Token", "Ocp-Apim-Subscription-Key",
		"X-Monkey", "X-Tokenizer", "X-Password", "X-Passwd", "X-Secret", "X-Signature", "X-Hmac", "X-Session", "X-Bearer",
		"X-Jwt", "X-Credential", "X-Client-Id", "X-Client-Cert", "X-Csrf", "X-Otp", "X-Nonce",
		// an ordinary word run together with, or beside, a credential word
		"X-Authorkey", "X-Author-Token", "X-Keyword-Key", "X-Coauthor", "X-Keyword2", "X-Author.Key", "X-Key.word",
		// the words split at '-' and '_' only: any other separator leaves one word
		"X.Api.Key", "X~Token", "X+Auth",
		"Idempotency-Key",
		// a vendor's API key under a name that says nothing of one
		"X-Honeycomb-Team", "X_Honeycomb_Team",
	}
	for _, name := range refused {
		for _, spelled := range []string{name, strings.ToLower(name), strings.ToUpper(name)} {
			err := SinkConfig{Type: "http", URL: "https://collector.example.com/i", Headers: map[string]string{spelled: value}}.Validate()
			if err == nil || !strings.Contains(err.Error(), spelled+" looks like a credential: put it in headers_file") {
				t.Errorf("inline header %q: %v, want it refused as a credential", spelled, err)
				continue
			}
			if strings.Contains(err.Error(), value) {
				t.Errorf("inline header %q: the error quotes the value: %v", spelled, err)
			}
		}
	}
	for _, name := range []string{
		"X-Author", "X-Authors", "X-Author-Name", "X-Keyword", "X-Keywords", "X-Search-Keyword", "X-Keyboard-Layout", "X-Keynote",
		"X-Disclaimer", "X-Source", "X-Team", "X-Splunk-Request-Channel", "X_Author", "X-AUTHOR",
	} {
		for _, spelled := range []string{name, strings.ToLower(name), strings.ToUpper(name)} {
			if err := (SinkConfig{Type: "http", URL: "https://collector.example.com/i", Headers: map[string]string{spelled: "ml"}}).Validate(); err != nil {
				t.Errorf("inline header %q: %v, want it accepted (no credential word)", spelled, err)
			}
		}
	}
}
