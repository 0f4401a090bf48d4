package ui

import (
	"strings"
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker"
	"github.com/pamctl/pamctl/broker/policy"
)

// Black-box red team: the web approval page never showed a CI job's act
// (who triggered the run). The queue and the request's page show it after
// the job's name, with the person act_people maps it to.
func TestPagesShowTheAct(t *testing.T) {
	e := newEnv(t)
	e.svc.mu.Lock()
	e.svc.reqs["req_job"] = &broker.Request{ID: "req_job", Kind: broker.KindAccess, State: broker.StatePending,
		Requester: broker.Identity{Subject: "repo:acme/app:ref:refs/heads/main", Issuer: "gha", Kind: "service", Act: "alice-gh", ActFor: "alice@example.com"},
		Scopes:    []string{"model:gpt-4o"}, TTL: time.Hour, CreatedAt: time.Now(), PendingUntil: time.Now().Add(time.Hour),
		Approval: policy.Terms{Required: true, Approvers: policy.Subjects{Groups: []string{"security"}}, Count: 1}}
	e.svc.mu.Unlock()
	c := browser(t)
	e.login(t, c, "/ui/", "bob", "security")
	want := "repo:acme/app:ref:refs/heads/main for alice-gh = alice@example.com"
	if res, body := get(t, c, e.base+"/ui/requests/req_job"); res.StatusCode != 200 || !strings.Contains(body, want) {
		t.Errorf("the request's page does not show the act: %d …%s", res.StatusCode, body[max(0, strings.Index(body, "<dt>Requester")):][:200])
	}
	if _, body := get(t, c, e.base+"/ui/"); !strings.Contains(body, want) {
		t.Error("the queue does not show the act")
	}
}
