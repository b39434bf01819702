package periodic

import (
	"strconv"
	"testing"
	"time"

	"math/rand/v2"
)

// TestEachSourceComesDueOncePerPeriodSpreadOut: walking through three
// periods in steps of one tick, every source comes due exactly once per
// period (seen by at least one sweep, and by each sweep with the same
// period number), and the turns of many sources spread over the period.
func TestEachSourceComesDueOncePerPeriodSpreadOut(t *testing.T) {
	for _, every := range []time.Duration{2 * time.Second, time.Hour, 24 * time.Hour} {
		tick := Tick(every)
		start := time.Unix(1_800_000_000, 0)
		const sources = 500
		slots := map[string]map[int64]bool{}
		buckets := make([]int, 10)
		for now := start; now.Before(start.Add(3 * every)); now = now.Add(tick) {
			for i := 1; i <= sources; i++ {
				id := strconv.Itoa(i)
				slot, due := Due(id, every, 2*tick, now)
				if !due {
					continue
				}
				if slots[id] == nil {
					slots[id] = map[int64]bool{}
				}
				if !slots[id][slot] && now.Before(start.Add(every)) {
					turn := now.Sub(start) * 10 / every
					buckets[min(int(turn), 9)]++
				}
				slots[id][slot] = true
			}
		}
		for i := 1; i <= sources; i++ {
			if n := len(slots[strconv.Itoa(i)]); n < 3 || n > 4 {
				t.Errorf("every %s: source %d came due in %d periods over 3 periods", every, i, n)
			}
		}
		for b, n := range buckets {
			if n < sources/10/2 || n > sources/10*2 {
				t.Errorf("every %s: %d of %d sources came due in the %d. tenth of the period: not spread (%v)", every, n, sources, b+1, buckets)
				break
			}
		}
	}
}

// TestNoTurnIsMissedBySlowOrFailedSweeps: whatever the gaps between sweeps
// (from a tick to the longest Pause, half a period) and whichever sweeps
// fail, every turn that falls between the first sweep and the last
// successful one is seen by the first successful sweep after it; when
// failures kept the successful sweeps more than a period apart, that sweep
// sees the source with its latest turn instead (one reconcile then stands
// for the turns of the gap).
func TestNoTurnIsMissedBySlowOrFailedSweeps(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	every := 10 * time.Minute
	tick := Tick(every)
	start := time.Unix(1_800_000_000, 0)
	type sweep struct {
		at, prev time.Time
		due      map[string]int64 // source -> the period it was enqueued for
	}
	for run := 0; run < 50; run++ {
		const sources = 300
		var sweeps []sweep
		now, covered := start, time.Time{}
		for now.Before(start.Add(3 * every)) {
			gap := tick * time.Duration(1+rng.IntN(6))
			if rng.IntN(5) == 0 { // a pause after a slow sweep
				gap = Pause(tick, time.Duration(rng.Int64N(int64(every))), every)
			}
			now = now.Add(gap)
			if rng.IntN(4) == 0 {
				continue // this sweep failed: it covers nothing
			}
			sw := sweep{at: now, prev: covered, due: map[string]int64{}}
			w := Window(now, covered, tick, every)
			for i := 1; i <= sources; i++ {
				id := strconv.Itoa(i)
				if slot, due := Due(id, every, w, now); due {
					sw.due[id] = slot
				}
			}
			sweeps = append(sweeps, sw)
			covered = now
		}
		if len(sweeps) < 2 {
			continue
		}
		first, last := sweeps[0].at, sweeps[len(sweeps)-1].at
		for i := 1; i <= sources; i++ {
			id := strconv.Itoa(i)
			for turn := firstTurn(id, every, first); !turn.After(last); turn = turn.Add(every) {
				slot, _ := Due(id, every, time.Nanosecond, turn)
				k := 0
				for sweeps[k].at.Before(turn) {
					k++
				}
				sw := sweeps[k]
				got, ok := sw.due[id]
				switch {
				case sw.at.Sub(sw.prev) <= every && (!ok || got != slot):
					t.Fatalf("run %d: source %s's turn at %s (period %d) was missed by the sweep at %s", run, id, turn.Sub(start), slot, sw.at.Sub(start))
				case !ok || got < slot:
					t.Fatalf("run %d: source %s's turn at %s (period %d) was missed by the sweep at %s, after a gap of %s", run, id, turn.Sub(start), slot, sw.at.Sub(start), sw.at.Sub(sw.prev))
				}
			}
		}
	}
}

// firstTurn is the source's first turn after t.
func firstTurn(id string, every time.Duration, t time.Time) time.Time {
	off := offset(id, every)
	slot := (t.UnixNano()-off)/int64(every) + 1
	return time.Unix(0, slot*int64(every)+off)
}

// TestPauseBoundsTheSweepsShare: the pause after a sweep is at least a
// tick, at most half a period, and otherwise nine times the sweep, so the
// sweeps take at most a tenth of the time whatever their length.
func TestPauseBoundsTheSweepsShare(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 10_000 {
		every := time.Duration(1+rng.Int64N(int64(48*time.Hour))) + 100*time.Millisecond
		tick := Tick(every)
		took := time.Duration(rng.Int64N(int64(every)))
		p := Pause(tick, took, every)
		switch {
		case p > every/2:
			t.Fatalf("every %s, sweep of %s: pause %s is longer than half a period", every, took, p)
		case p < min(tick, every/2):
			t.Fatalf("every %s, sweep of %s: pause %s is shorter than a tick (%s)", every, took, p, tick)
		case p < every/2 && took > 0 && float64(took)/float64(took+p) > 0.1+1e-9:
			t.Fatalf("every %s, sweep of %s: pause %s gives the sweeps %.0f %% of the time", every, took, p, 100*float64(took)/float64(took+p))
		}
	}
}
