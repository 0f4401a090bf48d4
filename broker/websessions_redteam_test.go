package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
)

// A web session's auth_time is never later than its login, as for CLI
// sessions: an IdP clock running ahead (or a hostile one) cannot make a
// session pass step-up for longer than approvals.reauth_after after the
// login.
func TestWebSessionAuthTimeNeverAfterLogin(t *testing.T) {
	for _, ahead := range []time.Duration{time.Second, 29 * time.Second, time.Hour, 1000 * time.Hour} {
		e := newEnv(t)
		ctx := context.Background()
		alice := e.login("alice", "ml")
		login := e.clock.Now()
		secret := strings.Repeat("s", 52)
		if _, err := e.svc.OpenWebSession(ctx, alice, login.Add(ahead), audit.Client{}, secret, time.Hour); err != nil {
			t.Fatal(err)
		}
		who, rec, err := e.svc.WebSession(ctx, secret)
		if err != nil {
			t.Fatal(err)
		}
		if who.AuthTime.After(login) || rec.AuthTime.After(login) {
			t.Errorf("auth_time %s ahead: the session says %s, later than its login %s", ahead, who.AuthTime, login)
		}
		// Just past reauth_after from the login, deciding needs a new login.
		e.clock.Add(e.svc.ReauthAfter() + time.Second)
		who, _, err = e.svc.WebSession(ctx, secret)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.svc.StepUp(who, broker.ActionApprove); err == nil {
			t.Errorf("auth_time %s ahead: a login older than reauth_after still passes step-up", ahead)
		}
	}
}
