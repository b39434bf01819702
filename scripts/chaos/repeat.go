package chaos

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cloudoreg/cloudoreg/shared/standin/faults"
	"github.com/cloudoreg/cloudoreg/shared/standin/rhsm"
	"github.com/cloudoreg/cloudoreg/shared/testkit"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// repeat-faults: the same sources fail twice, inside the work stream's
// duplicate window (WORK_DUPLICATE_WINDOW, 20m), each time for longer than
// RETRY_IN_PLACE, so each time they park and a parked retry must apply the
// customer's change. A retry whose message id repeated one of an earlier
// episode would be dropped by the stream as a duplicate and the second
// change never applied: the end states show it.

// repeatChanges are the two changes a target gets, one per episode, in
// turn over the targets. Each needs STS, so it parks while STS throttles,
// and the second always ends elsewhere than the first (another status, or
// another AWS account registered), so a dropped retry shows in the end state.
var repeatChanges = [][2]kind{
	{kindTrusted, kindTrusted},
	{kindDenied, kindTrusted},
	{kindTrusted, kindNoPolicy},
	{kindWrongExt, kindTrusted},
}

// repeatAccountPrefix starts the targets' AWS accounts; the workload's
// plan starts its own with the scenario's number.
const repeatAccountPrefix = 99

// repeatTarget is a source the scenario changes in both episodes.
type repeatTarget struct {
	src     *source
	changes [2]role
}

// parkCounts are the processors' parked-retry counters, summed.
type parkCounts struct{ parked, enqueued, duplicates float64 }

func (c parkCounts) minus(o parkCounts) parkCounts {
	return parkCounts{c.parked - o.parked, c.enqueued - o.enqueued, c.duplicates - o.duplicates}
}

func injectRepeatFaults(ctx context.Context, f *fault) error {
	nc, js, err := f.sys.inspector().connectNATS()
	if err != nil {
		return err
	}
	defer nc.Close()
	kv, err := js.KeyValue(ctx, parkedBucket)
	if err != nil {
		return fmt.Errorf("the parked-retries bucket: %w", err)
	}
	st, err := js.Stream(ctx, work.StreamName)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return err
	}
	window := info.Config.Duplicates
	targets, err := f.makeRepeatTargets(ctx, kv)
	if err != nil {
		return err
	}
	var first time.Time
	for ep := range 2 {
		if ep == 1 {
			if err := sleep(ctx, f.scale.Apart); err != nil {
				return err
			}
		}
		started, err := f.repeatEpisode(ctx, kv, targets, ep)
		if err != nil {
			return err
		}
		if ep == 0 {
			first = started
			continue
		}
		// Retries of both episodes must fall inside the window for the
		// stream to compare their message ids at all.
		apart := started.Sub(first)
		f.res.Figures = append(f.res.Figures, fmt.Sprintf("episode 2 began %s after episode 1, inside the work stream's %s duplicate window", apart.Round(time.Second), window))
		if apart >= window/2 {
			f.res.fail("the episodes were %s apart, not well inside the %s duplicate window", apart.Round(time.Second), window)
		}
	}
	return nil
}

// makeRepeatTargets creates the sources both episodes change (a quarter
// of the workload's size, at least 4) with trusted roles, and waits until
// they are available.
func (f *fault) makeRepeatTargets(ctx context.Context, kv jetstream.KeyValue) ([]repeatTarget, error) {
	pl := &planner{r: f.r, prefix: repeatAccountPrefix}
	n := max(4, f.scale.Sources/4)
	targets := make([]repeatTarget, n)
	initial := make([]role, n)
	for i := range targets {
		ch := repeatChanges[i%len(repeatChanges)]
		initial[i] = pl.role(kindTrusted)
		targets[i].changes = [2]role{pl.role(ch[0]), pl.role(ch[1])}
	}
	trust := f.trust
	trust.Roles = append(slices.Clone(f.trust.Roles), pl.trust.Roles...)
	if err := f.sys.setTrust(ctx, trust); err != nil {
		return nil, err
	}
	for i := range targets {
		s, err := f.drv.create(ctx, orgs[i%len(orgs)], fmt.Sprintf("chaos-repeat-%d", i), initial[i], "")
		if err != nil {
			return nil, fmt.Errorf("creating a repeat-faults source: %w", err)
		}
		targets[i].src = s
	}
	if why := waitFor(ctx, f.scale.Settle, func(ctx context.Context) string { return f.notApplied(ctx, kv, targets) }); why != "" {
		return nil, fmt.Errorf("the %d repeat-faults sources never became available: %s", n, why)
	}
	f.logf("%d sources created and available, to be changed in both fault episodes", n)
	return targets, nil
}

// repeatEpisode throttles STS, gives every target its change, ends the
// fault once every target has parked, and waits until the parked retries
// applied the changes. It returns when the fault began.
func (f *fault) repeatEpisode(ctx context.Context, kv jetstream.KeyValue, targets []repeatTarget, ep int) (time.Time, error) {
	before, err := f.parkCounts()
	if err != nil {
		return time.Time{}, err
	}
	w, err := kv.Watch(ctx, "source.*", jetstream.UpdatesOnly())
	if err != nil {
		return time.Time{}, err
	}
	defer func() { _ = w.Stop() }()
	if err := f.sys.setFault(ctx, "sts", &faults.Fault{Status: 400, Code: "Throttling"}); err != nil {
		return time.Time{}, err
	}
	started := time.Now()
	f.logf("episode %d: STS throttles (400 Throttling) until the %d sources changed now have parked", ep+1, len(targets))
	for _, t := range targets {
		if err := f.drv.patch(ctx, t.src, t.changes[ep]); err != nil {
			return started, fmt.Errorf("episode %d: patch: %w", ep+1, err)
		}
	}
	unparked := awaitParked(ctx, w, targets, f.scale.Settle)
	if err := f.sys.setFault(ctx, "sts", nil); err != nil {
		return started, err
	}
	if err := setLatency(ctx, f.sys); err != nil {
		return started, err
	}
	f.logf("episode %d: STS healthy again after %.1fs", ep+1, time.Since(started).Seconds())
	if len(unparked) > 0 {
		f.res.fail("episode %d: sources %v never parked while STS throttled for %s: the scenario did not test parked retries", ep+1, unparked, f.scale.Settle)
	}
	healthy := time.Now()
	why := waitFor(ctx, f.scale.Settle, func(ctx context.Context) string { return f.notApplied(ctx, kv, targets) })
	applied := fmt.Sprintf("changes applied %.1fs after the fault", time.Since(healthy).Seconds())
	if why != "" {
		f.res.fail("episode %d: the changes were not applied %s after the fault: %s", ep+1, f.scale.Settle, why)
		applied = fmt.Sprintf("changes NOT applied %s after the fault", f.scale.Settle)
	}
	after, err := f.parkCounts()
	if err != nil {
		return started, err
	}
	d, n := after.minus(before), float64(len(targets))
	if d.parked < n || d.enqueued < n {
		f.res.fail("episode %d: the processors parked %.0f and enqueued %.0f retries, fewer than the %d sources changed", ep+1, d.parked, d.enqueued, len(targets))
	}
	f.res.Figures = append(f.res.Figures, fmt.Sprintf("episode %d: %d of %d sources parked, %s; processors parked %.0f, enqueued %.0f retries, %.0f duplicates",
		ep+1, len(targets)-len(unparked), len(targets), applied, d.parked, d.enqueued, d.duplicates))
	return started, nil
}

// awaitParked reads parked-retry updates until every target has been
// parked, and returns the ids of those that were not within limit.
func awaitParked(ctx context.Context, w jetstream.KeyWatcher, targets []repeatTarget, limit time.Duration) []string {
	want := map[string]string{}
	for _, t := range targets {
		want["source."+t.src.ID] = t.src.ID
	}
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for len(want) > 0 {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return missingIDs(want)
			}
			if e != nil && e.Operation() == jetstream.KeyValuePut {
				delete(want, e.Key())
			}
		case <-deadline.C:
			return missingIDs(want)
		case <-ctx.Done():
			return missingIDs(want)
		}
	}
	return nil
}

func missingIDs(want map[string]string) []string {
	var ids []string
	for _, id := range want {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// notApplied says why the targets are not yet where their last change
// puts them ("": they are): still parked, or another status or RHSM
// registration than the change deserves.
func (f *fault) notApplied(ctx context.Context, kv jetstream.KeyValue, targets []repeatTarget) string {
	in := f.sys.inspector()
	var parked []string
	for _, t := range targets {
		_, err := kv.Get(ctx, "source."+t.src.ID)
		switch {
		case err == nil:
			parked = append(parked, t.src.ID)
		case !errors.Is(err, jetstream.ErrKeyNotFound) && !errors.Is(err, jetstream.ErrKeyDeleted):
			return "parked retries: " + err.Error()
		}
	}
	if len(parked) > 0 {
		return fmt.Sprintf("sources %s still parked", strings.Join(parked, ", "))
	}
	apps, err := in.apps(ctx)
	if err != nil {
		return err.Error()
	}
	regs, err := in.registrations(ctx)
	if err != nil {
		return err.Error()
	}
	model := make([]*source, len(targets))
	for i, t := range targets {
		model[i] = t.src
	}
	bySource := indexSources(model)
	ours := map[string][]rhsm.Account{}
	for org, accts := range regs {
		for _, a := range accts {
			if bySource[a.SourceID] != nil {
				ours[org] = append(ours[org], a)
			}
		}
	}
	var check Result
	checkEndStates(&check, evidence{model: model, apps: apps, regs: ours}, bySource)
	if len(check.Failures) > 0 {
		return fmt.Sprintf("%d of the changes not applied, first: %s", len(check.Failures), check.Failures[0])
	}
	return ""
}

// parkCounts sums the parked-retry counters of every processor (none is
// restarted in this scenario, so the counters only grow).
func (f *fault) parkCounts() (parkCounts, error) {
	var c parkCounts
	for _, port := range f.sys.sys.Ports().ProcessorMetrics {
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		for _, m := range []struct {
			name string
			into *float64
		}{
			{"cloudoreg_processor_parked_total", &c.parked},
			{"cloudoreg_processor_parked_retries_enqueued_total", &c.enqueued},
			{"cloudoreg_processor_parked_retries_duplicate_total", &c.duplicates},
		} {
			v, err := testkit.SumMetric(addr, m.name, "")
			if err != nil {
				return c, fmt.Errorf("processor metrics at %s: %w", addr, err)
			}
			*m.into += v
		}
	}
	return c, nil
}
