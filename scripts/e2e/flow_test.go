package e2e

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cloudoreg/cloudoreg/shared/standin/sts"
	"github.com/cloudoreg/cloudoreg/shared/status"
)

// TestCreateOutcomes creates one source per outcome of docs/contract.md
// ("Status messages") that a create can reach, and checks the exact text the
// customer sees and what RHSM holds.
func TestCreateOutcomes(t *testing.T) {
	h := start(t, options{processors: 2})
	cases := []struct {
		name  string
		spec  sourceSpec
		code  status.Code // "" = available
		holds string      // RHSM registration expected for the org, "" = none for this source
	}{
		{name: "trusted", spec: sourceSpec{arn: roleTrusted, externalID: demoExternal}, holds: "123456789012"},
		{name: "denied", spec: sourceSpec{arn: roleDenied}, code: status.CG3002},
		{name: "no-policy", spec: sourceSpec{arn: roleNoPolicy}, code: status.CG3003},
		{name: "bad-arn", spec: sourceSpec{arn: "arn:aws:iam::12345:role/too-short"}, code: status.CG1004},
		{name: "wrong-authtype", spec: sourceSpec{arn: roleOpen, authType: "arn"}, code: status.CG2001},
		{name: "no-arn", spec: sourceSpec{arn: ""}, code: status.CG2004},
		{name: "wrong-external-id", spec: sourceSpec{arn: roleTrusted, externalID: "guessed"}, code: status.CG3002},
	}
	made := map[string]created{}
	for _, c := range cases {
		c.spec.org, c.spec.name = orgA, c.name
		made[c.name] = h.createSource(c.spec)
	}
	for _, c := range cases {
		app := h.awaitStatus(made[c.name].AppID)
		want, wantErr := status.Available, ""
		if c.code != "" {
			want, wantErr = status.Unavailable, c.code.Text()
		}
		if app.AvailabilityStatus != want || app.AvailabilityStatusError != wantErr {
			t.Errorf("%s: status %q error %q, want %q %q", c.name, app.AvailabilityStatus, app.AvailabilityStatusError, want, wantErr)
		}
	}
	regs := h.registrations(orgA)
	wantRegs := []string{"123456789012/" + made["trusted"].SourceID}
	if !slices.Equal(regs, wantRegs) {
		t.Errorf("RHSM holds %v for the org, want %v", regs, wantRegs)
	}
}

// TestExternalIDIsSentAndRequired checks the confused-deputy guard: the
// external id reaches STS with the session name and policy, and a role whose
// trust names an external id refuses a source that does not give it.
func TestExternalIDIsSentAndRequired(t *testing.T) {
	h := start(t, options{})
	good := h.createSource(sourceSpec{org: orgA, name: "good", arn: roleTrusted, externalID: demoExternal})
	missing := h.createSource(sourceSpec{org: orgA, name: "missing", arn: "arn:aws:iam::123456789012:role/cloud-meter-trusted"})
	if app := h.awaitStatus(good.AppID); app.AvailabilityStatus != status.Available {
		t.Fatalf("good source: %q %q", app.AvailabilityStatus, app.AvailabilityStatusError)
	}
	if app := h.awaitStatus(missing.AppID); app.AvailabilityStatusError != status.CG3002.Text() {
		t.Fatalf("source without the external id: %q %q, want CG3002", app.AvailabilityStatus, app.AvailabilityStatusError)
	}
	var sawGood, sawMissing bool
	for _, c := range h.stack.STS.Calls() {
		if c.Action != "AssumeRole" {
			continue
		}
		if c.RoleSessionName != "cloudoreg-123456789012" {
			t.Errorf("session name %q, want cloudoreg-123456789012", c.RoleSessionName)
		}
		if !strings.Contains(c.Policy, "sts:GetCallerIdentity") || strings.Contains(c.Policy, "sts:*") {
			t.Errorf("session policy %q does not limit the session to sts:GetCallerIdentity", c.Policy)
		}
		switch {
		case c.ExternalIDSent && c.ExternalID == demoExternal:
			sawGood = true
		case !c.ExternalIDSent:
			sawMissing = true
		}
	}
	if !sawGood || !sawMissing {
		t.Errorf("STS calls did not show the external id sent (%v) and absent (%v)", sawGood, sawMissing)
	}
}

// TestOtherApplicationTypeGetsNoStatus: a source without cloud-meter is
// another team's; Cloudoreg must not report on it nor call RHSM or STS.
func TestOtherApplicationTypeGetsNoStatus(t *testing.T) {
	h := start(t, options{})
	other := h.createSource(sourceSpec{org: orgA, name: "costs", appType: "cost-management", authType: "arn", arn: roleTrusted})
	h.awaitOutcome(other.SourceID, func(r map[string]any) bool { return r["state"] == "not_ours" })
	for _, rec := range h.stack.Sources.StatusLog() {
		if strings.Contains(string(rec.Value), `"`+other.AppID+`"`) {
			t.Errorf("a status was sent for another team's application: %s", rec.Value)
		}
	}
	if n := len(h.stack.STS.Calls()); n != 0 {
		t.Errorf("STS was called %d times for another team's source", n)
	}
	if n := len(h.stack.RHSM.Calls()); n != 0 {
		t.Errorf("RHSM was called %d times for another team's source", n)
	}
}

// fixtureIdentity is the x-rh-identity of the fixtures: org 1234567, System.
func fixtureIdentity(t *testing.T) string {
	t.Helper()
	raw := `{"identity":{"org_id":"1234567","account_number":"","internal":{"org_id":""},"type":"System"},"entitlements":null}`
	return base64.StdEncoding.EncodeToString([]byte(raw))
}

// TestIgnoredAndPoisonEvents feeds the event stream what the listener must
// not act on, between valid events, and shows each is skipped or ignored
// with no outbound call while the stream keeps flowing.
func TestIgnoredAndPoisonEvents(t *testing.T) {
	h := start(t, options{})
	headers := func(eventType string) map[string]string {
		return map[string]string{"event_type": eventType, "x-rh-sources-org-id": orgA, "x-rh-identity": fixtureIdentity(t), "encoding": "json"}
	}
	// Ignored types, with ids no stand-in knows, so any call about them shows.
	h.produce(orgA, headers("Application.update"), []byte(`{"id":777021,"source_id":777011,"application_type_id":2}`))
	h.produce(orgA, headers("Source.create"), []byte(`{"id":777011}`))
	h.produce(orgA, map[string]string{"x-rh-sources-org-id": orgA}, []byte(`{"id":777011}`)) // no event_type
	// Poison: not JSON; no tenant at all; an undecodable identity; an id that
	// is not a subject token.
	h.produce(orgA, headers("ApplicationAuthentication.create"), []byte(`not json`))
	h.produce(orgA, map[string]string{"event_type": "ApplicationAuthentication.create"}, []byte(`{"id":1,"application_id":777021,"authentication_id":777041}`))
	h.produce(orgA, map[string]string{"event_type": "Source.destroy", "x-rh-identity": "%%%not-base64"}, []byte(`{"id":777011}`))
	h.produce(orgA, headers("Source.destroy"), []byte(`{"id":"777011.>"}`))
	// Then a real source of the same org, on the same partition, after them.
	after := h.createSource(sourceSpec{org: orgA, name: "after", arn: roleTrusted, externalID: demoExternal})
	if app := h.awaitStatus(after.AppID); app.AvailabilityStatus != status.Available {
		t.Fatalf("the valid source after the poison: %q %q", app.AvailabilityStatus, app.AvailabilityStatusError)
	}
	for _, c := range h.stack.Sources.Calls() {
		if strings.Contains(c.Path, "7770") {
			t.Errorf("Sources was called about an ignored or poison event: %s %s", c.Method, c.Path)
		}
	}
	for _, c := range h.stack.RHSM.Calls() {
		if strings.Contains(c.SourceID, "7770") {
			t.Errorf("RHSM was called about an ignored or poison event: %s %s", c.Method, c.Path)
		}
	}
	addr := h.listener.OpsAddr()
	// The stand-in emits ignored types too (Source.create, Application.update
	// after a status), so those counters are at least what was produced here.
	for _, series := range []string{
		`cloudoreg_listener_events_total{event_type="Application.update",outcome="ignored",reason=""}`,
		`cloudoreg_listener_events_total{event_type="Source.create",outcome="ignored",reason=""}`,
		`cloudoreg_listener_events_total{event_type="none",outcome="ignored",reason=""}`,
	} {
		if got := metric(t, addr, series); got < 1 {
			t.Errorf("%s = %v, want at least 1", series, got)
		}
	}
	for _, reason := range []string{"bad_payload", "no_tenant"} {
		series := `cloudoreg_listener_events_total{event_type="ApplicationAuthentication.create",outcome="skipped",reason="` + reason + `"}`
		if got := metric(t, addr, series); got != 1 {
			t.Errorf("%s = %v, want 1", series, got)
		}
	}
	for _, reason := range []string{"bad_identity", "bad_id"} {
		series := `cloudoreg_listener_events_total{event_type="Source.destroy",outcome="skipped",reason="` + reason + `"}`
		if got := metric(t, addr, series); got != 1 {
			t.Errorf("%s = %v, want 1", series, got)
		}
	}
	if strings.Contains(h.logs.String(), fixtureIdentity(t)) {
		t.Error("the identity header reached the logs")
	}
}

// TestTrustFileShipped keeps the documented default trust table loadable:
// make run and make demo depend on it.
func TestTrustFileShipped(t *testing.T) {
	path := filepath.Join("..", "sts-trust.json")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("default trust file: %v", err)
	}
	trust, err := sts.LoadTrust(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(trust.Roles) < 4 {
		t.Fatalf("trust table has %d roles, want the documented demo roles", len(trust.Roles))
	}
}
