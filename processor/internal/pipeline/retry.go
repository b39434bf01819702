package pipeline

import (
	"context"
	"errors"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/processor/internal/metrics"
	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/shared/backoff"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// RetryInPlace retries transient failures with backoff for window at most:
// the message stays with this processor meanwhile, which holds up the other
// sources of its partition, so the window is short. observe hears of each
// retry before its delay. The outcome records the attempts made.
func RetryInPlace(window time.Duration, policy backoff.Policy, observe func(err error, attempt int)) Wrapper {
	return func(next Handler) Handler {
		return func(ctx context.Context, m work.Message) (reconcile.Outcome, error) {
			deadline := time.Now().Add(window)
			for n := 1; ; n++ {
				o, err := next(ctx, m)
				o.Attempts = n
				if err == nil || !failure.IsTransient(err) || handedBack(ctx) {
					return o, err
				}
				delay := policy.Delay(n)
				if time.Now().Add(delay).After(deadline) {
					return o, err
				}
				observe(err, n)
				if backoff.Sleep(ctx, delay) != nil {
					return o, ctx.Err()
				}
			}
		}
	}
}

// ObserveRetries counts each in-place retry by the failing dependency and
// logs it: as an error when Cloudoreg's own configuration is the cause (an
// operator has to act), else as a warning.
func ObserveRetries(m *metrics.Metrics, log *logrus.Entry) func(err error, attempt int) {
	return func(err error, attempt int) {
		m.Retries.WithLabelValues(failure.TargetOf(err)).Inc()
		entry := log.WithError(err).WithField("attempt", attempt)
		if errors.Is(err, failure.ErrConfiguration) {
			entry.Error("transient failure caused by Cloudoreg's configuration, retrying in place")
		} else {
			entry.Warn("transient failure, retrying in place")
		}
	}
}
