package broker

import (
	"net/url"
	"strings"
)

// ItemPath is the path, under the web UI's public URL, of the page of one
// request or held call (held calls are requests of kind "prompt").
const ItemPath = "/ui/requests/"

// ItemURL is the address of the web page of request or held call id:
// <publicURL>/ui/requests/<id>. publicURL is ui.public_url (validated by
// the config: scheme and host, no path, query or fragment); a trailing
// slash is tolerated. It returns "" when publicURL is empty (the web UI is
// off), so callers print no link. The id is path-escaped.
func ItemURL(publicURL, id string) string {
	if publicURL == "" || id == "" {
		return ""
	}
	return strings.TrimSuffix(publicURL, "/") + ItemPath + url.PathEscape(id)
}

// CanReview reports whether reviewer may review r under the rules and
// policies in force now, and why not: never the requester, only approvers
// of the request's terms (and, for a held call, of every rule that held
// it). It does not look at r's state or at earlier reviews; Review does.
// The web UI uses it to show a decision form only to those who may decide.
func (s *Service) CanReview(r *Request, reviewer Identity) (bool, string) {
	return s.canReview(r, reviewer)
}
