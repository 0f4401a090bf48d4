// Package headername reads HTTP header names by their words, to judge
// whether a header's value may be a credential: the proxy's
// forward_headers and key_header rules and the audit sinks' inline
// headers rule read names this one way. A name's words are its lower-case
// parts between '-' and '_' (Words); a credential word counts anywhere in
// a word (XAuthorization, Apikey, X-Monkey: fail closed), except in an
// ordinary word, whole (X-Author, X-Keyword). It sits under broker/audit
// because the proxy may import only broker/token and broker/audit of the
// broker; it imports nothing of pamctl.
package headername

import (
	"slices"
	"strings"
)

// Words is k's words: lower case, split at '-' and '_'.
func Words(k string) []string {
	return strings.Split(strings.ToLower(strings.ReplaceAll(k, "_", "-")), "-")
}

// AnyWord reports whether a word of ws is one of set.
func AnyWord(ws []string, set ...string) bool {
	for _, w := range ws {
		for _, s := range set {
			if w == s {
				return true
			}
		}
	}
	return false
}

// ordinaryWords are whole words that hold a fragment of the credential
// or identity classes (auth, key, claim) but name neither: a label under
// X-Author, X-Keyword or X-Disclaimer is forwarded. Only the word exactly,
// in any letter case: run together with anything (X-Authorid, X-Coauthor,
// X-Keyword2) it is judged by its fragments again, as XAuthorization,
// Apikey and X-Keyid are, since a gateway may read a name run together
// any way, and header names have no letter case (X-AuthorId is
// X-Authorid) to split at. Not "authority": HTTP/2's :authority is the
// Host. "portkey" is the vendor's name in Portkey's labels.
var ordinaryWords = map[string]bool{
	"author": true, "authors": true,
	"keyword": true, "keywords": true, "keyboard": true, "keynote": true, "portkey": true,
	"disclaimer": true, "disclaimers": true,
}

// Ordinary reports whether w (a word of Words) is an ordinary word that
// holds a credential or identity fragment but names neither.
func Ordinary(w string) bool { return ordinaryWords[w] }

// SecretWords are the fragments of a word that says its header carries a
// secret (Secret), or, before "id", which secret it is (CredentialID);
// Credential refuses them and more. One list, so the three cannot drift
// apart.
var SecretWords = []string{"auth", "key", "token", "secret", "pass", "credential", "bearer", "jwt"}

// ContextWords are the other fragments Credential finds: a credential's
// context (a session, a signature, a nonce, a certificate, an identity
// protocol), whose values intermediaries log or parse.
var ContextWords = []string{"cookie", "signature", "session", "hmac", "cert", "csrf", "xsrf", "nonce", "assertion", "oidc", "saml", "ntlm", "kerberos"}

// contextWholeWords are what Credential finds as whole words only: signing
// (sig, AWS's amz, SigV4), one-time codes and TLS.
var contextWholeWords = []string{"sig", "sign", "signed", "signing", "sigv4", "amz", "otp", "totp", "hotp", "mfa", "ssl", "tls", "mtls", "x509", "spiffe"}

// WordHolds reports whether a word of ws (Words), but an ordinary one,
// holds one of subs (lower case, no '-'): the fragment anywhere in the
// word, so run-together names (XAuthorization, X-Authtoken,
// Authorization2) are caught.
func WordHolds(ws []string, subs ...string) bool {
	for _, w := range ws {
		if ordinaryWords[w] {
			continue
		}
		for _, s := range subs {
			if strings.Contains(w, s) {
				return true
			}
		}
	}
	return false
}

// Credential reports a name under which a server may take a credential,
// or a value that may be one: Authorization and its kin
// (Proxy-Authorization, Helicone-Auth, X-Auth-Token), any key (Api-Key,
// X-Api-Key, Ocp-Apim-Subscription-Key, X-Portkey-Virtual-Key,
// Idempotency-Key: the proxy exempts that one itself), tokens, secrets,
// passwords and passcodes, cookies and sessions, signatures and HMACs,
// JWTs and bearer assertions, one-time codes and nonces, CSRF tokens,
// client certificates and what vouches for them (X-Client-Cert,
// X-Ssl-Client-Verify), an OAuth client's id (X-Client-Id, the other half
// of a client secret), and AWS request signing (X-Amz-*). Case and '_'
// are folded; a fragment counts anywhere in a word but an ordinary one
// (X-Monkey and X-Tokenizer are credentials here: fail closed).
func Credential(k string) bool {
	ws := Words(k)
	return Secret(k) || WordHolds(ws, ContextWords...) || AnyWord(ws, contextWholeWords...) || vendorSecret(k)
}

// vendorSecretNames are headers a vendor documents for its API key under a
// name that says nothing of one (Honeycomb's X-Honeycomb-Team), lower case.
var vendorSecretNames = []string{"x-honeycomb-team"}

// vendorSecret reports one of vendorSecretNames, case and '_' folded.
func vendorSecret(k string) bool {
	return slices.Contains(vendorSecretNames, strings.Join(Words(k), "-"))
}

// Secret reports a name that says it carries a secret: a word holding one
// of SecretWords (not an ordinary one), or an OAuth client's id, the other
// half of a client secret (Cf-Access-Client-Id). Credential's other words
// name a credential's context (a session, a nonce, a signature, AWS's
// signing headers, a certificate, a one-time code).
func Secret(k string) bool {
	ws := Words(k)
	return WordHolds(ws, SecretWords...) || ClientID(ws)
}

// ClientID reports words naming an OAuth client's id: the word clientid,
// or client then id.
func ClientID(ws []string) bool {
	for i, w := range ws {
		if w == "clientid" || w == "client" && i+1 < len(ws) && ws[i+1] == "id" {
			return true
		}
	}
	return false
}

// secretParts are what a secret's word may be made of (SecretWordWhole):
// the secret words, whole, and the words gateways put before or between
// them (X-Api-Key, Apikey, X-Oauth-Token, Ocp-Apim-Subscription-Key,
// X-Amz-Security-Token, Xauthorization).
var secretParts = []string{"authorization", "authentication", "authn", "auth", "key", "token", "secret", "password", "passwd", "passphrase", "pass",
	"credentials", "credential", "bearer", "jwt", "x", "o", "api", "access", "client", "refresh", "session", "subscription", "service",
	"private", "app", "id", "security", "master"}

// SecretWordWhole reports whether a word of k holding one of SecretWords
// is made of secretParts only (trailing digits aside): X-Api-Key, Apikey,
// Authorization2, but not X-Bypass, X-Passenger, X-Monkey, X-Authority,
// X-Tokenizer, whose secret word is a fragment of another word. An OAuth
// client id (Secret) is one too.
func SecretWordWhole(k string) bool {
	ws := Words(k)
	if ClientID(ws) {
		return true
	}
	for _, w := range ws {
		if stem := strings.TrimRight(w, "0123456789"); WordHolds([]string{stem}, SecretWords...) && madeOf(stem, secretParts) {
			return true
		}
	}
	return false
}

// madeOf reports whether w is a concatenation of parts.
func madeOf(w string, parts []string) bool {
	ok := make([]bool, len(w)+1)
	ok[0] = true
	for i := 1; i <= len(w); i++ {
		for _, p := range parts {
			if len(p) <= i && ok[i-len(p)] && w[i-len(p):i] == p {
				ok[i] = true
				break
			}
		}
	}
	return len(w) > 0 && ok[len(w)]
}

// CredentialID reports a name that ends in a credential's id (X-Key-Id,
// X-Keyid, X-Token-Id, X-Access-Key-Ids, X-Session-Id): which key, not
// the key, and ids are what intermediaries log. An OAuth client's id
// (Cf-Access-Client-Id) is the documented other half of a client secret,
// and not one.
func CredentialID(k string) bool {
	ws := Words(k)
	last := ws[len(ws)-1]
	if last == "clientid" || len(ws) >= 2 && ws[len(ws)-2] == "client" && (last == "id" || last == "ids") {
		return false
	}
	if last == "id" || last == "ids" || last == "kid" {
		return true
	}
	for _, s := range []string{"id", "ids"} {
		if stem, ok := strings.CutSuffix(last, s); ok && stem != "" && (WordHolds([]string{stem}, SecretWords...) || WordHolds([]string{stem}, "session")) {
			return true
		}
	}
	return false
}

// NamesTheSecret reports whether k ends in the secret's own word: its
// last word (a word of digits only after it aside, and trailing digits)
// is made of secretParts and holds a SecretWords fragment other than
// credential (X-Api-Key, X-Api-Key-2, Apikey, X-Auth-Token,
// Authorization2, X-Credential-Key), or k ends in an OAuth client's id
// (Cf-Access-Client-Id). Not a name that says only "credential", which
// names a credential as a whole, in request signing the key's id and
// scope rather than the secret (AWS SigV4's X-Amz-Credential, Google's
// X-Goog-Credential), nor one whose last word says something about the
// secret (X-Key-Name, X-Token-Type, X-Token-Expires, X-Key-Hash,
// Credential-Scope) or is its id (CredentialID).
func NamesTheSecret(k string) bool {
	if CredentialID(k) {
		return false
	}
	ws := Words(k)
	for len(ws) > 1 && ws[len(ws)-1] != "" && strings.Trim(ws[len(ws)-1], "0123456789") == "" {
		ws = ws[:len(ws)-1]
	}
	n := len(ws)
	if ws[n-1] == "clientid" || n >= 2 && ws[n-2] == "client" && ws[n-1] == "id" {
		return true
	}
	stem := strings.TrimRight(ws[n-1], "0123456789")
	if ordinaryWords[stem] || !madeOf(stem, secretParts) {
		return false
	}
	rest := strings.ReplaceAll(strings.ReplaceAll(stem, "credentials", "-"), "credential", "-")
	return WordHolds([]string{rest}, SecretWords...)
}
