package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/cloudoreg/cloudoreg/shared/standin/sts"
	"github.com/cloudoreg/cloudoreg/shared/status"
)

// TestFixWrongARN: the customer fixes a denied role with a PATCH of the
// authentication (Authentication.update): the source becomes available.
func TestFixWrongARN(t *testing.T) {
	h := start(t, options{})
	c := h.createSource(sourceSpec{org: orgA, name: "fix-me", arn: roleDenied})
	expectCode(t, h, c.AppID, status.CG3002)
	h.rest(http.MethodPatch, "/api/sources/v3.1/authentications/"+c.AuthID, orgA, map[string]any{"username": roleOpen}, http.StatusOK, nil)
	h.awaitApp(c.AppID, "became available after the fix", func(a sourcesApp) bool { return a.AvailabilityStatus == status.Available })
	if regs := h.registrations(orgA); !slices.Equal(regs, []string{"456789012345/" + c.SourceID}) {
		t.Errorf("RHSM holds %v", regs)
	}
}

// TestPauseAndUnpause: a pause keeps the registration and sends nothing; an
// unpause re-verifies, and a role that stopped trusting Cloudoreg meanwhile
// gives CG3002 and loses its registration.
func TestPauseAndUnpause(t *testing.T) {
	h := start(t, options{})
	c := h.createSource(sourceSpec{org: orgA, name: "pausing", arn: roleOpen})
	h.awaitStatus(c.AppID)
	h.rest(http.MethodPost, "/api/sources/v3.1/applications/"+c.AppID+"/pause", orgA, nil, http.StatusNoContent, nil)
	h.awaitOutcome(c.SourceID, func(r map[string]any) bool { return r["state"] == "paused" })
	if got := h.statuses(c.AppID); !slices.Equal(got, []string{"available "}) {
		t.Errorf("statuses after pause %v, want nothing new", got)
	}
	if regs := h.registrations(orgA); !slices.Equal(regs, []string{"456789012345/" + c.SourceID}) {
		t.Errorf("pause changed the registration: %v", regs)
	}
	// The customer's role no longer trusts Cloudoreg.
	trust := h.stack.STS.Trust()
	for i, r := range trust.Roles {
		if r.ARN == roleOpen {
			trust.Roles[i].AssumeRole = sts.Deny
		}
	}
	h.stack.STS.SetTrust(trust)
	h.rest(http.MethodPost, "/api/sources/v3.1/applications/"+c.AppID+"/unpause", orgA, nil, http.StatusNoContent, nil)
	expectCode(t, h, c.AppID, status.CG3002)
	if regs := h.registrations(orgA); len(regs) != 0 {
		t.Errorf("an unverified source stays registered: %v", regs)
	}
}

// TestDeleteAndRecreate: deleting a source removes its registration and
// sends nothing; a new source for the same AWS account is registered again.
func TestDeleteAndRecreate(t *testing.T) {
	h := start(t, options{})
	c := h.createSource(sourceSpec{org: orgA, name: "short-lived", arn: roleTrusted, externalID: demoExternal})
	h.awaitStatus(c.AppID)
	h.rest(http.MethodDelete, "/api/sources/v3.1/sources/"+c.SourceID, orgA, nil, http.StatusNoContent, nil)
	h.awaitOutcome(c.SourceID, func(r map[string]any) bool { return r["state"] == "removed" })
	if regs := h.registrations(orgA); len(regs) != 0 {
		t.Fatalf("RHSM still holds %v after the delete", regs)
	}
	again := h.createSource(sourceSpec{org: orgA, name: "short-lived", arn: roleTrusted, externalID: demoExternal})
	if app := h.awaitStatus(again.AppID); app.AvailabilityStatus != status.Available {
		t.Fatalf("re-created source: %q %q", app.AvailabilityStatus, app.AvailabilityStatusError)
	}
	if regs := h.registrations(orgA); !slices.Equal(regs, []string{"123456789012/" + again.SourceID}) {
		t.Errorf("RHSM holds %v, want the re-created source only", regs)
	}
	if got := h.statuses(c.AppID); !slices.Equal(got, []string{"available "}) {
		t.Errorf("the deleted application got %v, want nothing after its delete", got)
	}
}

// TestSameARNInTwoOrgs: an ARN belongs to one source, whatever the org.
func TestSameARNInTwoOrgs(t *testing.T) {
	h := start(t, options{})
	a := h.createSource(sourceSpec{org: orgA, name: "a", arn: roleTrusted, externalID: demoExternal})
	if app := h.awaitStatus(a.AppID); app.AvailabilityStatus != status.Available {
		t.Fatalf("first: %q", app.AvailabilityStatusError)
	}
	b := h.createSource(sourceSpec{org: orgB, name: "b", arn: roleTrusted, externalID: demoExternal})
	expectCode(t, h, b.AppID, status.CG1001)
	if regs := h.registrations(orgB); len(regs) != 0 {
		t.Errorf("org B holds %v", regs)
	}
}

// TestAvailabilityCheck: Sources asks the processor to check a source; a
// healthy one is reported available again, a broken one gets its error.
func TestAvailabilityCheck(t *testing.T) {
	h := start(t, options{})
	healthy := h.createSource(sourceSpec{org: orgA, name: "healthy", arn: roleTrusted, externalID: demoExternal})
	broken := h.createSource(sourceSpec{org: orgA, name: "broken", arn: roleOpen})
	h.awaitStatus(healthy.AppID)
	h.awaitStatus(broken.AppID)
	trust := h.stack.STS.Trust()
	for i, r := range trust.Roles {
		if r.ARN == roleOpen {
			trust.Roles[i].GetCallerIdentity = sts.Deny
		}
	}
	h.stack.STS.SetTrust(trust)
	for _, c := range []created{healthy, broken} {
		h.rest(http.MethodPost, "/api/sources/v3.1/sources/"+c.SourceID+"/check_availability", orgA, nil, http.StatusAccepted, nil)
	}
	h.awaitApp(healthy.AppID, "was checked", func(sourcesApp) bool { return len(h.statuses(healthy.AppID)) == 2 })
	if got := h.statuses(healthy.AppID); !slices.Equal(got, []string{"available ", "available "}) {
		t.Errorf("healthy: %v", got)
	}
	expectCode(t, h, broken.AppID, status.CG3003)
	if n := metric(t, h.processors[0].OpsAddr(), `cloudoreg_processor_availability_checks_total{outcome="accepted"}`); n != 2 {
		t.Errorf("checks accepted: %v, want 2", n)
	}
}

// TestAvailabilityCheckRejectsBadRequests: the callback answers 400 without
// a source id or a tenant, and queues nothing.
func TestAvailabilityCheckRejectsBadRequests(t *testing.T) {
	h := start(t, options{})
	url := fmt.Sprintf("http://127.0.0.1:%d/internal/api/cloudigrade/v1/availability_status", h.privatePorts[0])
	for name, c := range map[string]struct {
		body   string
		tenant bool
	}{
		"no source id":  {`{}`, true},
		"bad source id": {`{"source_id":"1.*"}`, true},
		"not json":      {`source_id=1`, true},
		"no tenant":     {`{"source_id":"1"}`, false},
	} {
		req, _ := http.NewRequest(http.MethodPost, url, stringsReader(c.body))
		if c.tenant {
			req.Header.Set("x-rh-sources-org-id", orgA)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: HTTP %d, want 400", name, resp.StatusCode)
		}
	}
}

// TestDestroyBeforeCreate: the events of a source that is already gone
// (created and deleted before Cloudoreg got to them) end with nothing
// registered and nothing reported, whether the listener or the processors
// were behind.
func TestDestroyBeforeCreate(t *testing.T) {
	t.Run("listener behind", func(t *testing.T) {
		h := start(t, options{noListener: true})
		c := h.createSource(sourceSpec{org: orgA, name: "gone", arn: roleTrusted, externalID: demoExternal})
		h.rest(http.MethodDelete, "/api/sources/v3.1/sources/"+c.SourceID, orgA, nil, http.StatusNoContent, nil)
		marker := h.createSource(sourceSpec{org: orgA, name: "marker", arn: roleOpen})
		h.startListener(nil)
		h.awaitStatus(marker.AppID) // same org, same partition: the gone source's events came first
		if regs := h.registrations(orgA); !slices.Equal(regs, []string{"456789012345/" + marker.SourceID}) {
			t.Errorf("RHSM holds %v, want only the marker", regs)
		}
		if got := h.statuses(c.AppID); len(got) != 0 {
			t.Errorf("the gone source got %v", got)
		}
	})
	t.Run("processors behind", func(t *testing.T) {
		h := start(t, options{noWorkers: true})
		c := h.createSource(sourceSpec{org: orgA, name: "gone", arn: roleTrusted, externalID: demoExternal})
		h.rest(http.MethodDelete, "/api/sources/v3.1/sources/"+c.SourceID, orgA, nil, http.StatusNoContent, nil)
		h.startProcessor(0, h.privatePorts[0])
		// The cascade ends with Authentication.destroy, which finds nothing
		// left; the record keeps the removal before it.
		h.awaitCounted("Authentication.destroy", "not_ours")
		if r := h.awaitOutcome(c.SourceID, func(r map[string]any) bool { return r["state"] == "removed" }); r["last_event"] != "Source.destroy" {
			t.Errorf("the outcome record is %v, want the removal by Source.destroy", r)
		}
		if regs := h.registrations(orgA); len(regs) != 0 {
			t.Errorf("RHSM holds %v for a source that is gone", regs)
		}
		if got := h.statuses(c.AppID); len(got) != 0 {
			t.Errorf("the gone source got %v", got)
		}
	})
}
