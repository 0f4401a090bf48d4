package policy

import (
	"fmt"
	"strings"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// CanReview reports whether reviewer may approve or deny a request made by
// requester under the approval terms t (from Decision.Terms, as stored with
// the request), and says why in words fit for the user and the audit trail.
//
// The requester can never review their own request: same sub and issuer, the
// same email under any issuer, or the person a service account acts for. The
// reviewer must match t's approvers or break-glass subjects, and also those
// of every policy in t.Policies that requires approval as the set stands now,
// so removing someone from the config takes effect on pending requests too.
// A request whose policies no longer exist cannot be reviewed.
func CanReview(set Set, t Terms, requester, reviewer Subject) (ok bool, reason string) {
	if reviewer.ID == "" {
		return false, "your identity has no subject; sign in again with pamctl login"
	}
	switch {
	case actsFor(requester, reviewer):
		return false, fmt.Sprintf("you cannot review a request that %s made on your behalf", requester)
	case actsFor(reviewer, requester):
		return false, fmt.Sprintf("you act for %s, who made this request; someone else must review it", requester)
	case sameAct(requester, reviewer):
		return false, fmt.Sprintf("you and %s, who made this request, act for the same person (%s); someone else must review it", requester, requester.Act)
	case SamePerson(requester, reviewer):
		return false, "you cannot review your own request"
	}
	if !t.Required {
		return false, "this request needs no approval"
	}
	var role string
	switch {
	case t.Approvers.Match(reviewer):
		role = fmt.Sprintf("%s is an approver (%s)", reviewer, t.Approvers)
	case t.BreakGlass.Match(reviewer):
		role = fmt.Sprintf("%s is a break-glass approver (%s)", reviewer, t.BreakGlass)
	default:
		return false, fmt.Sprintf("you are not an approver for this request; approvers: %s", t.Approvers)
	}
	for _, name := range t.Policies {
		p := set.Find(name)
		if p == nil {
			return false, fmt.Sprintf("policy %s, which this request relies on, no longer exists; the request must be made again", name)
		}
		if p.Approval.Required && !p.Approval.Approvers.Match(reviewer) && !p.Approval.BreakGlass.Match(reviewer) {
			return false, fmt.Sprintf("you are not an approver under policy %s as configured now (approvers: %s)", name, p.Approval.Approvers)
		}
	}
	return true, role
}

// Satisfied reports whether approvals (the reviewers who approved, in order)
// meet the terms t: Count distinct people among t's approvers, or one
// break-glass approver (reported as such only when the ordinary count is
// not met, so routine approvals are not flagged as break-glass). Each approval is re-checked with CanReview, so a
// self-approval or an approval by someone no longer entitled never counts,
// and the same person approving twice (or under two accounts with one email)
// counts once. The reason says what was met, or what is still missing.
//
// A reload may make t stricter, never looser (t is fixed when the request
// is made): the count needed is the largest of t's and that of every
// policy in t.Policies requiring approval as the set stands now, and a
// break-glass approval counts only while each of those policies still
// names the subject under break_glass.
func Satisfied(set Set, t Terms, requester Subject, approvals []Subject) (ok bool, reason string) {
	if !t.Required {
		return true, "no approval needed"
	}
	need := t.Needed(set)
	var counted []Subject
	var breakGlass *Subject
	for i, a := range approvals {
		if ok, _ := CanReview(set, t, requester, a); !ok {
			continue
		}
		if !t.Approvers.Match(a) {
			if breakGlass == nil && breakGlassNow(set, t, a) {
				breakGlass = &approvals[i]
			}
			continue
		}
		dup := false
		for _, c := range counted {
			dup = dup || SamePerson(a, c)
		}
		if !dup {
			counted = append(counted, a)
		}
		if t.BreakGlass.Match(a) && breakGlass == nil && breakGlassNow(set, t, a) {
			breakGlass = &approvals[i]
		}
	}
	switch {
	case len(counted) >= need:
		who := make([]string, len(counted))
		for i, c := range counted {
			who[i] = c.String()
		}
		return true, fmt.Sprintf("approved by %s (%d of %d required)", strings.Join(who, ", "), len(counted), need)
	case breakGlass != nil:
		return true, fmt.Sprintf("break-glass approval by %s", *breakGlass)
	}
	return false, fmt.Sprintf("%d of %d required approvals; waiting for %d more from %s",
		len(counted), need, need-len(counted), t.Approvers)
}

// Needed is how many distinct approvers t needs under set: the largest
// of t.Count (at least 1) and the count of every policy in t.Policies that
// requires approval as set stands now (see Satisfied).
func (t Terms) Needed(set Set) int {
	need := max(t.Count, 1)
	for _, name := range t.Policies {
		if p := set.Find(name); p != nil && p.Approval.Required {
			need = max(need, p.Approval.Count)
		}
	}
	return need
}

// breakGlassNow reports whether a is a break-glass subject of t and of
// every policy in t.Policies that requires approval as set stands now.
func breakGlassNow(set Set, t Terms, a Subject) bool {
	if !t.BreakGlass.Match(a) {
		return false
	}
	for _, name := range t.Policies {
		p := set.Find(name)
		if p == nil || (p.Approval.Required && !p.Approval.BreakGlass.Match(a)) {
			return false
		}
	}
	return true
}

// SamePerson reports whether a and b are one person: the same sub under the
// same issuer, the same (verified) email under any issuer, or a workload
// and the person it acts for (or two workloads acting for one person).
func SamePerson(a, b Subject) bool {
	if a.ID != "" && a.ID == b.ID && a.Issuer == b.Issuer {
		return true
	}
	if a.Email != "" && sameEmail(a.Email, b.Email) {
		return true
	}
	return actsFor(a, b) || actsFor(b, a) || sameAct(a, b)
}

// actsFor reports whether the workload w acts for the person p: its act
// claim, or the person the issuer's act_people map names for it (ActFor),
// is p's sub, p's email, or the local part of p's email, compared after
// NFKC normalization and Unicode case folding (actName). This refuses
// more than it must — a job triggered by GitHub login "alice" is treated
// as alice@example.com's and as alice@partner.com's — because a wrong
// refusal costs another approver and a wrong admission a self-approval.
// A platform login that resembles none of the person's names (alice-gh)
// is theirs only through act_people.
func actsFor(w, p Subject) bool {
	for _, a := range []string{w.Act, w.ActFor} {
		for _, n := range []string{p.ID, p.Email, localPart(p.Email)} {
			if sameName(a, n) {
				return true
			}
		}
	}
	return false
}

// sameAct reports whether a and b are workloads acting for one person:
// one's act or mapped person is the other's, or its email's local part.
func sameAct(a, b Subject) bool {
	for _, x := range []string{a.Act, a.ActFor} {
		for _, y := range []string{b.Act, b.ActFor} {
			if sameName(x, y) || sameName(x, localPart(y)) || sameName(localPart(x), y) {
				return true
			}
		}
	}
	return false
}

// localPart is what comes before the last @ of an address ("" for none).
func localPart(email string) string {
	if at := strings.LastIndexByte(email, '@'); at > 0 {
		return email[:at]
	}
	return ""
}

// sameName is the act comparison: a and b are equal after NFKC
// normalization (fullwidth and other compatibility forms become their
// plain letters) and Unicode case folding, or by sameEmail's broad
// lowering (İ lowers to i, which full folding makes i + a combining dot).
func sameName(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	return sameEmail(a, b) || actName(a) == actName(b)
}

// actName folds a name for sameName: NFKC, full case folding, NFKC again
// (folding can denormalize). A Caser holds state, so each call has its own.
func actName(s string) string {
	return norm.NFKC.String(cases.Fold().String(norm.NFKC.String(strings.TrimSpace(s))))
}

// sameEmail is the broad comparison of the checks that refuse or merge
// (self-review, distinct approvers): any Unicode case folding or lowering
// of one address that gives the other makes them one person, so a
// look-alike account (K for k, İ for i) counts as its namesake there. Who
// may approve is matched the narrow way (Subjects.Match, LowerASCII).
func sameEmail(a, b string) bool {
	return a != "" && b != "" && (strings.EqualFold(a, b) || strings.ToLower(a) == strings.ToLower(b))
}
