package proxy

import (
	"strings"
	"testing"
)

// TestCredentialWordsInOrdinaryWords: the credential and identity classes
// match their fragments (auth, key, claim, ...) anywhere in a word, so
// that run-together names (XAuthorization, X-AuthToken, Apikey,
// Authorization2, X-Keyid, Oauth-Token) stay refused; ordinary words that
// merely hold a fragment (author, keyword, disclaimer) are exempt as
// whole words only, so a label under them can be forwarded. The table
// runs both ways, in every letter case (the proxy matches a client's
// header case-insensitively, so a rule may not depend on how the operator
// capitalized the name).
func TestCredentialWordsInOrdinaryWords(t *testing.T) {
	pass := []string{
		"X-Author", "X-Authors", "X-Author-Name", "Author",
		"X-Keyword", "X-Keywords", "X-Search-Keyword", "X-Keyboard-Layout", "X-Keynote",
		"X-Disclaimer", "X-Disclaimers", "X-Disclaimer-Label",
	}
	refused := map[string]string{
		// credentials run together, prefixed or suffixed: the fragment
		// anywhere in a word still counts
		"Authorization":   classCredential,
		"Authorization2":  classCredential,
		"XAuthorization":  classCredential,
		"X-Authorization": classCredential,
		"X-AuthToken":     classCredential,
		"X-Auth":          classCredential,
		"X-Authn":         classCredential,
		"X-Authz":         classCredential,
		"X-Authed":        classCredential,
		"X-Authenticated": classCredential,
		"X-Authorized":    classCredential,
		"X-Authority":     classCredential, // HTTP/2's :authority is the Host
		"X-Oauth":         classCredential,
		"Oauth-Token":     classCredential,
		"X-Proxyauth":     classCredential,
		"X-Api-Key":       classCredential,
		"Apikey":          classCredential,
		"X-Apikey":        classCredential,
		"X-Keyid":         classCredential,
		"X-Key-Id":        classCredential,
		"X-Keys":          classCredential,
		"X-Pubkey":        classCredential,
		"X-Keyring":       classCredential,
		"X-Monkey":        classCredential, // not on the exempt list: fail closed
		"X-Hotkey":        classCredential,
		// an exempt word run together with anything is not exempt
		"X-Authorid":      classCredential,
		"X-Authorkey":     classCredential,
		"X-Authortoken":   classCredential,
		"X-Coauthor":      classCredential,
		"X-Author2":       classCredential,
		"X-Keywordkey":    classCredential,
		"X-Keyword2":      classCredential,
		"X-Keywordsecret": classCredential,
		// an exempt word beside a credential word is refused for that word
		"X-Author-Token":  classCredential,
		"X-Keyword-Key":   classCredential,
		"X-Author-Secret": classCredential,
		// identities
		"X-Authn-User":        classIdentity,
		"X-Claims":            classIdentity,
		"X-Claim":             classIdentity,
		"X-Claimset":          classIdentity,
		"X-Jwtclaims":         classIdentity,
		"X-Disclaim":          classIdentity,
		"X-Disclaimerclaim":   classIdentity,
		"X-Disclaimer-Claims": classIdentity,
		"X-Author-User":       classIdentity,
		"X-Disclaimer-Role":   classIdentity,
		"Proxy-Authorization": classCredential,
	}
	for _, name := range pass {
		for _, spelled := range []string{name, strings.ToLower(name), strings.ToUpper(name)} {
			if why := forwardRefusal(spelled); why != "" {
				t.Errorf("forwardRefusal(%q) = %q, want it forwarded (an ordinary word, not a credential or an identity)", spelled, why)
			}
			if _, err := newForwardSet([]string{spelled}, "Authorization"); err != nil {
				t.Errorf("forward_headers [%q]: %v", spelled, err)
			}
		}
	}
	for name, class := range refused {
		for _, spelled := range []string{name, strings.ToLower(name), strings.ToUpper(name)} {
			if why := forwardRefusal(spelled); !strings.Contains(why, class) {
				t.Errorf("forwardRefusal(%q) = %q, want the class %q", spelled, why, class)
			}
		}
	}
	// A key header must be named as a credential: an ordinary word that
	// holds a fragment is not one, so the vaulted key never goes in it.
	for _, name := range []string{"X-Author", "X-Keyword", "X-Keyboard", "X-Disclaimer"} {
		if why := keyHeaderRefusal(name); !strings.Contains(why, "not named as a credential") {
			t.Errorf("keyHeaderRefusal(%q) = %q, want it refused as not named as a credential", name, why)
		}
	}
}

// TestKeyHeaderNamedAsTheSecret: a key header must be named as the
// secret it carries (auth, key, token, secret, password, credential,
// bearer, jwt, an OAuth client's id), not only after a credential's
// context (a session, a nonce, a signature or signing parameter, a
// certificate, a one-time code) or as a key's or token's id: an
// intermediary logs those values (a session id groups calls in a
// gateway's dashboard, a nonce goes to a replay cache, AWS echoes its
// signing headers in its errors) or reads them as what they name, so
// the vaulted key would be logged or parsed there. Both as key_header
// and as extra_key.header; gateways' documented key headers still pass.
func TestKeyHeaderNamedAsTheSecret(t *testing.T) {
	const why = "not as the secret"
	for _, name := range []string{
		"X-Amz-Date", "X-Amz-Content-Sha256", "X-Amz-Target", "X-Amz-Signature", "X-Amz-Signedheaders", "X-Amz-Expires",
		"X-Nonce", "X-Request-Nonce", "Nonce",
		"X-Session-Id", "X-Session", "Session-Id", "X-Sessionid",
		"X-Signature", "Signature", "X-Hmac-Signature", "X-Hmac", "X-Sig", "X-Signed",
		"X-Client-Cert", "X-Ssl-Client-Verify", "X-Tls-Client", "X-Otp", "X-Mfa", "X-Saml-Assertion", "X-Oidc",
		"X-Csrf", "X-Xsrf",
		// a key's or token's id names which secret, not the secret
		"X-Key-Id", "X-Keyid", "X-Api-Key-Id", "X-Token-Id", "X-Auth-Id", "X-Access-Key-Ids", "X-Secretid",
	} {
		for _, spelled := range []string{name, strings.ToLower(name)} {
			if got := keyHeaderRefusal(spelled); !strings.Contains(got, why) {
				t.Errorf("keyHeaderRefusal(%q) = %q, want %q", spelled, got, why)
			}
			for _, u := range []Upstream{{KeyHeader: spelled}, {ExtraKey: &ExtraKey{Header: spelled, KeyName: "gw"}}} {
				u.Name, u.URL = "gw", "https://gw.example/v1"
				if err := u.CheckHeaders(); err == nil || !strings.Contains(err.Error(), why) {
					t.Errorf("CheckHeaders %+v: %v, want %q", u, err, why)
				}
			}
		}
	}
	for _, name := range []string{
		"Authorization", "X-Api-Key", "Apikey", "X-Auth-Token", "X-Amz-Security-Token", "X-Session-Token", "X-Session-Key",
		"X-Signature-Key", "X-Nonce-Secret", "Cf-Access-Client-Id", "X-Ibm-Client-Id", "X-Client-Secret", "X-Password",
		"X-Jwt", "X-Bearer", "X-Credential-Key", "X-Id-Token", "X-Key-Id-Secret",
	} {
		if got := keyHeaderRefusal(name); got != "" {
			t.Errorf("keyHeaderRefusal(%q) = %q, want it accepted", name, got)
		}
	}
}

// Black-box red team: names a gateway reads as who the caller is (a
// TLS-terminating proxy's client-certificate claims, run-as, Bifrost's
// virtual key) passed forward_headers; names whose credential word is part
// of another word, or that count tokens, passed as key headers, so the
// vaulted key would have gone out under a name gateways log or read as a
// switch.
func TestRedTeamHeaderNamesOfTheNight(t *testing.T) {
	for _, name := range []string{"X-Client-Verify", "X-Client-Dn", "X-Client-Cn", "X-Client-S-Dn", "X-Client-Issuer", "X-Client-Fingerprint",
		"X-Runas", "X-Run-As", "X-Actas", "X-Act-As", "X-Author-Id", "X-Creator-Id", "X-Spiffe-Id", "X-Dn", "X-Bf-Vk", "X-Bf-Anything"} {
		for _, spelled := range []string{name, strings.ToLower(name)} {
			if forwardRefusal(spelled) == "" {
				t.Errorf("forward_headers accepts %q", spelled)
			}
		}
	}
	for _, name := range []string{"X-Author", "X-Keyword", "X-Client-Version", "X-Client-Name", "X-Disclaimer"} {
		if got := forwardRefusal(name); got != "" {
			t.Errorf("forward_headers refuses %q: %s", name, got)
		}
	}
	for _, name := range []string{"X-Max-Tokens", "X-Token-Count", "X-Tokens", "X-Token-Limit", "X-Tokenizer", "X-Passenger", "X-Compass",
		"X-Monkey", "X-Authority", "X-Bypass", "X-Passthrough", "X-Keyboard-Token-Count", "X-Turkey"} {
		for _, spelled := range []string{name, strings.ToLower(name)} {
			if keyHeaderRefusal(spelled) == "" {
				t.Errorf("key_header accepts %q", spelled)
			}
		}
	}
	for _, name := range []string{"Authorization", "Authorization2", "X-Api-Key", "Apikey", "Api-Key", "Xi-Api-Key", "X-Goog-Api-Key", "X-Oauth-Token",
		"X-Auth-Token", "X-Authtoken", "Xauthorization", "Ocp-Apim-Subscription-Key", "X-Amz-Security-Token", "Helicone-Auth",
		"Cf-Aig-Authorization", "Cf-Access-Client-Secret", "Cf-Access-Client-Id", "X-Portkey-Api-Key", "OpenRouter-Key",
		"X-Access-Token", "X-Client-Secret", "X-Private-Token", "X-Service-Key", "X-Password", "X-Passphrase", "X-Master-Key", "X-Refresh-Token"} {
		if got := keyHeaderRefusal(name); got != "" {
			t.Errorf("key_header refuses %q: %s", name, got)
		}
	}
}

// TestKeyHeaderNotAboutTheSecret: a key header's name ends in the
// secret's own word (...-Key, ...-Token, ...-Secret, Authorization, an
// OAuth client's id). A name that says "credential" only names a
// credential as a whole, which in request signing is the key's id and
// scope, not the secret (AWS SigV4's X-Amz-Credential: AKID/date/region/
// service/aws4_request; Google's V4 X-Goog-Credential), and a name whose
// last word says something about the secret (its id, name, scope, type,
// expiry, fingerprint, hash, ...) names what gateways log beside a key:
// the vaulted key must go in neither. Both as key_header and as
// extra_key.header, in every letter case.
func TestKeyHeaderNotAboutTheSecret(t *testing.T) {
	for _, name := range []string{
		"X-Amz-Credential", "X-Goog-Credential", "X-Credential", "X-Credentials", "Credential", "X-Api-Credential", "X-Amz-Credentials",
		"X-Credential-Id", "X-Goog-Credential-Id", "X-Credentialid", "X-Access-Key-Id", "X-Amz-Access-Key-Id", "Aws-Access-Key-Id", "X-Api-Key-Id",
		"Credential-Scope", "X-Credential-Scope", "X-Amz-Credential-Scope", "X-Key-Scope", "X-Token-Scope",
		"X-Key-Name", "X-Api-Key-Name", "X-Key-Fingerprint", "X-Key-Alias", "X-Key-Hint", "X-Key-Label", "X-Key-Prefix",
		"X-Token-Type", "X-Auth-Type", "X-Auth-Scheme", "X-Auth-Method", "X-Token-Expires", "X-Token-Expiry", "X-Key-Expiration",
		"X-Key-Serial", "X-Token-Issuer", "X-Token-Iss", "X-Token-Audience", "X-Token-Aud", "X-Key-Algorithm", "X-Key-Created",
		"X-Token-Hash", "X-Key-Hash", "X-Key-Sha256", "X-Auth-Date", "X-Auth-Realm", "X-Auth-Status", "X-Auth-Domain",
		"X-Api-Key-Value", "X-Key-Monkey",
		// keys that are data: logged, routed on, or used as what they say
		"X-Public-Key", "X-Partition-Key", "X-Shard-Key", "X-Sort-Key", "X-Hash-Key", "X-Row-Key", "X-Object-Key",
		"X-Request-Key", "X-Message-Key", "X-Encryption-Key", "X-Ms-Encryption-Key", "X-Range-Key", "X-Pub-Key",
	} {
		for _, spelled := range []string{name, strings.ToLower(name), strings.ToUpper(name)} {
			if got := keyHeaderRefusal(spelled); got == "" {
				t.Errorf("keyHeaderRefusal(%q) accepts it, want it refused", spelled)
			}
			for _, u := range []Upstream{{KeyHeader: spelled}, {ExtraKey: &ExtraKey{Header: spelled, KeyName: "gw"}}} {
				u.Name, u.URL = "gw", "https://gw.example/v1"
				if err := u.CheckHeaders(); err == nil {
					t.Errorf("CheckHeaders %+v accepts it", u)
				}
			}
		}
	}
	// what a credential word alone or a descriptor after it is refused
	// for says so
	for _, name := range []string{"X-Amz-Credential", "X-Goog-Credential", "X-Credentials", "X-Key-Name", "X-Token-Type", "X-Token-Expires", "X-Auth-Scheme", "X-Key-Hash"} {
		if got := keyHeaderRefusal(name); !strings.Contains(got, "not the secret itself") {
			t.Errorf("keyHeaderRefusal(%q) = %q, want it refused as not the secret itself", name, got)
		}
	}
	// gateways' documented key headers end in the secret's word
	for _, name := range []string{
		"Authorization", "Authorization2", "Api-Key", "X-Api-Key", "X-Api-Key2", "X-Api-Key-2", "Apikey", "X-Goog-Api-Key", "Xi-Api-Key",
		"X-Amz-Security-Token", "X-Secret-Access-Key", "X-Access-Key", "X-Credential-Key", "X-Credential-Secret", "X-Key-Id-Secret",
		"Ocp-Apim-Subscription-Key", "X-Portkey-Api-Key", "X-Portkey-Virtual-Key", "X-Litellm-Api-Key", "Helicone-Auth",
		"Cf-Aig-Authorization", "Cf-Access-Client-Id", "Cf-Access-Client-Secret", "X-Rapidapi-Key", "Private-Token", "X-Vault-Token",
	} {
		if got := keyHeaderRefusal(name); got != "" {
			t.Errorf("keyHeaderRefusal(%q) = %q, want it accepted", name, got)
		}
	}
}
