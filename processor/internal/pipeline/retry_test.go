package pipeline

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/processor/internal/metrics"
	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/shared/backoff"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/status"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// TestChain: ws[0] is outermost, and h is called inside all of them.
func TestChain(t *testing.T) {
	var order []string
	named := func(name string) Wrapper {
		return func(next Handler) Handler {
			return func(ctx context.Context, m work.Message) (reconcile.Outcome, error) {
				order = append(order, name+" in")
				o, err := next(ctx, m)
				order = append(order, name+" out")
				return o, err
			}
		}
	}
	h := func(context.Context, work.Message) (reconcile.Outcome, error) {
		order = append(order, "handler")
		return reconcile.Outcome{State: reconcile.StateAvailable}, nil
	}
	o, err := Chain(h, named("outer"), named("middle"), named("inner"))(context.Background(), message(0))
	want := "[outer in middle in inner in handler inner out middle out outer out]"
	if fmt.Sprint(order) != want || err != nil || o.State != reconcile.StateAvailable {
		t.Errorf("order %v (%+v, %v), want %s", order, o, err, want)
	}
	if o, err := Chain(h)(context.Background(), message(0)); err != nil || o.State != reconcile.StateAvailable {
		t.Errorf("no wrappers: %+v, %v", o, err)
	}
}

// TestRetryInPlace: only transient failures are retried (an unclassified
// error counts as one), with observe told of each retry, until success,
// another failure, the end of the window or of ctx; the outcome says how
// many attempts were made.
func TestRetryInPlace(t *testing.T) {
	sts := failure.Transient("sts", errors.New("throttled"))
	denied := failure.Permanent(status.CG3002, "sts", errors.New("denied"))
	ok := result{reconcile.Outcome{State: reconcile.StateAvailable}, nil}
	fast := backoff.Policy{Base: time.Millisecond, Max: 2 * time.Millisecond}
	cases := []struct {
		name     string
		results  []result
		window   time.Duration
		attempts int
		err      error
	}{
		{"success at once", []result{ok}, time.Minute, 1, nil},
		{"success after two transient failures", []result{{err: sts}, {err: sts}, ok}, time.Minute, 3, nil},
		{"an unclassified failure is retried", []result{{err: errors.New("bug")}, ok}, time.Minute, 2, nil},
		{"a permanent failure is not retried", []result{{err: denied}}, time.Minute, 1, denied},
		{"a failure after a retry ends it", []result{{err: sts}, {err: denied}}, time.Minute, 2, denied},
		{"a window shorter than the first delay", []result{{err: sts}}, 0, 1, sts},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := &inner{results: tc.results}
			var observed []int
			retry := RetryInPlace(tc.window, fast, func(err error, n int) {
				if !errors.Is(err, tc.results[n-1].err) {
					t.Errorf("observed %v at attempt %d, want %v", err, n, tc.results[n-1].err)
				}
				observed = append(observed, n)
			})
			o, err := retry(h.handle)(context.Background(), message(0))
			if !errors.Is(err, tc.err) {
				t.Errorf("error %v, want %v", err, tc.err)
			}
			if o.Attempts != tc.attempts || h.calls != tc.attempts {
				t.Errorf("outcome attempts %d, calls %d, want %d", o.Attempts, h.calls, tc.attempts)
			}
			if want := tc.attempts - 1; len(observed) != want {
				t.Errorf("observed retries %v, want %d", observed, want)
			}
		})
	}
}

// TestRetryInPlaceStopsAtTheWindow: a failure that persists is retried
// while the next delay fits the window, then returned as it is.
func TestRetryInPlaceStopsAtTheWindow(t *testing.T) {
	sts := failure.Transient("sts", errors.New("throttled"))
	h := returns(reconcile.Outcome{}, sts)
	retries := 0
	started := time.Now()
	o, err := RetryInPlace(50*time.Millisecond, backoff.Policy{Base: 4 * time.Millisecond, Max: 8 * time.Millisecond}, func(error, int) { retries++ })(h.handle)(context.Background(), message(0))
	if !errors.Is(err, sts) || o.Attempts < 3 || o.Attempts != h.calls || retries != o.Attempts-1 {
		t.Errorf("%v after %d attempts (%d calls, %d retries observed)", err, o.Attempts, h.calls, retries)
	}
	if elapsed := time.Since(started); elapsed > time.Second {
		t.Errorf("retried for %v, beyond the window", elapsed)
	}
}

// TestRetryInPlaceEndsWithCtx: a retry's delay ends with ctx, which is
// returned; no attempt is made after.
func TestRetryInPlaceEndsWithCtx(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	h := returns(reconcile.Outcome{}, failure.Transient("rhsm", errors.New("503")))
	retry := RetryInPlace(time.Hour, backoff.Policy{Base: time.Hour, Max: time.Hour}, func(error, int) { cancel() })
	o, err := retry(h.handle)(ctx, message(0))
	if !errors.Is(err, context.Canceled) || h.calls != 1 || o.Attempts != 1 {
		t.Errorf("%v after %d calls (attempts %d), want the cancellation after one", err, h.calls, o.Attempts)
	}
	// Already ended: the failure is returned without a retry.
	h = returns(reconcile.Outcome{}, failure.Transient("rhsm", errors.New("503")))
	if _, err := retry(h.handle)(cancelled(), message(0)); !failure.IsTransient(err) || h.calls != 1 {
		t.Errorf("%v after %d calls", err, h.calls)
	}
}

// A transient failure that Cloudoreg's own configuration causes (its AWS
// credentials rejected, for one) is retried like any other, but logged as an
// error: an operator has to act. Other transient failures stay warnings.
// Every retry is counted by target.
func TestConfigurationFailuresAreRetriedLoudly(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want logrus.Level
		text string
	}{
		{"configuration", failure.Transient("sts", fmt.Errorf("credentials rejected: %w", failure.ErrConfiguration)), logrus.ErrorLevel,
			"transient failure caused by Cloudoreg's configuration, retrying in place"},
		{"other", failure.Transient("sts", errors.New("throttled")), logrus.WarnLevel, "transient failure, retrying in place"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log, hook := testLog()
			m := metrics.New()
			h := &inner{results: []result{{err: tc.err}, {err: tc.err}, {o: reconcile.Outcome{State: reconcile.StateAvailable}}}}
			retry := RetryInPlace(time.Minute, backoff.Policy{Base: time.Millisecond, Max: time.Millisecond}, ObserveRetries(m, log))
			if o, err := retry(h.handle)(context.Background(), message(0)); err != nil || o.Attempts != 3 {
				t.Fatalf("attempt: %d attempts, %v (want success on the third)", o.Attempts, err)
			}
			if len(hook.got) != 2 {
				t.Fatalf("%d log entries, want two", len(hook.got))
			}
			for i, e := range hook.got {
				logged, _ := e.Data[logrus.ErrorKey].(error)
				if e.Level != tc.want || e.Message != tc.text || e.Data["attempt"] != i+1 || !errors.Is(logged, tc.err) {
					t.Errorf("entry %d: %v %q %v, want %v %q", i, e.Level, e.Message, e.Data, tc.want, tc.text)
				}
			}
			if n := counterValue(m.Retries.WithLabelValues("sts")); n != 2 {
				t.Errorf("retries_total{target=sts} = %v, want 2", n)
			}
		})
	}
}
