package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/cloudoreg/cloudoreg/shared/status"
)

// TestWrongTenantChangesNothingOfAnotherOrg: a Kafka event and an
// availability check that name org A's registered source under org B's
// tenant (Sources answers B 404) change no claim, registration or status of
// org A; a later change of the ARN by org A still leaves exactly one
// registration.
func TestWrongTenantChangesNothingOfAnotherOrg(t *testing.T) {
	h := start(t, options{})
	c := h.createSource(sourceSpec{org: orgA, name: "owned", arn: roleTrusted, externalID: demoExternal})
	if app := h.awaitStatus(c.AppID); app.AvailabilityStatus != status.Available {
		t.Fatalf("%q %q", app.AvailabilityStatus, app.AvailabilityStatusError)
	}
	wantOwned := func(when string) {
		t.Helper()
		if regs := h.registrations(orgA); !slices.Equal(regs, []string{"123456789012/" + c.SourceID}) {
			t.Errorf("%s: RHSM holds %v", when, regs)
		}
		if got := h.claim(c.SourceID); got != "123456789012/"+orgA {
			t.Errorf("%s: the source's claim is %q", when, got)
		}
		if got := h.statuses(c.AppID); !slices.Equal(got, []string{"available "}) {
			t.Errorf("%s: statuses %v", when, got)
		}
		// The wrong tenant's work changed nothing, so it did not replace
		// org A's outcome record: the status API still shows it to org A.
		if r := h.awaitOutcome(c.SourceID, func(map[string]any) bool { return true }); r["org_id"] != orgA || r["state"] != "available" {
			t.Errorf("%s: outcome record %v", when, r)
		}
	}
	for _, ev := range []string{"Source.destroy", "Application.destroy", "Authentication.update"} {
		payload := fmt.Sprintf(`{"id":%s,"source_id":%s}`, c.SourceID, c.SourceID)
		if ev == "Application.destroy" {
			payload = fmt.Sprintf(`{"id":%s,"source_id":%s}`, c.AppID, c.SourceID)
		}
		h.produceEvent(orgB, ev, payload)
		h.awaitCounted(ev, "other_org")
		wantOwned("after a wrong-tenant " + ev)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/internal/api/cloudigrade/v1/availability_status", h.privatePorts[0])
	req, _ := http.NewRequest(http.MethodPost, url, stringsReader(`{"source_id":"`+c.SourceID+`"}`))
	req.Header.Set("x-rh-sources-org-id", orgB)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("check: HTTP %d", resp.StatusCode)
	}
	h.awaitCounted("Cloudoreg.check", "other_org")
	wantOwned("after a wrong-tenant check")
	// The customer moves the source to another AWS account.
	h.rest(http.MethodPatch, "/api/sources/v3.1/authentications/"+c.AuthID, orgA, map[string]any{"username": roleOpen}, http.StatusOK, nil)
	h.awaitApp(c.AppID, "was re-verified", func(sourcesApp) bool { return len(h.statuses(c.AppID)) == 2 })
	if regs := h.registrations(orgA); !slices.Equal(regs, []string{"456789012345/" + c.SourceID}) {
		t.Errorf("after the ARN change RHSM holds %v, want only the new account", regs)
	}
}

// TestAvailabilityChecksCoalesce: a burst of checks of one source queues
// one re-verification (one status message); the rest are answered 202 and
// counted as coalesced.
func TestAvailabilityChecksCoalesce(t *testing.T) {
	h := start(t, options{})
	c := h.createSource(sourceSpec{org: orgA, name: "checked", arn: roleOpen})
	h.awaitStatus(c.AppID)
	url := fmt.Sprintf("http://127.0.0.1:%d/internal/api/cloudigrade/v1/availability_status", h.privatePorts[0])
	const burst = 20
	for i := 0; i < burst; i++ {
		req, _ := http.NewRequest(http.MethodPost, url, stringsReader(`{"source_id":"`+c.SourceID+`"}`))
		req.Header.Set("x-rh-sources-org-id", orgA)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("check %d: HTTP %d", i, resp.StatusCode)
		}
	}
	h.awaitOutcome(c.SourceID, func(r map[string]any) bool { return r["last_event"] == "Cloudoreg.check" })
	addr := h.processors[0].OpsAddr()
	accepted := metric(t, addr, `cloudoreg_processor_availability_checks_total{outcome="accepted"}`)
	coalesced := metric(t, addr, `cloudoreg_processor_availability_checks_total{outcome="coalesced"}`)
	// A burst may straddle two windows.
	if accepted+coalesced != burst || accepted < 1 || accepted > 2 {
		t.Errorf("accepted %v, coalesced %v of %d checks", accepted, coalesced, burst)
	}
	if got := h.statuses(c.AppID); len(got) != 1+int(accepted) {
		t.Errorf("statuses %v, want the create's and one per queued check", got)
	}
}

// claim is what the claims bucket says the source owns, "account/org".
func (h *harness) claim(sourceID string) string {
	h.t.Helper()
	kv, err := h.js.KeyValue(context.Background(), "CLOUDOREG_ACCOUNTS")
	if err != nil {
		h.t.Fatalf("claims bucket: %v", err)
	}
	e, err := kv.Get(context.Background(), "source."+sourceID)
	if err != nil {
		return ""
	}
	var v struct {
		AccountID string `json:"account_id"`
		OrgID     string `json:"org_id"`
	}
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return string(e.Value())
	}
	return v.AccountID + "/" + v.OrgID
}
