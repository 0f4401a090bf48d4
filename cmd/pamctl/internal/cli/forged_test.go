package cli

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/store"
	"github.com/pamctl/pamctl/store/etcdtest"
)

// A record forged in etcd while a replica runs is counted in
// pamctl_store_forged_records_total by kind (never by id) each time a
// read meets it, and logged as an error once, not once per read.
func TestForgedRecordIsCountedAndLogged(t *testing.T) {
	c := etcdtest.Start(t, 1)
	logs := &lockedBuffer{}
	s := startServerOpts(t, func(cfg *Config) {
		onEtcd(c)(cfg)
		cfg.Metrics.Addr = "127.0.0.1:0"
	}, AppOptions{Dev: true, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	const series = `pamctl_store_forged_records_total{kind="requests"}`
	if got, ok := scrape(t, s.app.MetricsURL())[series]; !ok || got != 0 {
		t.Fatalf("%s before any forgery = %v (exported %v), want 0", series, got, ok)
	}
	s.as(t, "alice", "", "login", "--user", "alice", "--groups", "ml").must(t, "alice login")
	now := time.Now().UTC()
	exp := now.Add(time.Hour)
	forged := &broker.Request{ID: "req_forgedmetric", Kind: broker.KindAccess, Requester: broker.Identity{Subject: "alice", Issuer: DevIssuerName},
		Scopes: []string{"model:gpt-4o"}, TTL: time.Hour, State: broker.StateApproved, CreatedAt: now, PendingUntil: now, ApprovedAt: &now, ExpiresAt: &exp}
	rec, err := store.EncodeRecord(forged)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client().Put(context.Background(), s.app.cfg.Store.Etcd.Prefix+"requests/"+forged.ID, string(rec)); err != nil {
		t.Fatal(err)
	}
	before := scrape(t, s.app.MetricsURL())[series]
	for range 3 {
		if r := s.as(t, "alice", "", "token", forged.ID); r.code == ExitOK {
			t.Fatalf("a token for a forged grant: %+v", r)
		}
	}
	m := scrape(t, s.app.MetricsURL())
	if m[series] < before+3 {
		t.Fatalf("%s = %v after three reads of a forged request (%v before)", series, m[series], before)
	}
	for k := range m {
		if strings.HasPrefix(k, "pamctl_store_forged_records_total") && strings.Contains(k, forged.ID) {
			t.Fatalf("the metric names the record: %s", k)
		}
	}
	if n := strings.Count(logs.String(), "store record failed its authenticator"); n != 1 {
		t.Fatalf("%d log lines for forged records, want 1:\n%s", n, logs.String())
	}
}

// The log is one line per kind per forgedLogEvery, saying how many it
// left out; the count is every one.
func TestForgedRecordsLogIsRateLimited(t *testing.T) {
	var logs bytes.Buffer
	f := newForgedRecords(slog.New(slog.NewJSONHandler(&logs, nil)))
	now := time.Unix(1_000_000, 0)
	f.now = func() time.Time { return now }
	counted := map[string]int{}
	f.countWith(func(kind string) { counted[kind]++ })
	err := fmt.Errorf("%w: record sessions/ses_1 has no authenticator", store.ErrRecordForged)
	for range 5 {
		f.observe(store.KindSessions, err)
	}
	f.observe(store.KindRequests, err)
	if n := strings.Count(logs.String(), "\n"); n != 2 || counted[store.KindSessions] != 5 || counted[store.KindRequests] != 1 {
		t.Fatalf("%d lines, counted %v:\n%s", n, counted, logs.String())
	}
	now = now.Add(forgedLogEvery)
	f.observe(store.KindSessions, err)
	if !strings.Contains(logs.String(), `"not_logged_since_last":4`) || strings.Count(logs.String(), "\n") != 3 {
		t.Fatalf("after %s:\n%s", forgedLogEvery, logs.String())
	}
}
