package pipeline

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/shared/backoff"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// Parked is a retry of Work due at Due. Work keeps the identity, which a
// later status message must carry, and in Attempt and FirstFailure the
// budget spent so far.
type Parked struct {
	Due  time.Time
	Work work.Message
}

// ParkStore keeps at most one parked retry per source.
type ParkStore interface {
	Park(ctx context.Context, p Parked) error
	// Clear drops the source's parked retry, if any. A retry that fires
	// anyway only reconciles again: harmless, so a failure is ignored.
	Clear(ctx context.Context, sourceID string)
}

// Park takes the transient failures that outlasted the in-place retries:
// while the retry budget lasts (since the work's first failure) the source
// is parked for a retry after parkBackoff, and the work is done for now;
// once it is spent the failure is one for good, carrying the reason to
// dead-letter it with. Work that reached an outcome or failed for good
// clears the source's parked retry.
func Park(store ParkStore, budget time.Duration, parkBackoff backoff.Policy, now func() time.Time) Wrapper {
	return func(next Handler) Handler {
		return func(ctx context.Context, m work.Message) (reconcile.Outcome, error) {
			o, err := next(ctx, m)
			switch {
			case handedBack(ctx):
				return o, err
			case err == nil || !failure.IsTransient(err):
				store.Clear(ctx, m.SourceID)
				return o, err
			}
			first := m.FirstFailure
			if first.IsZero() {
				first = now().UTC()
			}
			total := m.Attempt + o.Attempts
			if now().Sub(first) >= budget {
				store.Clear(ctx, m.SourceID)
				return o, budgetSpent(err, total)
			}
			p := Parked{Due: now().Add(parkBackoff.Delay(total)).UTC(), Work: m}
			p.Work.Attempt, p.Work.FirstFailure = total, first
			if perr := store.Park(ctx, p); perr != nil {
				return reconcile.Outcome{Attempts: o.Attempts}, fmt.Errorf("%w: %w (the work failed: %w)", errParkingFailed, perr, err)
			}
			return reconcile.Outcome{
				State: reconcile.StateParked, ApplicationID: m.ApplicationID, Cause: err, Reason: err.Error(),
				Attempts: o.Attempts, RetryAt: p.Due,
			}, nil
		}
	}
}

// budgetSpent is the failure for good of work whose transient failures
// (cause) spent the budget. Its reason is the cause's own when it has one
// (a refused PSK); a failure of Cloudoreg's configuration without one (its
// AWS credentials) is an operator's too; only the rest is budget_spent,
// which the customer is told as CG3000.
func budgetSpent(cause error, attempts int) error {
	reason := failure.ReasonOf(cause)
	switch {
	case reason != "":
	case errors.Is(cause, failure.ErrConfiguration):
		reason = failure.ReasonConfiguration
	default:
		reason = failure.ReasonBudgetSpent
	}
	return failure.DeadLetter(reason, failure.TargetOf(cause), fmt.Errorf("%w after %d attempts: %w", reconcile.ErrBudgetSpent, attempts, cause))
}
