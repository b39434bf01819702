package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// CopyFunc copies the message being processed to the dead-letter stream
// with reason and cause.
type CopyFunc func(ctx context.Context, reason failure.DeadLetterReason, cause error) error

// GiveUpFunc tells the customer about work whose retry budget was spent
// (reconcile's GiveUp): its outcome, and why the customer was not told.
type GiveUpFunc func(ctx context.Context, m work.Message, cause error) (reconcile.Outcome, error)

// DeadLetter takes failures for good: the work is copied to the dead-letter
// stream with the failure's reason (internal when it carries none), so an
// operator can replay it, and only then, for a spent budget, is the customer
// told (giveUp), so that by the time support hears of a CG3000 the dead
// letter is there. A copy that fails hands the work back: nothing leaves
// the work stream without a trace.
func DeadLetter(copyMsg CopyFunc, giveUp GiveUpFunc) Wrapper {
	return func(next Handler) Handler {
		return func(ctx context.Context, m work.Message) (reconcile.Outcome, error) {
			o, err := next(ctx, m)
			if err == nil || handedBack(ctx) || failure.IsTransient(err) || errors.Is(err, ErrHandBack) {
				return o, err
			}
			reason := failure.ReasonOf(err)
			if reason == "" {
				reason = failure.ReasonInternal
			}
			if cerr := copyMsg(ctx, reason, err); cerr != nil {
				return reconcile.Outcome{Attempts: o.Attempts}, fmt.Errorf("%w: %w (the work failed: %w)", errDeadLetteringFailed, cerr, err)
			}
			dead := &DeadLettered{Reason: reason, Cause: err}
			out := reconcile.Outcome{State: reconcile.StateDeadLettered, ApplicationID: m.ApplicationID, Cause: err, Reason: string(reason)}
			if reason == failure.ReasonBudgetSpent {
				out, dead.NotTold = giveUp(ctx, m, err)
			}
			out.Attempts = o.Attempts
			return out, dead
		}
	}
}
