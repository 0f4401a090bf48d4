package token

import (
	"fmt"
	"unicode"
)

// CapitalOutsideASCII returns the first letter of s outside ASCII that
// lowering would change (a capital: Ö, the Kelvin sign K, İ), or 0.
// Configured emails and email domains are compared with an identity's
// case-insensitively in ASCII only (policy.LowerASCII, oidc
// allowed_domains), so an entry with such a letter never matches the
// lower-case address an IdP sends: config load refuses it (EmailCaseError).
func CapitalOutsideASCII(s string) rune {
	for _, r := range s {
		if r > unicode.MaxASCII && unicode.ToLower(r) != r {
			return r
		}
	}
	return 0
}

// EmailCaseError says why the configured email or domain s, holding the
// capital r (CapitalOutsideASCII), is refused and what to write instead.
func EmailCaseError(s string, r rune) string {
	return fmt.Sprintf("%q has the capital %q (%U) outside ASCII: emails are matched case-insensitively only in ASCII, so it would never match the address as the identity provider sends it; write it in lower case, as the IdP sends it", s, r, r)
}
