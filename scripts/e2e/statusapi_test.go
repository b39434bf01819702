package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	papp "github.com/cloudoreg/cloudoreg/processor/app"
	"github.com/cloudoreg/cloudoreg/shared/standin/faults"
	"github.com/cloudoreg/cloudoreg/shared/status"
)

const e2eAdminToken = "e2e-admin-token"

// api calls the first processor's status API.
func (h *harness) api(method, path string, header map[string]string, want int) map[string]any {
	h.t.Helper()
	req, _ := http.NewRequest(method, "http://"+h.processors[0].PrivateAddr()+"/api/cloudoreg/v1"+path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		h.t.Fatalf("%s %s: HTTP %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	out := map[string]any{}
	_ = json.Unmarshal(b, &out)
	return out
}

func identityOf(org string) string {
	b, _ := json.Marshal(map[string]any{"identity": map[string]any{"org_id": org, "type": "User", "internal": map[string]any{"org_id": org}}})
	return base64.StdEncoding.EncodeToString(b)
}

// TestStatusAPIRecoversBudgetSpentSources: STS fails for longer than the
// retry budget, so two sources end CG3000 with a dead letter each. Once STS
// works again, replaying one dead letter and reconciling the other through
// the status API makes both available and registered, the dead letters go,
// and the API shows all of it to the operator and to the org, never to
// another org.
func TestStatusAPIRecoversBudgetSpentSources(t *testing.T) {
	h := start(t, options{processor: func(c *papp.Config) {
		c.RetryInPlace, c.RetryBudget = 300*time.Millisecond, 2*time.Second
		c.AdminToken = e2eAdminToken
	}})
	admin := map[string]string{"Authorization": "Bearer " + e2eAdminToken}
	h.stack.STS.Faults().Set(faults.Fault{Status: 503})
	replayed := h.createSource(sourceSpec{org: orgA, name: "replayed", arn: roleTrusted, externalID: demoExternal})
	reconciled := h.createSource(sourceSpec{org: orgA, name: "reconciled", arn: roleOpen})
	for _, c := range []created{replayed, reconciled} {
		if app := h.awaitStatus(c.AppID); app.AvailabilityStatusError != status.CG3000.Text() {
			t.Fatalf("source %s: %q %q, want CG3000", c.SourceID, app.AvailabilityStatus, app.AvailabilityStatusError)
		}
	}
	// The outcome is recorded right after the status is reported.
	h.awaitOutcome(replayed.SourceID, func(r map[string]any) bool { return r["code"] == "CG3000" })
	s := h.api(http.MethodGet, "/sources/"+replayed.SourceID, map[string]string{"x-rh-identity": identityOf(orgA)}, 200)
	if o, _ := s["outcome"].(map[string]any); o["code"] != "CG3000" || o["state"] != "unavailable" {
		t.Errorf("the org's view of a CG3000 source: %v", s)
	}
	h.api(http.MethodGet, "/sources/"+replayed.SourceID, map[string]string{"x-rh-identity": identityOf(orgB)}, 404)

	letters, _ := h.api(http.MethodGet, "/dead-letters", admin, 200)["dead_letters"].([]any)
	seqOf := map[string]string{}
	for _, l := range letters {
		d := l.(map[string]any)
		seqOf[d["source_id"].(string)] = fmt.Sprint(d["seq"])
		if d["reason"] != "budget_spent" {
			t.Errorf("dead letter %v", d)
		}
	}
	if len(seqOf) != 2 || seqOf[replayed.SourceID] == "" {
		t.Fatalf("dead letters %v, want one per source", letters)
	}

	h.stack.STS.Faults().Clear()
	h.api(http.MethodPost, "/dead-letters/"+seqOf[replayed.SourceID]+"/replay", admin, 200)
	h.api(http.MethodPost, "/sources/"+reconciled.SourceID+"/reconcile", admin, 202)
	for _, c := range []created{replayed, reconciled} {
		h.awaitApp(c.AppID, "available after the operator's fix", func(a sourcesApp) bool { return a.AvailabilityStatus == status.Available })
		h.awaitOutcome(c.SourceID, func(r map[string]any) bool { return r["state"] == "available" })
		s := h.api(http.MethodGet, "/sources/"+c.SourceID, admin, 200)
		regs, _ := s["rhsm"].(map[string]any)["registrations"].([]any)
		if len(regs) != 1 {
			t.Errorf("source %s: RHSM holds %v", c.SourceID, s["rhsm"])
		}
	}
	h.api(http.MethodGet, "/dead-letters/"+seqOf[replayed.SourceID], admin, 404)
	if left := h.deadLetters(); len(left) != 1 || left[0].Get("Cloudoreg-Source-Id") != reconciled.SourceID {
		t.Errorf("dead letters left: %v, want only the reconciled source's", left)
	}
}
