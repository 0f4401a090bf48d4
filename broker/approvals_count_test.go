package broker_test

import (
	"testing"

	"github.com/pamctl/pamctl/broker"
)

// The approvals a request shows are the people policy.Satisfied counts:
// two accounts with one email, under two issuers, are one approver, so no
// page, message or audit event says "2/2" while the request still waits.
func TestApprovalsCountsPeopleNotAccounts(t *testing.T) {
	bob := broker.Identity{Subject: "bob", Issuer: "corp", Email: "bob@example.com"}
	bobx := broker.Identity{Subject: "bobx", Issuer: "other", Email: "BOB@Example.com"}
	dave := broker.Identity{Subject: "dave", Issuer: "corp", Email: "dave@example.com"}
	for _, c := range []struct {
		name    string
		reviews []broker.Review
		want    int
	}{
		{"one account twice", []broker.Review{{Reviewer: bob, Approve: true}, {Reviewer: bob, Approve: true}}, 1},
		{"two accounts, one email", []broker.Review{{Reviewer: bob, Approve: true}, {Reviewer: bobx, Approve: true}}, 1},
		{"two people", []broker.Review{{Reviewer: bob, Approve: true}, {Reviewer: dave, Approve: true}}, 2},
		{"a denial is no approval", []broker.Review{{Reviewer: bob, Approve: false}, {Reviewer: dave, Approve: true}}, 1},
	} {
		r := &broker.Request{Reviews: c.reviews}
		if got := r.Approvals(); got != c.want {
			t.Errorf("%s: %d approvals, want %d", c.name, got, c.want)
		}
	}
}
