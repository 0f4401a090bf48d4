package policy

import (
	"fmt"
	"strings"

	"github.com/pamctl/pamctl/broker/token"
)

// StillGrants reports whether a live grant made under the named policies
// still stands under set as configured now: every one of its scopes must be
// covered by one of those policies that still exists and still applies to
// who. A reload that removes the policy, drops who from its subjects or
// drops the scope ends the grant; the reason says which, in words fit for
// the audit trail. A grant that names no policy never stands.
func (set Set) StillGrants(policies []string, who Subject, scopes []string) (ok bool, reason string) {
	if len(policies) == 0 {
		return false, "the grant names no policy"
	}
	var live []*Policy
	var gone []string
	for _, name := range policies {
		p := set.Find(name)
		switch {
		case p == nil:
			gone = append(gone, fmt.Sprintf("policy %s was removed", name))
		case !p.Subjects.Match(who):
			gone = append(gone, fmt.Sprintf("policy %s no longer applies to %s", name, who))
		default:
			live = append(live, p)
		}
	}
	for _, s := range scopes {
		covered := false
		for _, p := range live {
			covered = covered || token.Covers(p.Scopes, s)
		}
		if !covered {
			why := fmt.Sprintf("scope %s is no longer granted by policy %s", s, strings.Join(policies, ", "))
			if len(gone) > 0 {
				why += " (" + strings.Join(gone, "; ") + ")"
			}
			return false, why
		}
	}
	return true, "granted by policy " + strings.Join(policies, ", ")
}
