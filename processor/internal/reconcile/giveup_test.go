package reconcile

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/sources"
	"github.com/cloudoreg/cloudoreg/shared/status"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// spent is the failure the retry budget was spent on, failing at target.
func spent(target string) error {
	return failure.DeadLetter(failure.ReasonBudgetSpent, target, fmt.Errorf("%w after 7 attempts: %w", ErrBudgetSpent, transient(target)))
}

// TestGiveUp: a spent budget is reported as CG3000 on the work's
// application, or on the source's cloud-meter application for work that
// names none; when there is none, or Sources (which names it) is what
// fails, nobody is told and the error says why. The outcome is CG3000
// either way, and nothing but the application lookup and the one report is
// called: nothing is removed or changed because a dependency was down.
func TestGiveUp(t *testing.T) {
	check := work.Message{Kind: work.KindCheck, SourceID: src, Tenant: tenant, Origin: "check"}
	lookup := []string{"Sources.CloudMeterTypeID", "Sources.SourceApplications " + src + " org=" + org + " account="}
	cg3000 := status.UnavailableMessage(app, status.CG3000)
	cases := []struct {
		name     string
		m        work.Message
		target   string
		change   func(w *world)
		app      string   // recorded on the outcome
		calls    []string // besides the report
		reported bool
		notTold  string // in the error, "" when told
	}{
		{"the work names its application", msg(update), "sts", nil, app, nil, true, ""},
		{"the work names it, Sources fails", msg(update), "sources", nil, app, nil, true, ""},
		{"a check, STS fails", check, "sts", nil, app, lookup, true, ""},
		{"a check, Sources fails", check, "sources", nil, "", nil, false, "Sources, which names it, is the failing dependency"},
		{"a check of a source without cloud-meter", check, "rhsm", func(w *world) {
			w.sourceApps[src] = []sources.Application{{ID: otherApp, SourceID: src, ApplicationTypeID: "3"}}
		}, "", lookup, false, "the source has no cloud-meter application"},
		{"a check of a source gone from Sources", check, "rhsm", func(w *world) { delete(w.sourceApps, src) }, "", lookup, false, "the source has no cloud-meter application"},
		{"a check, the lookup fails", check, "sts", func(w *world) { w.failNext("SourceApplications", transient("sources")) }, "", lookup, false, "resolving it in Sources failed"},
		{"the report fails too", msg(update), "kafka", func(w *world) { w.failNext("Report", transient("kafka")) }, app, nil, false, "reporting CG3000 failed too"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := setup()
			if tc.change != nil {
				tc.change(w)
			}
			cause := spent(tc.target)
			o, err := w.reconciler().GiveUp(context.Background(), tc.m, cause)
			want := Outcome{State: StateUnavailable, Code: status.CG3000, ApplicationID: tc.app, Reason: "retry budget spent", Cause: cause}
			if o != want {
				t.Errorf("outcome %+v, want %+v", o, want)
			}
			switch {
			case tc.notTold == "" && err != nil:
				t.Errorf("told the customer, yet error %v", err)
			case tc.notTold != "" && (err == nil || !strings.Contains(err.Error(), tc.notTold)):
				t.Errorf("error %v, want it to say %q", err, tc.notTold)
			}
			calls := tc.calls
			if tc.reported || strings.Contains(tc.notTold, "report") {
				calls = append(calls[:len(calls):len(calls)], "Reporter.Report "+app+" unavailable")
			}
			wantCalls(t, w, calls...)
			if tc.reported {
				wantReports(t, w, tc.m, cg3000)
			} else {
				wantReports(t, w, tc.m)
			}
		})
	}
}
