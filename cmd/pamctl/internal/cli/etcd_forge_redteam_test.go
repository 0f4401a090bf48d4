package cli

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/api"
	"github.com/pamctl/pamctl/broker/link"
	"github.com/pamctl/pamctl/store"
	"github.com/pamctl/pamctl/store/etcdtest"
)

// rtDo is one JSON call to the broker's public API.
func rtDo(t *testing.T, method, url, session, proxyID string, in, out any) int {
	t.Helper()
	code, _ := rtCall(t, method, url, session, proxyID, in, out)
	return code
}

// rtCall is rtDo that also returns the answer's body.
func rtCall(t *testing.T, method, url, session, proxyID string, in, out any) (int, string) {
	t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, body)
	if session != "" {
		req.Header.Set("Authorization", "Bearer "+session)
	}
	if proxyID != "" {
		req.Header.Set(link.HeaderProxyID, proxyID)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, raw)
		}
	}
	if resp.StatusCode >= 300 {
		t.Logf("%s %s: %d %s", method, url, resp.StatusCode, raw)
	}
	return resp.StatusCode, string(raw)
}

// etcdIntruder is a broker on etcd (cluster c) and a workload the IdP
// vouches for, which no policy grants anything, logged in: what an etcd
// writer without the master key starts from in the red-team tests below.
type etcdIntruder struct {
	c         *etcdtest.Cluster
	b         *roleBroker
	brokerURL string
	session   string
	who       api.WhoAmI
}

func startEtcdIntruder(t *testing.T) *etcdIntruder {
	t.Helper()
	c := etcdtest.Start(t, 1)
	dir := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config-admin"))
	t.Setenv("PAMCTL_MASTER_KEY", "")
	b := startRoleBroker(t, dir, "127.0.0.1:0", "http://127.0.0.1:9", onEtcd(c))
	in := &etcdIntruder{c: c, b: b, brokerURL: b.ts.app.BrokerURL()}
	raw, _ := os.ReadFile(mintIDToken(t, b, dir, "intruder"))
	var sess struct {
		Token string `json:"token"`
	}
	if code := rtDo(t, "POST", in.brokerURL+"/v1/login", "", "", map[string]string{"id_token": strings.TrimSpace(string(raw))}, &sess); code != 200 {
		t.Fatalf("login: %d", code)
	}
	in.session = sess.Token
	if code := rtDo(t, "GET", in.brokerURL+"/v1/whoami", in.session, "", nil, &in.who); code != 200 || in.who.Subject != "intruder" {
		t.Fatalf("whoami: %d %+v", code, in.who)
	}
	return in
}

// Red team (writer to etcd). Replicas trust every request record they read
// from etcd: requests/<id> carries no authenticator under the master key
// (unlike signing keys, vault entries and sink cursors). Someone who can
// write the deployment's etcd prefix (a Kubernetes etcd admin, a leaked
// client certificate, an etcd backup restored by hand) but holds neither
// the master key nor any approver's identity forges an approved
// proxy:serve grant for a workload identity no policy grants it, enrolls
// as a proxy, and the broker seals every vaulted provider key to the
// attacker's X25519 key: the keys the master key was meant to protect
// from the store leave in clear to the forger. The enrollment path
// (proxyGrants.ProxyGrant) does not even re-check the policies
// (stillGranted) as Token does, so no policy needs to allow proxy:serve.
func TestRedteamEtcdWriterForgesAProxyGrantAndTakesTheProviderKeys(t *testing.T) {
	in := startEtcdIntruder(t)
	admin := api.NewSocketClient(SocketPath(in.b.ts.app.cfg.DataDir))
	ctx := context.Background()
	if _, err := admin.VaultSet(ctx, "openai", []byte(testProviderKey)); err != nil {
		t.Fatal(err)
	}

	// Asking the normal way is refused: no policy grants proxy:serve.
	if code := rtDo(t, "POST", in.brokerURL+"/v1/requests", in.session, "", map[string]any{"scopes": []string{"proxy:serve"}}, nil); code < 400 {
		t.Fatalf("a proxy:serve request by the intruder was accepted: %d", code)
	}

	// The forgery: one put under the prefix.
	now := time.Now().UTC()
	exp := now.Add(time.Hour)
	forged := &broker.Request{ID: "forged-proxy-grant", Kind: broker.KindAccess, Requester: in.who.Identity, Scopes: []string{"proxy:serve"},
		TTL: time.Hour, State: broker.StateApproved, CreatedAt: now, PendingUntil: now, ApprovedAt: &now, ExpiresAt: &exp}
	rec, err := store.EncodeRecord(forged)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.c.Client().Put(ctx, "/pamctl/requests/"+forged.ID, string(rec)); err != nil {
		t.Fatal(err)
	}

	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	var e link.Enrollment
	if code := rtDo(t, "POST", in.brokerURL+"/v1/proxies/enroll", in.session, "", link.EnrollRequest{Grant: forged.ID, PublicKey: priv.PublicKey().Bytes()}, &e); code != 200 {
		return // refused: fixed
	}
	var sk link.SealedKeys
	if code := rtDo(t, "GET", in.brokerURL+"/v1/proxies/keys", in.session, e.ID, nil, &sk); code != 200 {
		t.Fatalf("enrolled on a forged grant as %s, keys: %d", e.ID, code)
	}
	plain, err := link.Open(priv, sk.Ephemeral, sk.Nonce, sk.Sealed)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(plain), testProviderKey) {
		t.Errorf("an etcd writer without the master key enrolled %s on a forged proxy:serve grant and read the provider keys: %s", e.ID, plain)
	}
}

// Red team (writer to etcd), second path: Authenticate checks that a
// session token's sub and idp match its stored record, then takes the
// caller's groups, email, kind and act from the record (sessions/<id>),
// which carries no authenticator. An etcd writer who can log in as anyone
// the IdP vouches for adds the groups it wants to its own session record
// and is, from then on, in those groups on every replica: it requests
// scopes the policies give those groups (and would count as an approver
// of groups it added), and the access token minted carries the forged
// groups to the proxies.
func TestRedteamEtcdWriterRewritesItsSessionGroups(t *testing.T) {
	in := startEtcdIntruder(t)
	ctx := context.Background()

	if code := rtDo(t, "POST", in.brokerURL+"/v1/requests", in.session, "", map[string]any{"scopes": []string{"model:gpt-4o"}}, nil); code < 400 {
		t.Fatalf("the intruder was granted model:gpt-4o before any forgery: %d", code)
	}

	key := "/pamctl/sessions/" + in.who.Session
	got, err := in.c.Client().Get(ctx, key)
	if err != nil || len(got.Kvs) != 1 {
		t.Fatalf("session record %s: %v", key, err)
	}
	var rec broker.SessionRecord
	if err := store.DecodeRecord(got.Kvs[0].Value, &rec); err != nil {
		t.Fatal(err)
	}
	rec.Identity.Groups = []string{"ml", "security"}
	enc, _ := store.EncodeRecord(&rec)
	if _, err := in.c.Client().Put(ctx, key, string(enc)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the change feed reaches the session cache

	var after api.WhoAmI
	rtDo(t, "GET", in.brokerURL+"/v1/whoami", in.session, "", nil, &after)
	var req struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	if code := rtDo(t, "POST", in.brokerURL+"/v1/requests", in.session, "", map[string]any{"scopes": []string{"model:gpt-4o"}}, &req); code >= 300 {
		return // refused: fixed
	}
	var tok struct {
		Token string `json:"token"`
	}
	rtDo(t, "POST", in.brokerURL+"/v1/requests/"+req.ID+"/token", in.session, "", nil, &tok)
	t.Errorf("after one etcd put on its session record the intruder is in groups %v and was granted model:gpt-4o (%s %s, token minted: %v)",
		after.Groups, req.ID, req.State, tok.Token != "")
}
