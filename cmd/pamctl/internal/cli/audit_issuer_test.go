package cli

import (
	"testing"
	"time"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/cmd/pamctl/internal/iostreams"
)

// Black-box red team: `audit tail --actor alice` mixed corp's alice with a
// partner IdP's alice. --issuer narrows it to one issuer's, and the CLI
// applies the filter to what it prints as well, so a broker too old to
// know the parameter cannot widen it.
func TestAuditTailIssuerFlag(t *testing.T) {
	ios, _, _, _ := iostreams.Test()
	cmd := newCmdAuditTail(NewFactory(ios), &StepUpOptions{})
	if cmd.Flags().Lookup("issuer") == nil {
		t.Fatal("audit tail has no --issuer")
	}
	f := (&AuditTailOptions{Actor: "alice", Issuer: "corp"}).filter(time.Now())
	if f.Actor != "alice" || f.Issuer != "corp" {
		t.Fatalf("filter %+v", f)
	}
	corp := audit.Event{Type: audit.TypeLogin, Actor: &audit.Actor{Subject: "alice", Issuer: "corp"}}
	partner := audit.Event{Type: audit.TypeLogin, Actor: &audit.Actor{Subject: "alice", Issuer: "partner"}}
	var printed []audit.Event
	print := matching(f, func(e audit.Event) error { printed = append(printed, e); return nil })
	for _, e := range []audit.Event{corp, partner} {
		if err := print(e); err != nil {
			t.Fatal(err)
		}
	}
	if len(printed) != 1 || printed[0].Actor.Issuer != "corp" {
		t.Fatalf("printed %+v", printed)
	}
}
