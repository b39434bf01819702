package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	papp "github.com/cloudoreg/cloudoreg/processor/app"
	"github.com/cloudoreg/cloudoreg/shared/standin/faults"
	"github.com/cloudoreg/cloudoreg/shared/standin/sts"
	"github.com/cloudoreg/cloudoreg/shared/status"
)

// TestTransientFaultsRecover: STS throttling, Sources 5xx and RHSM 5xx, one
// after the other, delay the outcome but never make it unavailable.
func TestTransientFaultsRecover(t *testing.T) {
	h := start(t, options{processors: 2})
	h.stack.STS.Faults().Set(faults.Fault{Status: 400, Code: "Throttling", Count: 3})
	h.stack.RHSM.Faults().Set(faults.Fault{Status: 503, Count: 3})
	c := h.createSource(sourceSpec{org: orgA, name: "flaky", arn: roleTrusted, externalID: demoExternal})
	// After the create (which goes through the same stand-in): every later
	// Sources call comes from Cloudoreg, and each retry re-reads Sources.
	h.stack.Sources.Faults().Set(faults.Fault{Status: 503, Count: 3})
	app := h.awaitStatus(c.AppID)
	if app.AvailabilityStatus != status.Available {
		t.Fatalf("after transient faults: %q %q", app.AvailabilityStatus, app.AvailabilityStatusError)
	}
	if got := h.statuses(c.AppID); !slices.Equal(got, []string{"available "}) {
		t.Errorf("status messages %v, want one available and no early unavailable", got)
	}
	if regs := h.registrations(orgA); !slices.Equal(regs, []string{"123456789012/" + c.SourceID}) {
		t.Errorf("RHSM holds %v", regs)
	}
	for _, target := range []string{"sts", "rhsm"} {
		if n := metric(t, h.processors[0].OpsAddr(), fmt.Sprintf(`cloudoreg_processor_retries_total{target=%q}`, target)) +
			metric(t, h.processors[1].OpsAddr(), fmt.Sprintf(`cloudoreg_processor_retries_total{target=%q}`, target)); n < 1 {
			t.Errorf("no retry counted for %s", target)
		}
	}
}

// TestBudgetSpentIsCG3000AndOneDeadLetter: STS down for longer than the
// retry budget: the source is retried in place, parked, retried again, and
// only then reported CG3000, with exactly one dead letter.
func TestBudgetSpentIsCG3000AndOneDeadLetter(t *testing.T) {
	h := start(t, options{processor: func(c *papp.Config) {
		c.RetryInPlace, c.RetryBudget = 300*time.Millisecond, 2*time.Second
	}})
	h.stack.STS.Faults().Set(faults.Fault{Status: 503})
	c := h.createSource(sourceSpec{org: orgA, name: "sts-down", arn: roleTrusted, externalID: demoExternal})
	app := h.awaitStatus(c.AppID)
	if app.AvailabilityStatusError != status.CG3000.Text() {
		t.Fatalf("budget spent: %q %q, want CG3000", app.AvailabilityStatus, app.AvailabilityStatusError)
	}
	if got := h.statuses(c.AppID); len(got) != 1 {
		t.Errorf("status messages %v, want only the final CG3000", got)
	}
	dl := h.deadLetters()
	if len(dl) != 1 || dl[0].Get("Cloudoreg-Source-Id") != c.SourceID || dl[0].Get("Cloudoreg-Dlq-Reason") != "budget_spent" {
		t.Fatalf("dead letters %v, want one budget_spent for source %s", dl, c.SourceID)
	}
	if strings.Contains(fmt.Sprint(dl), demoExternal) {
		t.Error("a dead letter carries the external id")
	}
	if n := metric(t, h.processors[0].OpsAddr(), "cloudoreg_processor_parked_total"); n < 1 {
		t.Errorf("the source was never parked (parked_total %v)", n)
	}
	// The source works again once STS does: a check reconciles it.
	h.stack.STS.Faults().Clear()
	h.rest(http.MethodPost, "/api/sources/v3.1/sources/"+c.SourceID+"/check_availability", orgA, nil, http.StatusAccepted, nil)
	h.awaitApp(c.AppID, "became available after STS recovered", func(a sourcesApp) bool { return a.AvailabilityStatus == status.Available })
}

// TestWrongPSKIsNotTheCustomers: Sources refuses the processor's PSK on the
// internal authentication read. The reconcile is retried for the budget,
// counted for the alert, then dead-lettered as sources_unauthorized: no
// CG3000, no status at all, and the registration RHSM holds is left alone.
func TestWrongPSKIsNotTheCustomers(t *testing.T) {
	h := start(t, options{processor: func(c *papp.Config) {
		c.Sources.PSK = "not-the-psk-sources-expects"
		c.RetryInPlace, c.RetryBudget = 300*time.Millisecond, 2*time.Second
	}})
	c := h.createSource(sourceSpec{org: orgA, name: "wrong-psk", arn: roleTrusted, externalID: demoExternal})
	// Registered before (by a processor that still had the right PSK).
	body, _ := json.Marshal([]map[string]any{{"id": "123456789012", "nickname": "", "verified": true, "sourceId": c.SourceID}})
	req, _ := http.NewRequest(http.MethodPost, h.stack.RHSMURL+"/cloud_access_providers/AWS/accounts", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-RhsmApi-AccountID", orgA)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("registering at RHSM: %v %v", resp, err)
	}
	_ = resp.Body.Close()
	h.awaitOutcome(c.SourceID, func(r map[string]any) bool { return r["state"] == "dead_lettered" })
	dl := h.deadLetters()
	if len(dl) != 1 || dl[0].Get("Cloudoreg-Source-Id") != c.SourceID || dl[0].Get("Cloudoreg-Dlq-Reason") != "sources_unauthorized" {
		t.Fatalf("dead letters %v, want one sources_unauthorized for source %s", dl, c.SourceID)
	}
	if got := h.statuses(c.AppID); len(got) != 0 {
		t.Errorf("status messages %v, want none: the PSK is not the customer's problem", got)
	}
	if regs := h.registrations(orgA); !slices.Equal(regs, []string{"123456789012/" + c.SourceID}) {
		t.Errorf("RHSM holds %v, want the registration left alone", regs)
	}
	ops := h.processors[0].OpsAddr()
	if n := metric(t, ops, "cloudoreg_processor_sources_unauthorized_total"); n < 2 {
		t.Errorf("sources_unauthorized_total %v, want every refused call counted", n)
	}
	if n := metric(t, ops, `cloudoreg_processor_dead_letters_total{reason="budget_spent"}`); n != 0 {
		t.Errorf("budget_spent dead letters %v", n)
	}
	if strings.Contains(h.logs.String(), "not-the-psk-sources-expects") {
		t.Error("the PSK reached the logs")
	}
}

// TestRHSMConflictBothWays: a 409 for this org's own registration is
// success; a 409 because another org holds the account is CG1002.
func TestRHSMConflictBothWays(t *testing.T) {
	h := start(t, options{})
	// Another org registered account 456789012345 at RHSM (outside Cloudoreg).
	body, _ := json.Marshal([]map[string]any{{"id": "456789012345", "nickname": "", "verified": true, "sourceId": "999"}})
	req, _ := http.NewRequest(http.MethodPost, h.stack.RHSMURL+"/cloud_access_providers/AWS/accounts", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-RhsmApi-AccountID", orgB)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("pre-registering at RHSM: %v %v", resp, err)
	}
	_ = resp.Body.Close()
	ours := h.createSource(sourceSpec{org: orgA, name: "ours", arn: roleTrusted, externalID: demoExternal})
	theirs := h.createSource(sourceSpec{org: orgA, name: "theirs", arn: roleOpen})
	if app := h.awaitStatus(ours.AppID); app.AvailabilityStatus != status.Available {
		t.Fatalf("ours: %q %q", app.AvailabilityStatus, app.AvailabilityStatusError)
	}
	if app := h.awaitStatus(theirs.AppID); app.AvailabilityStatusError != status.CG1002.Text() {
		t.Fatalf("account of another org: %q %q, want CG1002", app.AvailabilityStatus, app.AvailabilityStatusError)
	}
	// Sources re-emits the create while a source is not available; for ours
	// the second registration answers 409 and must be success.
	h.produceEvent(orgA, "ApplicationAuthentication.create", fmt.Sprintf(`{"id":1,"application_id":%s,"authentication_id":%s}`, ours.AppID, ours.AuthID))
	h.awaitApp(ours.AppID, "was reported available twice", func(sourcesApp) bool {
		return len(h.statuses(ours.AppID)) == 2
	})
	if got := h.statuses(ours.AppID); !slices.Equal(got, []string{"available ", "available "}) {
		t.Errorf("ours: status messages %v", got)
	}
	conflicts := 0
	for _, c := range h.stack.RHSM.Calls() {
		if c.Method == http.MethodPost && c.Status == http.StatusConflict {
			conflicts++
		}
	}
	if conflicts != 2 {
		t.Errorf("RHSM answered 409 %d times, want 2 (one each way)", conflicts)
	}
	if regs := h.registrations(orgA); !slices.Equal(regs, []string{"123456789012/" + ours.SourceID}) {
		t.Errorf("org A holds %v at RHSM, want one registration", regs)
	}
}

// TestEveryCodeHasItsText covers the codes of docs/contract.md ("Status
// messages") that TestCreateOutcomes does not: each reaches the customer
// verbatim.
func TestEveryCodeHasItsText(t *testing.T) {
	h := start(t, options{processors: 2})
	trust := h.stack.STS.Trust()
	trust.Roles = append(trust.Roles, sts.Role{ARN: "arn:aws:iam::123456789012:role/second-role", AssumeRole: sts.Allow, GetCallerIdentity: sts.Allow})
	h.stack.STS.SetTrust(trust)

	first := h.createSource(sourceSpec{org: orgA, name: "first", arn: roleTrusted, externalID: demoExternal})
	h.awaitStatus(first.AppID)
	sameARN := h.createSource(sourceSpec{org: orgA, name: "same-arn", arn: roleTrusted, externalID: demoExternal})
	sameAccount := h.createSource(sourceSpec{org: orgA, name: "same-account", arn: "arn:aws:iam::123456789012:role/second-role"})
	expectCode(t, h, sameARN.AppID, status.CG1001)
	expectCode(t, h, sameAccount.AppID, status.CG1002)

	// CG2000 (Sources links an authentication it cannot find) needs an
	// inconsistent Sources: the reconcile unit tests cover it. A create
	// naming a credential that is not attached verifies the attached one.

	// CG2002: the only credential attached to the application is one of
	// the source, not of the application.
	relinked := h.createSource(sourceSpec{org: orgA, name: "relinked", arn: roleOpen})
	h.awaitStatus(relinked.AppID)
	h.rest(http.MethodDelete, "/api/sources/v3.1/application_authentications/"+h.linkOf(relinked.AppID), orgA, nil, http.StatusNoContent, nil)
	// The destroy is reconciled before the new link exists, or it would
	// report CG2002 too and the create's reconcile run into the RHSM fault below.
	h.awaitApp(relinked.AppID, "read unavailable without a credential", func(a sourcesApp) bool {
		return a.AvailabilityStatus == status.Unavailable && a.AvailabilityStatusError == ""
	})
	var auth struct{ ID string }
	h.rest(http.MethodPost, "/api/sources/v3.1/authentications", orgA, map[string]any{
		"resource_type": "Source", "resource_id": relinked.SourceID, "authtype": "cloud-meter-arn", "username": roleOpen,
	}, http.StatusCreated, &auth)
	h.rest(http.MethodPost, "/api/sources/v3.1/application_authentications", orgA, map[string]any{
		"application_id": relinked.AppID, "authentication_id": auth.ID,
	}, http.StatusCreated, nil)
	expectCode(t, h, relinked.AppID, status.CG2002)

	// CR4000: RHSM refuses the registration.
	h.stack.RHSM.Faults().Set(faults.Fault{Status: 400, Count: 1})
	refused := h.createSource(sourceSpec{org: orgB, name: "refused", arn: roleOpen})
	expectCode(t, h, refused.AppID, status.CR4000)

	// CR4001: a tenant known only by its account number cannot be registered.
	noOrg := h.createSource(sourceSpec{org: "acct:5550001", name: "no-org", arn: "arn:aws:iam::012345678901:role/cloud-meter-leading-zero", externalID: demoExternal})
	expectCode(t, h, noOrg.AppID, status.CR4001)
}

func expectCode(t *testing.T, h *harness, appID string, code status.Code) {
	t.Helper()
	app := h.awaitApp(appID, "reported "+string(code), func(a sourcesApp) bool {
		return a.AvailabilityStatus == status.Unavailable && strings.Contains(a.AvailabilityStatusError, string(code))
	})
	if app.AvailabilityStatusError != code.Text() {
		t.Errorf("%s: text %q, want %q", code, app.AvailabilityStatusError, code.Text())
	}
}

// TestRedeliveryAfterStatusDoesNotRegisterTwice re-delivers a work message
// whose status was already sent (as after a processor died before its ack):
// the source is available again and RHSM holds one registration.
func TestRedeliveryAfterStatusDoesNotRegisterTwice(t *testing.T) {
	h := start(t, options{})
	c := h.createSource(sourceSpec{org: orgA, name: "twice", arn: roleTrusted, externalID: demoExternal})
	h.awaitStatus(c.AppID)
	ctx, cancel := context.WithTimeout(h.ctx, waitLimit)
	defer cancel()
	s, err := h.js.Stream(ctx, "CLOUDOREG_WORK")
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	again := &nats.Msg{Subject: "cloudoreg.work." + c.SourceID, Header: first.Header}
	again.Header.Set(jetstream.MsgIDHeader, "redelivery-of-1")
	if _, err := h.js.PublishMsg(ctx, again); err != nil {
		t.Fatal(err)
	}
	h.awaitApp(c.AppID, "was reported twice", func(sourcesApp) bool { return len(h.statuses(c.AppID)) == 2 })
	if got := h.statuses(c.AppID); !slices.Equal(got, []string{"available ", "available "}) {
		t.Errorf("status messages %v", got)
	}
	if regs := h.registrations(orgA); !slices.Equal(regs, []string{"123456789012/" + c.SourceID}) {
		t.Errorf("RHSM holds %v, want exactly one registration", regs)
	}
}
