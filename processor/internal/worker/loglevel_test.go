package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/processor/internal/metrics"
	"github.com/cloudoreg/cloudoreg/processor/internal/reconcile"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// levels records the level of every log entry.
type levels struct {
	mu  sync.Mutex
	got []logrus.Level
}

func (l *levels) Levels() []logrus.Level { return logrus.AllLevels }

func (l *levels) Fire(e *logrus.Entry) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, e.Level)
	return nil
}

// flaky fails transiently with err a number of times, then succeeds.
type flaky struct {
	err  error
	left int
}

func (f *flaky) Reconcile(context.Context, work.Message) (reconcile.Outcome, error) {
	if f.left > 0 {
		f.left--
		return reconcile.Outcome{}, f.err
	}
	return reconcile.Outcome{State: reconcile.StateAvailable}, nil
}

func (f *flaky) ApplicationID(context.Context, work.Message) (string, error) { return "", nil }

// A transient failure that Cloudoreg's own configuration causes (its AWS
// credentials rejected, for one) is retried like any other, but logged as an
// error: an operator has to act. Other transient failures stay warnings.
func TestConfigurationFailuresAreRetriedLoudly(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want logrus.Level
	}{
		{"configuration", failure.Transient("sts", fmt.Errorf("credentials rejected: %w", failure.ErrConfiguration)), logrus.ErrorLevel},
		{"other", failure.Transient("sts", errors.New("throttled")), logrus.WarnLevel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := logrus.New()
			log.SetOutput(io.Discard)
			hook := &levels{}
			log.AddHook(hook)
			w := New(testConfig(), nil, &flaky{err: tc.err, left: 2}, &nopReporter{}, nil, nil, metrics.New(), logrus.NewEntry(log))
			if _, attempts, err := w.attempt(context.Background(), logrus.NewEntry(log), msg("1", 1)); err != nil || attempts != 3 {
				t.Fatalf("attempt: %d attempts, %v (want success on the third)", attempts, err)
			}
			if len(hook.got) != 2 || hook.got[0] != tc.want || hook.got[1] != tc.want {
				t.Fatalf("log levels %v, want two at %v", hook.got, tc.want)
			}
		})
	}
}
