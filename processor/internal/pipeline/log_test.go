package pipeline

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/status"
)

// TestLog: one line per message, at the level and with the text operators
// (and the end-to-end and chaos suites) look for, naming the attempts over
// every delivery; nothing for work cut short by ctx (the transport says it
// handed it back).
func TestLog(t *testing.T) {
	sts := failure.Transient("sts", errors.New("throttled"))
	denied := failure.Permanent(status.CG3002, "sts", errors.New("denied"))
	spent := budgetSpent(sts, 5)
	pskSpent := budgetSpent(failure.Operator(failure.ReasonSourcesUnauthorized, "sources", errors.New("HTTP 401")), 5)
	refused := failure.DeadLetter(failure.ReasonSourcesRefused, "sources", errors.New("HTTP 400"))
	notTold := errors.New("no application to report on: Sources, which names it, is the failing dependency")
	retryAt := time.Date(2026, 3, 1, 12, 5, 0, 0, time.UTC)
	cases := []struct {
		name   string
		in     result
		ctx    context.Context
		level  logrus.Level
		text   string
		fields logrus.Fields // besides attempts
		err    error         // logged
	}{
		{"available", result{reconcile.Outcome{State: reconcile.StateAvailable, Attempts: 1}, nil}, nil,
			logrus.InfoLevel, "source reconciled", logrus.Fields{"state": reconcile.StateAvailable}, nil},
		{"unavailable", result{reconcile.Outcome{State: reconcile.StateUnavailable, Code: status.CG3002, Cause: denied, Attempts: 1}, nil}, nil,
			logrus.InfoLevel, "source reconciled", logrus.Fields{"state": reconcile.StateUnavailable, "code": status.CG3002, "cause": denied.Error()}, nil},
		{"parked", result{reconcile.Outcome{State: reconcile.StateParked, Cause: sts, RetryAt: retryAt, Attempts: 1}, nil}, nil,
			logrus.WarnLevel, "transient failure persists: source parked, retry scheduled", logrus.Fields{"retry_at": retryAt}, sts},
		{"budget spent, told", result{reconcile.Outcome{State: reconcile.StateUnavailable, Code: status.CG3000, Attempts: 1}, &DeadLettered{Reason: failure.ReasonBudgetSpent, Cause: spent}}, nil,
			logrus.ErrorLevel, "retry budget spent, message dead-lettered: reported CG3000", nil, spent},
		{"budget spent, not told", result{reconcile.Outcome{State: reconcile.StateUnavailable, Code: status.CG3000, Attempts: 1}, &DeadLettered{Reason: failure.ReasonBudgetSpent, Cause: spent, NotTold: notTold}}, nil,
			logrus.ErrorLevel, "retry budget spent, message dead-lettered: " + notTold.Error(), nil, spent},
		{"budget spent on an operator's problem", result{reconcile.Outcome{State: reconcile.StateDeadLettered, Attempts: 1}, &DeadLettered{Reason: failure.ReasonSourcesUnauthorized, Cause: pskSpent}}, nil,
			logrus.ErrorLevel, "retry budget spent on a problem an operator must fix: message dead-lettered, nothing reported to the customer; replay it after the fix",
			logrus.Fields{"reason": failure.ReasonSourcesUnauthorized}, pskSpent},
		{"dead-lettered at once", result{reconcile.Outcome{State: reconcile.StateDeadLettered, Attempts: 1}, &DeadLettered{Reason: failure.ReasonSourcesRefused, Cause: refused}}, nil,
			logrus.WarnLevel, "work failed for good: message dead-lettered, nothing reported to the customer", logrus.Fields{"reason": failure.ReasonSourcesRefused}, refused},
		{"dead-lettering failed", result{reconcile.Outcome{Attempts: 1}, fmt.Errorf("%w: %w", errDeadLetteringFailed, errKV)}, nil,
			logrus.ErrorLevel, "dead-lettering failed; handing the message back", nil, errKV},
		{"parking failed", result{reconcile.Outcome{Attempts: 1}, fmt.Errorf("%w: %w", errParkingFailed, errKV)}, nil,
			logrus.WarnLevel, "parking failed; the message will be redelivered", nil, errKV},
		{"ctx ended", result{reconcile.Outcome{Attempts: 1}, context.Canceled}, cancelled(), 0, "", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			log, hook := testLog()
			o, err := Log(log)(returns(tc.in.o, tc.in.err).handle)(ctx, message(4))
			if o != tc.in.o || !errors.Is(err, tc.in.err) {
				t.Errorf("%+v, %v, want %+v, %v passed", o, err, tc.in.o, tc.in.err)
			}
			if tc.text == "" {
				if len(hook.got) != 0 {
					t.Errorf("logged %v", hook.got)
				}
				return
			}
			if len(hook.got) != 1 {
				t.Fatalf("%d lines, want one", len(hook.got))
			}
			e := hook.got[0]
			if e.Level != tc.level || e.Message != tc.text {
				t.Errorf("%v %q, want %v %q", e.Level, e.Message, tc.level, tc.text)
			}
			want := logrus.Fields{"attempts": 5}
			for k, v := range tc.fields {
				want[k] = v
			}
			logged, _ := e.Data[logrus.ErrorKey].(error)
			delete(e.Data, logrus.ErrorKey)
			if fmt.Sprint(e.Data) != fmt.Sprint(want) {
				t.Errorf("fields %v, want %v", e.Data, want)
			}
			if !errors.Is(logged, tc.err) {
				t.Errorf("logged error %v, want %v", logged, tc.err)
			}
		})
	}
}
