package broker_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/oidc"
	"github.com/pamctl/pamctl/broker/oidc/oidctest"
	"github.com/pamctl/pamctl/broker/token"
	"github.com/pamctl/pamctl/broker/vault"
	"github.com/pamctl/pamctl/store"
)

type captureSink struct {
	mu     sync.Mutex
	events []audit.Event
}

func (c *captureSink) Append(_ context.Context, e *audit.Event) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, *e)
	return nil
}

// TestLoginWithUserinfoGroups: the broker reads the groups of a
// groups_source: userinfo issuer with the access token the CLI hands over,
// and the display name survives into the session and the audit trail.
func TestLoginWithUserinfoGroups(t *testing.T) {
	ctx := context.Background()
	idp := oidctest.Start(t, oidctest.Options{GroupsOnlyInUserinfo: true})
	idv, err := oidc.NewVerifier([]oidc.IssuerConfig{{Name: "okta", URL: idp.URL(), ClientID: "pamctl", GroupsSource: oidc.GroupsFromUserinfo}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if rk, err := store.NewRecordKey(make([]byte, 32)); err == nil {
		db.SetRecordKey(rk)
	}
	t.Cleanup(func() { db.Close() })
	master, _ := vault.GenerateMasterKey()
	v, err := vault.Open(ctx, db, master, nil)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := token.LoadKeyring(ctx, db, v.Sealer(), 8*time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	sink := &captureSink{}
	svc, err := broker.New(ctx, broker.Config{Store: db, IDTokens: idv, Keys: keys, Issuer: "http://broker.test", Audit: sink, Policies: testPolicies})
	if err != nil {
		t.Fatal(err)
	}

	lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	toks, err := oidc.CodeFlowTokens(lctx, oidc.ClientConfig{
		IssuerURL: idp.URL(), ClientID: "pamctl",
		ExtraAuthParams: map[string]string{"login_hint": "erin", "groups": "ml"},
	}, oidc.FollowRedirects(nil))
	if err != nil {
		t.Fatal(err)
	}

	// Without the access token the login is refused, not admitted groupless.
	_, err = svc.Login(ctx, toks.IDToken, toks.Nonce, audit.Client{})
	var be *broker.Error
	if !errors.As(err, &be) || be.Code != broker.CodeUnauthenticated {
		t.Fatalf("login without access token: %v", err)
	}

	sess, err := svc.LoginWithAccessToken(ctx, toks.IDToken, toks.Nonce, toks.AccessToken, audit.Client{})
	if err != nil {
		t.Fatal(err)
	}
	who, _, err := svc.Authenticate(ctx, sess.Token)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(who.Groups, []string{"ml"}) || who.Display != "erin" || who.Subject != "erin" {
		t.Fatalf("session identity = %+v", who)
	}
	// The groups count: erin (ml) may request a self-serve model.
	if _, err := svc.CreateRequest(ctx, who, broker.Ask{Scopes: []string{"model:gpt-4o-nano"}, TTL: 10 * time.Minute}); err != nil {
		t.Fatalf("request with userinfo groups: %v", err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	var login *audit.Event
	for i := range sink.events {
		if sink.events[i].Type == audit.TypeLogin {
			login = &sink.events[i]
		}
	}
	if login == nil || login.Actor.Display != "erin" || login.Actor.Subject != "erin" {
		t.Fatalf("login event actor = %+v", login)
	}
}
