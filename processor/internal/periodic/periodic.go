// Package periodic reconciles every source that holds an account claim
// again, at least once per period, from Sources' current state
// (anti-entropy): a destroy event that never arrived, or one that was
// misread, then costs at most a period instead of a registration left
// behind for ever. The reconciles are work messages of kind
// Cloudoreg.reconcile on the source's work subject, so they keep the
// per-source order of events.
package periodic

import (
	"context"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// Claimed lists the claims of every source that holds one.
type Claimed interface {
	Claimed(ctx context.Context) ([]reconcile.Claim, error)
}

// Enqueuer publishes a work message with its origin as the message id.
type Enqueuer func(ctx context.Context, m work.Message) (duplicate bool, err error)

// Sweeper enqueues the periodic reconciles that come due.
type Sweeper struct {
	Every    time.Duration
	Claims   Claimed
	Enqueue  Enqueuer
	Log      *logrus.Entry
	Enqueued func() // counts a reconcile stored in the work stream
}

// Tick is how often a sweeper looks for due sources: often enough to
// spread them, rarely enough that listing the claims costs little.
func Tick(every time.Duration) time.Duration {
	return min(max(every/100, 100*time.Millisecond), time.Minute)
}

// Due reports whether the source's reconcile of its current period came due
// within lookback before now, and that period's number. Each source's turn
// is at its own offset in the period (a hash of its id), so the reconciles
// spread evenly over the period instead of all coming at once.
func Due(sourceID string, every, lookback time.Duration, now time.Time) (slot int64, due bool) {
	offset := offset(sourceID, every)
	slot = (now.UnixNano() - offset) / int64(every)
	turn := slot*int64(every) + offset
	return slot, now.UnixNano()-turn < int64(lookback)
}

// offset is where in each period the source's turn falls, in nanoseconds
// of Unix time modulo the period.
func offset(sourceID string, every time.Duration) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(sourceID))
	return int64(h.Sum64() % uint64(every)) //nolint:gosec // G115: every > 0 (checked at start), so the remainder fits an int64
}

// Run sweeps until ctx ends. Every processor runs one: the message id
// reconcile/<source>/<period> makes their publishes one.
func (s *Sweeper) Run(ctx context.Context) {
	tick := Tick(s.Every)
	wait := time.NewTimer(tick)
	defer wait.Stop()
	var covered time.Time // the start of the last sweep that went through
	for {
		select {
		case <-ctx.Done():
			return
		case <-wait.C:
		}
		now := time.Now()
		listing, err := s.sweep(ctx, now, Window(now, covered, tick, s.Every))
		if err == nil {
			covered = now
		} else if ctx.Err() == nil {
			s.Log.WithError(err).Warn("periodic reconcile: sweeping the claims failed")
		}
		wait.Reset(Pause(tick, listing, s.Every))
	}
}

// Pause is how long a sweeper waits after a sweep whose listing of the
// claims took took: a tick, or nine times the listing when that is longer,
// so that listing, which streams the whole claims bucket, takes at most a
// tenth of a processor's time however many claims there are; at most half
// a period, so a very slow listing still comes round twice a period.
// Enqueueing the due reconciles is not counted: it is work each turn needs
// once, whatever the pace of the sweeps. Window makes the longer gaps miss
// no turn.
func Pause(tick, took, every time.Duration) time.Duration {
	return min(max(tick, 9*took), every/2)
}

// Window is how far back a sweep at now looks for turns that came due:
// back to the start of the last sweep that went through (covered), so a
// long pause after a slow sweep, or a sweep that failed half way, misses no
// turn; at least two ticks, so every turn is seen by the
// sweeps that overlap it; at most a period, which holds every turn once.
func Window(now, covered time.Time, tick, every time.Duration) time.Duration {
	w := 2 * tick
	if !covered.IsZero() {
		w = max(w, now.Sub(covered))
	}
	return min(w, every)
}

// sweep enqueues the turns that came due within lookback before now, and
// reports how long listing the claims took.
func (s *Sweeper) sweep(ctx context.Context, now time.Time, lookback time.Duration) (listing time.Duration, err error) {
	claims, err := s.Claims.Claimed(ctx)
	listing = time.Since(now)
	if err != nil {
		return listing, err
	}
	for _, c := range claims {
		slot, due := Due(c.SourceID, s.Every, lookback, now)
		if !due {
			continue
		}
		m := work.Message{
			Kind: work.KindReconcile, SourceID: c.SourceID,
			Tenant: event.Tenant{OrgID: c.OrgID, AccountNumber: c.AccountNumber},
			Origin: "reconcile/" + c.SourceID + "/" + strconv.FormatInt(slot, 10),
		}
		duplicate, err := s.Enqueue(ctx, m)
		if err != nil {
			return listing, err
		}
		if !duplicate {
			s.Enqueued()
			s.Log.WithFields(logrus.Fields{"source_id": c.SourceID, "org_id": c.OrgID, "origin": m.Origin}).Info("periodic reconcile enqueued")
		}
	}
	return listing, nil
}
