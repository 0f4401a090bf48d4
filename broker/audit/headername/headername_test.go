package headername

import (
	"strings"
	"testing"
)

// TestSecretWordsOneList: every fragment of SecretWords makes a name a
// secret's (Secret) and so a credential's (Credential), before "id" a
// credential's id (CredentialID), and in an ordinary word nothing: the
// three judge one list.
func TestSecretWordsOneList(t *testing.T) {
	for _, w := range SecretWords {
		for _, k := range []string{"X-" + w, "X-" + w + "2", "X" + w + "x", strings.ToUpper("X-" + w), "X_" + w} {
			if !Secret(k) || !Credential(k) {
				t.Errorf("%s: Secret %v, Credential %v; want both", k, Secret(k), Credential(k))
			}
		}
		for _, k := range []string{"X-" + w + "-Id", "X-" + w + "id", "X-" + w + "ids"} {
			if !CredentialID(k) {
				t.Errorf("%s: not a credential's id", k)
			}
		}
	}
	for _, k := range []string{"X-Session-Id", "X-Sessionid"} {
		if !CredentialID(k) || Secret(k) || !Credential(k) {
			t.Errorf("%s: id %v, secret %v, credential %v; want a credential's id, not a secret", k, CredentialID(k), Secret(k), Credential(k))
		}
	}
	for _, w := range append(append([]string{}, ContextWords...), contextWholeWords...) {
		if k := "X-" + w; !Credential(k) || Secret(k) {
			t.Errorf("%s: Credential %v, Secret %v; want a credential's context only", k, Credential(k), Secret(k))
		}
	}
	for w := range ordinaryWords {
		if k := "X-" + w; Secret(k) || Credential(k) || !Ordinary(w) {
			t.Errorf("%s: an ordinary word read as a credential", k)
		}
	}
}

// TestWords: a name's words are split at '-' and '_' only and folded to
// lower case; every other byte stays in its word, so a fragment behind a
// '.' or '~' is still found in it (fail closed).
func TestWords(t *testing.T) {
	for k, want := range map[string]string{
		"X-Api-Key": "x api key", "X_API_KEY": "x api key", "Api_Key": "api key", "X-Author.Key": "x author.key", "x--y": "x  y",
	} {
		if got := strings.Join(Words(k), " "); got != want {
			t.Errorf("Words(%q) = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"X-Author.Key", "X.Api.Key", "X~Token", "X-Key.word", "X-Coauthor", "X-Keyword2"} {
		if !Credential(k) {
			t.Errorf("Credential(%q) = false, want true: a credential fragment in a word that is not an ordinary one", k)
		}
	}
}

// TestNamesTheSecret: a name names the secret itself when it ends in the
// secret's word; "credential" alone names a credential as a whole (the
// key's id and scope in request signing), and a last word about the
// secret (its id, name, type, scope, date, hash) names what sits beside
// it.
func TestNamesTheSecret(t *testing.T) {
	for _, k := range []string{"Authorization", "Authorization2", "X-Api-Key", "X-Api-Key-2", "X_API_KEY", "Apikey", "X-Auth-Token",
		"X-Credential-Key", "X-Keycredential", "X-Credential-Secret", "Cf-Access-Client-Id", "X-Clientid", "X-Password", "X-Jwt"} {
		if !NamesTheSecret(k) {
			t.Errorf("NamesTheSecret(%q) = false, want true", k)
		}
	}
	for _, k := range []string{"X-Amz-Credential", "X-Goog-Credential", "X-Credentials", "Credential", "X-Xcredential", "X-Access-Key-Id", "X-Keyid",
		"X-Credential-Id", "Credential-Scope", "X-Key-Name", "X-Token-Type", "X-Token-Expires", "X-Key-Hash", "X-Api-Key-", "X-Keyword",
		"X-Monkey", "X-Tokenizer", "X-Token-Session", "X-Secret-Access", "2", "X-Api-Key-Value"} {
		if NamesTheSecret(k) {
			t.Errorf("NamesTheSecret(%q) = true, want false", k)
		}
	}
}
