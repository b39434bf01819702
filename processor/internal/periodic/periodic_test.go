package periodic

import (
	"strconv"
	"testing"
	"time"
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
