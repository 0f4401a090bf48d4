package api

import (
	"context"
	"net/http"
	"net/url"

	"github.com/pamctl/pamctl/broker/link"
)

// Proxies lists enrolled local proxies (admin socket).
func (c *Client) Proxies(ctx context.Context) ([]*link.Enrollment, error) {
	var out []*link.Enrollment
	return out, c.do(ctx, http.MethodGet, "/admin/proxies", nil, &out)
}

// RevokeProxy cuts one local proxy off at once (admin socket).
func (c *Client) RevokeProxy(ctx context.Context, id string) (*link.Enrollment, error) {
	var out link.Enrollment
	return &out, c.do(ctx, http.MethodPost, "/admin/proxies/"+url.PathEscape(id)+"/revoke", nil, &out)
}
