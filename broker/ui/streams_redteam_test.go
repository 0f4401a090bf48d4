package ui

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/audit"
)

// The live-update streams are capped per session (8) and in all (2000),
// but not per person: one person who logs in 250 times (each login is a
// new web session, and nothing bounds how many a person holds) fills the
// broker-wide cap, and every other approver's queue stops updating (429)
// while held calls wait out proxy.hold_timeout.
func TestOnePersonCannotTakeEveryLiveStream(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hog := broker.Identity{Subject: "mallory", Issuer: "dev", AuthTime: time.Now()}
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: 4000}}
	open := func(secret string) int {
		req, _ := http.NewRequestWithContext(ctx, "GET", e.base+"/ui/events", nil)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		req.AddCookie(&http.Cookie{Name: "pamctl-ui", Value: secret})
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusOK {
			res.Body.Close()
		}
		return res.StatusCode
	}
	opened := 0
	for i := 0; i < maxStreams/maxStreamsPerSession; i++ {
		secret := randomToken()
		if _, err := e.svc.OpenWebSession(ctx, hog, time.Now(), audit.Client{}, secret, time.Hour); err != nil {
			t.Fatal(err)
		}
		for j := 0; j < maxStreamsPerSession; j++ {
			if open(secret) == http.StatusOK {
				opened++
			}
		}
	}
	// Another approver, logged in once, opens one tab.
	bob := randomToken()
	if _, err := e.svc.OpenWebSession(ctx, broker.Identity{Subject: "bob", Issuer: "dev", Groups: []string{"security"}, AuthTime: time.Now()}, time.Now(), audit.Client{}, bob, time.Hour); err != nil {
		t.Fatal(err)
	}
	if got := open(bob); got != http.StatusOK {
		t.Fatalf("one person holds %d live streams from %d sessions; another approver's queue gets %d", opened, maxStreams/maxStreamsPerSession, got)
	}
}
