package pipeline

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/processor/internal/metrics"
	"github.com/cloudoreg/cloudoreg/processor/internal/outcomes"
	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// Outcomes keeps each source's last outcome record.
type Outcomes interface {
	Get(ctx context.Context, sourceID string) (outcomes.Record, error)
	Put(ctx context.Context, sourceID string, r outcomes.Record) error
}

// Record writes the source's outcome record for work that ended somewhere
// (not for work handed back), so an operator can ask what happened to a
// source. A periodic reconcile's outcome is first compared with the record
// it replaces and what it repaired is counted on repairs. Work that changed
// nothing of the source does not replace the record of what Cloudoreg did
// (see replaces). A failed read or write is logged: the work itself is done.
func Record(store Outcomes, repairs *prometheus.CounterVec, log *logrus.Entry) Wrapper {
	return func(next Handler) Handler {
		return func(ctx context.Context, m work.Message) (reconcile.Outcome, error) {
			o, err := next(ctx, m)
			if handedBack(ctx) || o.State == "" {
				return o, err
			}
			periodic := err == nil && m.Kind == work.KindReconcile && o.State != reconcile.StateParked
			var prev outcomes.Record
			var gerr error
			if periodic || o.State == reconcile.StateNotOurs {
				prev, gerr = store.Get(ctx, m.SourceID)
			}
			if periodic {
				countRepairs(repairs, log, prev, o) // an unreadable record counts as none
			}
			if o.State == reconcile.StateNotOurs && gerr != nil && !errors.Is(gerr, outcomes.ErrNotFound) {
				log.WithError(gerr).Warn("reading the outcome record failed: not replaced")
				return o, err
			}
			if !replaces(o.State, prev.State, gerr == nil) {
				return o, err
			}
			r := outcomes.Record{
				OrgID: m.Tenant.OrgID, State: string(o.State), Code: string(o.Code), Reason: o.Reason,
				ApplicationID: o.ApplicationID, AccountID: o.AccountID, Attempts: m.Attempt + o.Attempts,
				LastEvent: m.Kind, Origin: m.Origin, Time: time.Now().UTC(),
			}
			if perr := store.Put(ctx, m.SourceID, r); perr != nil {
				log.WithError(perr).Warn("recording the outcome failed")
			}
			return o, err
		}
	}
}

// replaces says whether an outcome in state s may replace the source's
// record (in state prev, if found), so that work that changed nothing
// cannot hide what Cloudoreg last did for the source:
//   - other_org: the work's tenant does not own the source; the record, and
//     the org that may read it through the status API, stay the owner's;
//   - not_ours: an event that does not concern the cloud-meter application
//     (another application's credential destroyed, the credential of a
//     source already removed) keeps an available, unavailable, removed or
//     paused record; it is recorded for a source without one, or whose
//     record said only that work was in progress (retrying, dead-lettered).
func replaces(s reconcile.State, prev string, found bool) bool {
	switch s {
	case reconcile.StateOtherOrg:
		return false
	case reconcile.StateNotOurs:
		p := reconcile.State(prev)
		return !found || p == reconcile.StateParked || p == reconcile.StateDeadLettered
	}
	return true
}

// countRepairs counts what a periodic reconcile repaired, by comparing its
// outcome with the source's last recorded one, prev (what the events before
// it left; no record counts as anything else):
//   - removed: it ends removed and the record did not say removed (the
//     source held a claim, so a registration was left behind);
//   - re-registered: it ends available and the record did not say
//     available with the same AWS account;
//   - status re-sent: it ends available or unavailable and the record said
//     another state or code (the customer saw something else).
func countRepairs(counter *prometheus.CounterVec, log *logrus.Entry, prev outcomes.Record, o reconcile.Outcome) {
	var repairs []string
	if o.State == reconcile.StateRemoved && prev.State != string(reconcile.StateRemoved) {
		repairs = append(repairs, metrics.RepairRemoved)
	}
	if o.State == reconcile.StateAvailable && (prev.State != string(o.State) || prev.AccountID != o.AccountID) {
		repairs = append(repairs, metrics.RepairReregistered)
	}
	reported := o.State == reconcile.StateAvailable || o.State == reconcile.StateUnavailable
	if reported && (prev.State != string(o.State) || prev.Code != string(o.Code)) {
		repairs = append(repairs, metrics.RepairStatusResent)
	}
	for _, r := range repairs {
		counter.WithLabelValues(r).Inc()
	}
	if len(repairs) > 0 {
		log.WithFields(logrus.Fields{"repairs": repairs, "recorded_state": prev.State, "recorded_code": prev.Code}).Warn("periodic reconcile repaired what an event had left")
	}
}
