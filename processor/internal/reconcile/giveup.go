package reconcile

import (
	"context"
	"errors"
	"fmt"

	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/status"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// ErrBudgetSpent is wrapped by the failure of work whose transient failures
// outlasted the retry budget; its text is the Reason GiveUp records.
var ErrBudgetSpent = errors.New("retry budget spent")

// GiveUp is the rule for work whose retry budget was spent on transient
// failures of a dependency (cause): the customer is told CG3000 on the
// work's application, or on the source's cloud-meter application for work
// that names none (an availability check, a periodic reconcile). The caller
// dead-letters the work first, so by the time support hears of a CG3000 the
// dead letter is there to replay.
//
// The outcome is unavailable with CG3000 whether or not the status message
// went out; the error says why the customer was not told (nil when told):
// the source has no cloud-meter application, Sources, which names it, is
// the failing dependency, or the report failed too. The budget is spent,
// so nothing of this is retried.
func (r *Reconciler) GiveUp(ctx context.Context, m work.Message, cause error) (Outcome, error) {
	o := Outcome{State: StateUnavailable, Code: status.CG3000, Reason: ErrBudgetSpent.Error(), Cause: cause}
	appID, err := r.budgetSpentApplication(ctx, m, cause)
	if err != nil {
		return o, err
	}
	o.ApplicationID = appID
	if err := r.Reporter.Report(ctx, m, status.UnavailableMessage(appID, status.CG3000)); err != nil {
		return o, fmt.Errorf("reporting CG3000 failed too: %w", err)
	}
	return o, nil
}

// budgetSpentApplication is the application to tell about a spent budget.
func (r *Reconciler) budgetSpentApplication(ctx context.Context, m work.Message, cause error) (string, error) {
	if m.ApplicationID != "" {
		return m.ApplicationID, nil
	}
	if failure.TargetOf(cause) == "sources" {
		return "", errors.New("no application to report on: Sources, which names it, is the failing dependency")
	}
	app, _, err := r.cloudMeterApplication(ctx, m)
	if err != nil {
		return "", fmt.Errorf("no application to report on: resolving it in Sources failed: %w", err)
	}
	if app.ID == "" {
		return "", errors.New("no application to report on: the source has no cloud-meter application")
	}
	return app.ID, nil
}
