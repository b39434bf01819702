package e2e

import (
	"net/http"
	"slices"
	"testing"
	"time"

	papp "github.com/cloudoreg/cloudoreg/processor/app"
	"github.com/cloudoreg/cloudoreg/shared/status"
)

// TestPeriodicReconcileRepairsAMissedDelete: a registered source is deleted
// in Sources while no event reaches Cloudoreg (the listener is stopped, the
// destroy events stay in Kafka); the periodic reconcile finds it gone,
// removes its registration at RHSM and counts the repair.
func TestPeriodicReconcileRepairsAMissedDelete(t *testing.T) {
	h := start(t, options{processor: func(c *papp.Config) { c.ReconcileEvery = 3 * time.Second }})
	kept := h.createSource(sourceSpec{org: orgA, name: "kept", arn: roleOpen})
	gone := h.createSource(sourceSpec{org: orgA, name: "gone", arn: roleTrusted, externalID: demoExternal})
	for _, c := range []created{kept, gone} {
		if app := h.awaitStatus(c.AppID); app.AvailabilityStatus != status.Available {
			t.Fatalf("%s: %q %q", c.SourceID, app.AvailabilityStatus, app.AvailabilityStatusError)
		}
	}
	h.stopListener()
	h.rest(http.MethodDelete, "/api/sources/v3.1/sources/"+gone.SourceID, orgA, nil, http.StatusNoContent, nil)
	h.awaitOutcome(gone.SourceID, func(r map[string]any) bool {
		return r["last_event"] == "Cloudoreg.reconcile" && r["state"] == "removed"
	})
	if regs := h.registrations(orgA); !slices.Equal(regs, []string{"456789012345/" + kept.SourceID}) {
		t.Errorf("RHSM holds %v, want only the kept source", regs)
	}
	if got := h.claim(gone.SourceID); got != "" {
		t.Errorf("the deleted source still claims %s", got)
	}
	addr := h.processors[0].OpsAddr()
	if n := metric(t, addr, `cloudoreg_processor_periodic_repairs_total{repair="removed"}`); n != 1 {
		t.Errorf("removed repairs %v, want 1", n)
	}
	// The kept source was reconciled periodically too, and nothing of it
	// needed repairing.
	h.awaitOutcome(kept.SourceID, func(r map[string]any) bool { return r["last_event"] == "Cloudoreg.reconcile" })
	for _, repair := range []string{"re-registered", "status re-sent"} {
		if n := metric(t, addr, `cloudoreg_processor_periodic_repairs_total{repair="`+repair+`"}`); n != 0 {
			t.Errorf("%s repairs %v, want 0", repair, n)
		}
	}
}
