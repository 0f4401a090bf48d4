package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/pamctl/pamctl/broker/token"
)

// model is one entry of GET /v1/models.
type model struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

type modelList struct {
	Object string  `json:"object"`
	Data   []model `json:"data"`
}

// listModels answers GET /v1/models with the models the token may use: it
// asks every upstream for its list, keeps the models the scope covers
// (naming a non-default upstream's models "upstream/model", the name a
// client must send to reach them) and adds every exact model the scope
// names that no upstream listed.
func (p *Proxy) listModels(w http.ResponseWriter, r *http.Request, c *call) {
	out := modelList{Object: "list", Data: []model{}}
	seen := map[string]bool{}
	for i, up := range p.ups {
		list, e := p.fetchModels(r, up)
		if e != nil {
			c.up = up
			if errors.Is(e, errNotModelList) {
				c.errDetail = e.cause.Error()
			}
			p.fail(w, c, e)
			return
		}
		for _, m := range list {
			if !token.CoversModel(c.scopes, up.name, m.ID) {
				continue
			}
			// The list is an answer like any other: a model whose name
			// the response masking would change is not listed (a wildcard
			// scope may cover it), and its owner is masked.
			if masked, _ := c.ResponseMask.Mask(m.ID); masked != m.ID {
				continue
			}
			m.OwnedBy, _ = c.ResponseMask.Mask(m.OwnedBy)
			if i > 0 {
				m.ID = up.name + "/" + m.ID
			}
			if !seen[m.ID] {
				seen[m.ID] = true
				out.Data = append(out.Data, m)
			}
		}
	}
	for _, s := range c.scopes {
		kind, name, ok := token.SplitScope(s)
		if !ok || kind != token.KindModel || strings.Contains(name, "*") || seen[name] {
			continue
		}
		seen[name] = true
		out.Data = append(out.Data, model{ID: name, Object: "model", OwnedBy: "pamctl"})
	}
	sort.SliceStable(out.Data, func(i, j int) bool { return out.Data[i].ID < out.Data[j].ID })
	body, err := json.Marshal(out)
	if err != nil {
		p.fail(w, c, errUpstream(http.StatusInternalServerError, CodeInternal, "The model list could not be encoded.", err))
		return
	}
	c.status = http.StatusOK
	c.decision = "allow"
	c.summary = fmt.Sprintf("%d models", len(out.Data))
	if err := p.audit(r.Context(), c); err != nil {
		p.fail(w, c, p.auditError(err))
		return
	}
	body = p.keySet(r.Context()).Bytes(body) // an upstream may name a model after the key it got
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// fetchModels asks one upstream for its model list.
func (p *Proxy) fetchModels(r *http.Request, up *upstream) ([]model, *apiError) {
	key, err := p.keys.ProviderKey(r.Context(), up.keyName)
	if e := providerKeyError(up, key, err); e != nil {
		return nil, e
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, up.target("/models", "").String(), nil)
	if err != nil {
		return nil, errUpstream(http.StatusBadGateway, CodeUpstreamUnreachable, fmt.Sprintf("Upstream %q has an unusable URL.", up.name), err)
	}
	extra, e := p.extraKey(r, up)
	if e != nil {
		return nil, e
	}
	up.setKeys(req.Header, key, extra)
	p.noteKey(r.Context(), key)
	if extra != "" {
		p.noteKey(r.Context(), extra)
	}
	if up.org != "" {
		req.Header.Set("OpenAI-Organization", up.org)
	}
	if up.project != "" {
		req.Header.Set("OpenAI-Project", up.project)
	}
	req.Header.Set("Accept", "application/json")
	res, err := up.client.Do(req)
	if err != nil {
		if isTimeout(err) {
			return nil, errUpstream(http.StatusGatewayTimeout, CodeUpstreamTimeout, fmt.Sprintf("Upstream %q did not list its models in time. Retry later.", up.name), err)
		}
		return nil, errUpstream(http.StatusBadGateway, CodeUpstreamUnreachable, fmt.Sprintf("Upstream %q could not be reached. Retry later.", up.name), err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBody))
	if err != nil {
		return nil, errUpstream(http.StatusBadGateway, CodeUpstreamError, fmt.Sprintf("Upstream %q broke off its model list.", up.name), err)
	}
	if res.StatusCode == http.StatusUnauthorized {
		return nil, upstreamAuthError(up)
	}
	if res.StatusCode != http.StatusOK {
		return nil, errUpstream(http.StatusBadGateway, CodeUpstreamError, fmt.Sprintf("Upstream %q answered %d to the model list.", up.name, res.StatusCode), nil)
	}
	if _, foreign := foreignCharset(res.Header.Get("Content-Type")); foreign || !utf8Text(body) {
		return nil, errUpstream(http.StatusBadGateway, CodeUpstreamEncoding, fmt.Sprintf(
			"Upstream %q sent its model list in text that is not UTF-8; the proxy inspects only UTF-8. Retry; if it persists an administrator should check the upstream.", up.name), nil)
	}
	if err := modelListShape(body); err != nil {
		return nil, errUpstream(http.StatusBadGateway, CodeUpstreamError, fmt.Sprintf("Upstream %q sent a model list that is not OpenAI's shape.", up.name), err)
	}
	var list modelList
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, errUpstream(http.StatusBadGateway, CodeUpstreamError, fmt.Sprintf("Upstream %q sent a model list that is not OpenAI's shape.", up.name), err)
	}
	return list.Data, nil
}

// errNotModelList wraps modelListShape's refusals.
var errNotModelList = errors.New("not a model list")

// modelListShape refuses a model list that is not a list: encoding/json
// decodes null, {}, a model, an error or any other object into an empty
// modelList, which listModels answered as a list with no upstream model
// in it. A list is a JSON object whose "object", if any, is "list", and
// whose "data" is an array; a null or absent "data" is an empty list
// when "object" says "list" (a Go server's nil slice). Names are matched
// in any letter case, as encoding/json matches them.
func modelListShape(body []byte) error {
	list, data := false, "" // data: the last "data", raw, as encoding/json reads it
	var bad error
	ok := objectMembers(body, func(name, v string) {
		switch {
		case strings.EqualFold(name, "object") && v != "null":
			if v[0] != '"' || unquoteJSON(v) != "list" {
				bad = fmt.Errorf("%w: it names itself %s", errNotModelList, quoteUpstreamJSON(v))
			}
			list = true
		case strings.EqualFold(name, "data"):
			data = v
		}
	})
	switch {
	case !ok:
		return fmt.Errorf("%w: it is %s, not a JSON object", errNotModelList, notObject(body))
	case bad != nil:
		return bad
	case data != "" && data[0] == '[':
		return nil
	case list && (data == "" || data == "null"):
		return nil
	}
	return fmt.Errorf(`%w: it has no "data" array`, errNotModelList)
}
