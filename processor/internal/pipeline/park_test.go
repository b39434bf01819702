package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/shared/backoff"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// TestPark: what reaches Park after the in-place retries decides: an outcome
// or a failure for good passes (and clears the source's parked retry), a
// transient failure parks the source while the budget lasts and becomes a
// failure for good, with its dead-letter reason, once it is spent; a park
// that cannot be stored hands the work back.
func TestPark(t *testing.T) {
	const budget = time.Hour
	parkBackoff := backoff.Policy{Base: time.Minute, Max: time.Minute}
	sts := failure.Transient("sts", errors.New("throttled"))
	psk := failure.Operator(failure.ReasonSourcesUnauthorized, "sources", errors.New("HTTP 401"))
	awsCredentials := failure.Transient("sts", errors.Join(errors.New("InvalidClientTokenId"), failure.ErrConfiguration))
	unclassified := errors.New("bug")
	refused := failure.DeadLetter(failure.ReasonSourcesRefused, "sources", errors.New("HTTP 400"))
	available := reconcile.Outcome{State: reconcile.StateAvailable, Attempts: 2}

	fresh := message(0)
	carried := message(4)
	carried.FirstFailure = now.Add(-budget / 2)
	spent := message(4)
	spent.FirstFailure = now.Add(-budget)

	type want struct {
		parked  bool   // a retry was parked, the work is done for now
		cleared bool   // the source's parked retry was cleared
		reason  string // of a failure for good made here ("" none)
		target  string
		handBk  bool
		passed  error // returned as it came
	}
	cases := []struct {
		name string
		m    work.Message
		in   result
		ctx  context.Context
		park error
		want want
	}{
		{"an outcome", fresh, result{available, nil}, nil, nil, want{cleared: true}},
		{"a failure for good", fresh, result{reconcile.Outcome{Attempts: 1}, refused}, nil, nil, want{cleared: true, passed: refused}},
		{"transient, first failure", fresh, result{reconcile.Outcome{Attempts: 3}, sts}, nil, nil, want{parked: true}},
		{"transient, budget left", carried, result{reconcile.Outcome{Attempts: 3}, sts}, nil, nil, want{parked: true}},
		{"transient, budget spent", spent, result{reconcile.Outcome{Attempts: 3}, sts}, nil, nil, want{cleared: true, reason: "budget_spent", target: "sts"}},
		{"a refused PSK, budget spent", spent, result{reconcile.Outcome{Attempts: 3}, psk}, nil, nil, want{cleared: true, reason: "sources_unauthorized", target: "sources"}},
		{"Cloudoreg's AWS credentials, budget spent", spent, result{reconcile.Outcome{Attempts: 3}, awsCredentials}, nil, nil, want{cleared: true, reason: "configuration", target: "sts"}},
		{"unclassified, budget spent", spent, result{reconcile.Outcome{Attempts: 3}, unclassified}, nil, nil, want{cleared: true, reason: "budget_spent", target: "unknown"}},
		{"parking fails", fresh, result{reconcile.Outcome{Attempts: 3}, sts}, nil, errKV, want{handBk: true}},
		{"ctx ended", fresh, result{reconcile.Outcome{Attempts: 1}, context.Canceled}, cancelled(), nil, want{passed: context.Canceled}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			store := &parkStore{err: tc.park}
			h := returns(tc.in.o, tc.in.err)
			o, err := Park(store, budget, parkBackoff, func() time.Time { return now })(h.handle)(ctx, tc.m)

			if got := len(store.cleared) == 1 && store.cleared[0] == "9"; got != tc.want.cleared || len(store.cleared) > 1 {
				t.Errorf("cleared %v, want cleared %v", store.cleared, tc.want.cleared)
			}
			switch {
			case tc.want.parked:
				wantParked(t, store, tc.m, tc.in, o, err)
			case tc.want.reason != "":
				if failure.IsTransient(err) || string(failure.ReasonOf(err)) != tc.want.reason || failure.TargetOf(err) != tc.want.target ||
					!errors.Is(err, reconcile.ErrBudgetSpent) || !errors.Is(err, tc.in.err) || !strings.Contains(err.Error(), "after 7 attempts") {
					t.Errorf("budget spent: %v (transient %v, reason %q, target %q), want a failure for good with %s of %s after 7 attempts",
						err, failure.IsTransient(err), failure.ReasonOf(err), failure.TargetOf(err), tc.want.reason, tc.want.target)
				}
				if o != tc.in.o {
					t.Errorf("outcome %+v, want %+v", o, tc.in.o)
				}
			case tc.want.handBk:
				if !errors.Is(err, ErrHandBack) || !errors.Is(err, errKV) || errors.Is(err, ErrDeadLettered) || o.State != "" || o.Attempts != 3 {
					t.Errorf("park failed: %+v, %v, want the work handed back", o, err)
				}
			default:
				if !errors.Is(err, tc.want.passed) || o != tc.in.o {
					t.Errorf("%+v, %v, want %+v, %v passed", o, err, tc.in.o, tc.want.passed)
				}
			}
			if !tc.want.parked && len(store.parked) > 0 {
				t.Errorf("parked %+v", store.parked)
			}
		})
	}
}

// wantParked: one retry parked after the park backoff, carrying the work
// and the budget so far; the work is done for now, as a parked outcome.
func wantParked(t *testing.T, store *parkStore, m work.Message, in result, o reconcile.Outcome, err error) {
	t.Helper()
	if err != nil || len(store.parked) != 1 {
		t.Fatalf("%v, parked %+v, want one retry parked", err, store.parked)
	}
	p := store.parked[0]
	first := m.FirstFailure
	if first.IsZero() {
		first = now
	}
	w := m
	w.Attempt, w.FirstFailure = m.Attempt+in.o.Attempts, first
	if p.Work != w {
		t.Errorf("parked work %+v, want %+v", p.Work, w)
	}
	if d := p.Due.Sub(now); d < 30*time.Second || d > time.Minute || p.Due.Location() != time.UTC {
		t.Errorf("due in %v (%v), want after the park backoff, in UTC", d, p.Due)
	}
	want := reconcile.Outcome{State: reconcile.StateParked, ApplicationID: m.ApplicationID, Cause: in.err, Reason: in.err.Error(), Attempts: in.o.Attempts, RetryAt: p.Due}
	if o != want {
		t.Errorf("outcome %+v, want %+v", o, want)
	}
}

// The budget is measured from the first failure the work carries, so a
// parked retry that fails again keeps counting towards it, and so do the
// attempts.
func TestParkBudgetRunsFromTheFirstFailure(t *testing.T) {
	store := &parkStore{}
	var clock time.Time
	park := Park(store, time.Hour, backoff.Policy{Base: time.Second, Max: time.Second}, func() time.Time { return clock })
	h := returns(reconcile.Outcome{Attempts: 1}, failure.Transient("rhsm", errors.New("503")))
	m := message(0)
	for clock = now; ; clock = clock.Add(10 * time.Minute) {
		_, err := park(h.handle)(context.Background(), m)
		if err != nil {
			if clock.Sub(now) != time.Hour || failure.ReasonOf(err) != failure.ReasonBudgetSpent {
				t.Errorf("gave up after %v with %v, want after the hour's budget as budget_spent", clock.Sub(now), err)
			}
			break
		}
		m = store.parked[len(store.parked)-1].Work
		if !m.FirstFailure.Equal(now) || m.Attempt != len(store.parked) {
			t.Fatalf("parked retry %d carries %+v, want the first failure and %d attempts", len(store.parked), m, len(store.parked))
		}
	}
	if len(store.parked) != 6 {
		t.Errorf("%d parked retries within the hour, want 6", len(store.parked))
	}
}
