package devissuer

import (
	"html/template"
	"net/http"
	"net/url"
	"sort"
)

// formSkip are the authorization parameters the login form does not carry
// over to the request it submits: who logs in and the prompt, which the
// form itself answers.
var formSkip = map[string]bool{"login_hint": true, "groups": true, "prompt": true, "max_age": true}

type formField struct{ Name, Value string }

var loginForm = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in · pamctl dev issuer</title>
<style>
body{font-family:system-ui,sans-serif;background:#f4f5f8;color:#1c2330;display:flex;min-height:100vh;align-items:center;justify-content:center;margin:0}
main{background:#fff;border:1px solid #dde1e8;border-radius:12px;padding:2rem 2.25rem;width:min(24rem,92vw)}
h1{font-size:1.3rem;margin:0 0 .25rem}p{color:#5b6575;margin:.25rem 0 1.25rem;font-size:.9rem}
label{display:block;font-weight:600;font-size:.9rem;margin:.9rem 0 .3rem}
input[type=text]{width:100%;box-sizing:border-box;font:inherit;padding:.5rem .6rem;border:1px solid #c5cbd6;border-radius:6px}
button{margin-top:1.25rem;width:100%;font:inherit;font-weight:600;background:#3b4cca;color:#fff;border:0;border-radius:7px;padding:.6rem}
:focus-visible{outline:3px solid #f5b301;outline-offset:2px}
</style></head>
<body><main>
<h1>Log in</h1>
<p>pamctl development issuer: no password, for development and tests only.</p>
<form method="get" action="{{.Action}}">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}<label for="login_hint">User name</label>
<input type="text" id="login_hint" name="login_hint" value="{{.User}}" required maxlength="128" autocomplete="username" autofocus>
<label for="groups">Groups <span style="font-weight:400;color:#5b6575">(comma separated)</span></label>
<input type="text" id="groups" name="groups" value="{{.Groups}}" maxlength="1024">
<button type="submit" id="login">Log in</button>
</form>
</main></body></html>
`))

// renderLoginForm asks a browser who to log in as; the form submits the
// same authorization request with login_hint and groups set.
func (i *Issuer) renderLoginForm(w http.ResponseWriter, q url.Values) {
	var hidden []formField
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !formSkip[k] {
			hidden = append(hidden, formField{k, q.Get(k)})
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	w.Header().Set("Referrer-Policy", "no-referrer")
	_ = loginForm.Execute(w, map[string]any{"Action": i.issuer + PathAuthorize, "Hidden": hidden, "User": q.Get("login_hint"), "Groups": q.Get("groups")})
}
