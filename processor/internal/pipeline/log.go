package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// Log writes one line per message about where its work ended, on log (which
// names the message). The dead-letter copy logs its own line.
func Log(log *logrus.Entry) Wrapper {
	return func(next Handler) Handler {
		return func(ctx context.Context, m work.Message) (reconcile.Outcome, error) {
			o, err := next(ctx, m)
			if handedBack(ctx) {
				return o, err
			}
			attempts := m.Attempt + o.Attempts
			var dead *DeadLettered
			switch {
			case errors.As(err, &dead):
				logDeadLettered(log, dead, attempts)
			case errors.Is(err, errDeadLetteringFailed):
				log.WithError(err).WithField("attempts", attempts).Error("dead-lettering failed; handing the message back")
			case err != nil:
				log.WithError(err).WithField("attempts", attempts).Warn("parking failed; the message will be redelivered")
			case o.State == reconcile.StateParked:
				log.WithError(o.Cause).WithFields(logrus.Fields{"attempts": attempts, "retry_at": o.RetryAt}).Warn("transient failure persists: source parked, retry scheduled")
			default:
				entry := log.WithFields(logrus.Fields{"state": o.State, "attempts": attempts})
				if o.Code != "" {
					entry = entry.WithFields(logrus.Fields{"code": o.Code, "cause": fmt.Sprint(o.Cause)})
				}
				entry.Info("source reconciled")
			}
			return o, err
		}
	}
}

// logDeadLettered says what was done about dead-lettered work: for a spent
// budget whether the customer was told, for an operator's problem that a
// replay is due after the fix.
func logDeadLettered(log *logrus.Entry, dead *DeadLettered, attempts int) {
	entry := log.WithError(dead.Cause).WithField("attempts", attempts)
	switch {
	case dead.Reason == failure.ReasonBudgetSpent:
		told := "reported CG3000"
		if dead.NotTold != nil {
			told = dead.NotTold.Error()
		}
		entry.Error("retry budget spent, message dead-lettered: " + told)
	case errors.Is(dead.Cause, reconcile.ErrBudgetSpent):
		entry.WithField("reason", dead.Reason).Error("retry budget spent on a problem an operator must fix: message dead-lettered, nothing reported to the customer; replay it after the fix")
	default:
		entry.WithField("reason", dead.Reason).Warn("work failed for good: message dead-lettered, nothing reported to the customer")
	}
}
