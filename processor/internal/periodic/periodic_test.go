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
// (a sweep slower than a tick makes the ticker drop ticks) and whichever
// sweeps fail, every turn that falls between the first sweep and the last
// successful one is seen by a successful sweep.
func TestNoTurnIsMissedBySlowOrFailedSweeps(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	every := 10 * time.Minute
	tick := Tick(every)
	start := time.Unix(1_800_000_000, 0)
	for run := 0; run < 50; run++ {
		const sources = 300
		seen := map[string]map[int64]bool{}
		now, covered := start, time.Time{}
		var firstOK, lastOK time.Time
		for now.Before(start.Add(3 * every)) {
			now = now.Add(tick * time.Duration(1+rng.IntN(6))) // up to 5 dropped ticks
			if rng.IntN(4) == 0 {
				continue // this sweep failed: it covers nothing
			}
			w := Window(now, covered, tick, every)
			for i := 1; i <= sources; i++ {
				id := strconv.Itoa(i)
				if slot, due := Due(id, every, w, now); due {
					if seen[id] == nil {
						seen[id] = map[int64]bool{}
					}
					seen[id][slot] = true
				}
			}
			if firstOK.IsZero() {
				firstOK = now
			}
			covered, lastOK = now, now
		}
		for i := 1; i <= sources; i++ {
			id := strconv.Itoa(i)
			// every turn of the source in (firstOK, lastOK] must have been seen
			for turn := firstTurn(id, every, firstOK); !turn.After(lastOK); turn = turn.Add(every) {
				slot, _ := Due(id, every, time.Nanosecond, turn)
				if !seen[id][slot] {
					t.Fatalf("run %d: source %s's turn at %s (period %d) was missed", run, id, turn.Sub(start), slot)
				}
			}
		}
	}
}

// firstTurn is the source's first turn after t.
func firstTurn(id string, every time.Duration, t time.Time) time.Time {
	for d := time.Duration(0); d <= every; d += time.Second {
		if _, due := Due(id, every, time.Second, t.Add(d)); due {
			return t.Add(d).Truncate(time.Second)
		}
	}
	return t.Add(every)
}
