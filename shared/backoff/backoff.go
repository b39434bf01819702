// Package backoff computes capped exponential delays with jitter, so that
// many retrying clients do not hammer a recovering dependency in step.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Policy is a capped exponential backoff.
type Policy struct {
	Base time.Duration // first delay
	Max  time.Duration // cap
}

// Delay is the wait before retry number attempt (1-based): Base*2^(attempt-1)
// capped at Max, then a random point in its upper half ("equal jitter"),
// which keeps a floor under the wait while spreading clients apart.
func (p Policy) Delay(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := p.Base
	for i := 1; i < attempt && d > 0 && d < p.Max; i++ {
		if d > p.Max/2 {
			d = p.Max // doubling would pass the cap (or overflow)
			break
		}
		d *= 2
	}
	if d > p.Max {
		d = p.Max
	}
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(half+1)
}

// Sleep waits d or until ctx ends, whichever is first.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Retry calls try until it succeeds or ctx ends, waiting p's delays in
// between; failed, when set, hears each failure first (to log it, or to
// say so in readiness). It returns ctx's error when it gave up.
func (p Policy) Retry(ctx context.Context, try func() error, failed func(attempt int, err error)) error {
	for attempt := 1; ; attempt++ {
		err := try()
		if err == nil {
			return nil
		}
		if failed != nil {
			failed(attempt, err)
		}
		if err := Sleep(ctx, p.Delay(attempt)); err != nil {
			return err
		}
	}
}
