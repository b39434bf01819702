package pipeline

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/status"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// TestDeadLetter: a failure for good is copied with its reason (internal
// when it has none) and the work ends dead-lettered; only a spent budget is
// then given up to the customer, after the copy; everything else passes,
// and a copy that fails hands the work back.
func TestDeadLetter(t *testing.T) {
	spent := budgetSpent(failure.Transient("sts", errors.New("throttled")), 5)
	pskSpent := budgetSpent(failure.Operator(failure.ReasonSourcesUnauthorized, "sources", errors.New("HTTP 401")), 5)
	refused := failure.DeadLetter(failure.ReasonSourcesRefused, "sources", errors.New("HTTP 400"))
	customers := failure.Permanent(status.CG3002, "sts", errors.New("denied"))
	handBack := fmt.Errorf("%w: %w", errParkingFailed, errKV)
	notTold := errors.New("no application to report on: the source has no cloud-meter application")
	gaveUp := reconcile.Outcome{State: reconcile.StateUnavailable, Code: status.CG3000, ApplicationID: "21", Reason: "retry budget spent", Cause: spent}

	cases := []struct {
		name    string
		in      error
		ctx     context.Context
		copyErr error
		giveUp  error
		reason  failure.DeadLetterReason // copied with ("" not copied)
		gives   bool                     // giveUp was called
		handBk  bool
	}{
		{"an outcome", nil, nil, nil, nil, "", false, false},
		{"transient", failure.Transient("sts", errors.New("throttled")), nil, nil, nil, "", false, false},
		{"handed back by Park", handBack, nil, nil, nil, "", false, false},
		{"ctx ended", refused, cancelled(), nil, nil, "", false, false},
		{"refused by Sources", refused, nil, nil, nil, failure.ReasonSourcesRefused, false, false},
		{"a customer's failure returned", customers, nil, nil, nil, failure.ReasonInternal, false, false},
		{"budget spent", spent, nil, nil, nil, failure.ReasonBudgetSpent, true, false},
		{"budget spent, the customer not told", spent, nil, nil, notTold, failure.ReasonBudgetSpent, true, false},
		{"budget spent on a refused PSK", pskSpent, nil, nil, nil, failure.ReasonSourcesUnauthorized, false, false},
		{"the copy fails", spent, nil, errKV, nil, failure.ReasonBudgetSpent, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			var steps []string
			copyMsg := func(_ context.Context, reason failure.DeadLetterReason, cause error) error {
				steps = append(steps, "copy "+string(reason))
				if !errors.Is(cause, tc.in) {
					t.Errorf("copied with cause %v, want %v", cause, tc.in)
				}
				return tc.copyErr
			}
			giveUp := func(_ context.Context, m work.Message, cause error) (reconcile.Outcome, error) {
				steps = append(steps, "give up")
				if m != message(2) || !errors.Is(cause, tc.in) {
					t.Errorf("gave up %+v for %v", m, cause)
				}
				return gaveUp, tc.giveUp
			}
			in := reconcile.Outcome{State: reconcile.StateAvailable, Attempts: 3}
			if tc.in != nil {
				in = reconcile.Outcome{Attempts: 3}
			}
			o, err := DeadLetter(copyMsg, giveUp)(returns(in, tc.in).handle)(ctx, message(2))

			var want []string
			if tc.reason != "" {
				want = append(want, "copy "+string(tc.reason))
			}
			if tc.gives {
				want = append(want, "give up")
			}
			if fmt.Sprint(steps) != fmt.Sprint(want) {
				t.Errorf("steps %v, want %v", steps, want)
			}
			var dead *DeadLettered
			switch {
			case tc.handBk:
				if !errors.Is(err, ErrHandBack) || !errors.Is(err, errKV) || errors.Is(err, ErrDeadLettered) || o != (reconcile.Outcome{Attempts: 3}) {
					t.Errorf("%+v, %v, want the work handed back", o, err)
				}
			case tc.reason == "":
				if !errors.Is(err, tc.in) || o != in {
					t.Errorf("%+v, %v, want %+v, %v passed", o, err, in, tc.in)
				}
			case !errors.As(err, &dead) || !errors.Is(err, ErrDeadLettered) || dead.Reason != tc.reason || !errors.Is(dead.Cause, tc.in) || !errors.Is(dead.NotTold, tc.giveUp):
				t.Errorf("error %v, want dead-lettered as %s (not told: %v)", err, tc.reason, tc.giveUp)
			case tc.gives:
				want := gaveUp
				want.Attempts = 3
				if o != want {
					t.Errorf("outcome %+v, want GiveUp's %+v", o, want)
				}
			default:
				want := reconcile.Outcome{State: reconcile.StateDeadLettered, ApplicationID: "21", Cause: tc.in, Reason: string(tc.reason), Attempts: 3}
				if o != want {
					t.Errorf("outcome %+v, want %+v", o, want)
				}
			}
		})
	}
}
