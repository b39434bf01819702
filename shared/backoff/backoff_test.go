package backoff

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

// ceiling is the delay before jitter: Base*2^(attempt-1) capped at Max.
func ceiling(p Policy, attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := float64(p.Base) * math.Pow(2, float64(attempt-1))
	if d > float64(p.Max) {
		return p.Max
	}
	return time.Duration(d)
}

const samples = 500

func TestDelayWithinEqualJitterBounds(t *testing.T) {
	policies := []Policy{
		{Base: 500 * time.Millisecond, Max: 15 * time.Second},
		{Base: 200 * time.Millisecond, Max: 5 * time.Second},
		{Base: 30 * time.Second, Max: 10 * time.Minute},
		{Base: 3 * time.Nanosecond, Max: 1000 * time.Nanosecond},
		{Base: time.Second, Max: time.Second},
	}
	for _, p := range policies {
		for attempt := -2; attempt <= 70; attempt++ {
			c := ceiling(p, attempt)
			for range samples / 10 {
				d := p.Delay(attempt)
				if d < c/2 || d > c {
					t.Fatalf("%+v attempt %d: delay %s outside [%s, %s]", p, attempt, d, c/2, c)
				}
			}
		}
	}
}

func TestDelayGrowsThenIsCapped(t *testing.T) {
	p := Policy{Base: 500 * time.Millisecond, Max: 15 * time.Second}
	// Below the cap the ranges of consecutive attempts touch but do not
	// overlap ([c/2, c] then [c, 2c]): every delay is at least every delay
	// of the attempt before.
	prevMax := time.Duration(0)
	for attempt := 1; attempt <= 5; attempt++ { // 0.5s 1s 2s 4s 8s, then capped at 15s
		lo, hi := time.Duration(math.MaxInt64), time.Duration(0)
		for range samples {
			d := p.Delay(attempt)
			lo, hi = min(lo, d), max(hi, d)
		}
		if lo < prevMax {
			t.Errorf("attempt %d: delay %s below the %s of attempt %d", attempt, lo, prevMax, attempt-1)
		}
		if hi <= prevMax {
			t.Errorf("attempt %d: delays did not grow (max %s)", attempt, hi)
		}
		prevMax = hi
	}
	for _, attempt := range []int{6, 7, 10, 50, 1000, math.MaxInt32, math.MaxInt} {
		for range samples / 10 {
			if d := p.Delay(attempt); d < p.Max/2 || d > p.Max {
				t.Fatalf("attempt %d: %s not capped at %s", attempt, d, p.Max)
			}
		}
	}
}

func TestDelayIsJittered(t *testing.T) {
	p := Policy{Base: time.Second, Max: time.Minute}
	seen := map[time.Duration]bool{}
	for range samples {
		seen[p.Delay(3)] = true
	}
	// 500 draws from 2s+1 nanosecond values: all equal would mean no jitter.
	if len(seen) < samples/2 {
		t.Errorf("only %d distinct delays in %d draws", len(seen), samples)
	}
}

func TestDelayEdgeCases(t *testing.T) {
	cases := []struct {
		name    string
		p       Policy
		attempt int
		lo, hi  time.Duration
	}{
		{"zero policy", Policy{}, 5, 0, 0},
		{"zero base", Policy{Max: time.Second}, 1000, 0, 0},
		{"zero base, huge attempt", Policy{Max: time.Second}, math.MaxInt, 0, 0},
		{"one nanosecond", Policy{Base: 1, Max: 1}, 3, 1, 1},
		{"base above max", Policy{Base: time.Minute, Max: time.Second}, 1, time.Second / 2, time.Second},
		{"max near the int64 limit", Policy{Base: time.Hour, Max: math.MaxInt64}, 40, math.MaxInt64 / 2, math.MaxInt64},
		{"max near the int64 limit, large attempt", Policy{Base: time.Hour, Max: math.MaxInt64}, 200, math.MaxInt64 / 2, math.MaxInt64},
		{"odd max", Policy{Base: 7 * time.Second, Max: 3*time.Hour + 1}, 100, (3*time.Hour + 1) / 2, 3*time.Hour + 1},
	}
	for _, tc := range cases {
		for range samples / 10 {
			if d := tc.p.Delay(tc.attempt); d < tc.lo || d > tc.hi {
				t.Fatalf("%s: %s outside [%s, %s]", tc.name, d, tc.lo, tc.hi)
			}
		}
	}
}

func TestSleepElapses(t *testing.T) {
	if err := Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := Sleep(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	if err := Sleep(context.Background(), -time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestSleepHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if time.Since(start) > time.Minute {
		t.Fatal("Sleep waited although the context was done")
	}

	// Cancelled while sleeping: the sleeper returns once the context ends.
	ctx, cancel = context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Sleep(ctx, time.Hour) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}

	dctx, dcancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer dcancel()
	if err := Sleep(dctx, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want context.DeadlineExceeded", err)
	}
}

func TestRetryUntilSuccess(t *testing.T) {
	calls, heard := 0, 0
	err := Policy{Base: time.Microsecond, Max: time.Microsecond}.Retry(context.Background(), func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	}, func(attempt int, err error) {
		heard++
		if attempt != heard || err == nil {
			t.Errorf("failure %d heard as attempt %d, %v", heard, attempt, err)
		}
	})
	if err != nil || calls != 3 || heard != 2 {
		t.Fatalf("err %v, %d calls, %d failures heard", err, calls, heard)
	}
}

func TestRetryStopsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := Policy{Base: time.Hour, Max: time.Hour}.Retry(ctx, func() error {
		calls++
		cancel()
		return errors.New("down")
	}, nil)
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("err %v after %d calls", err, calls)
	}
}
