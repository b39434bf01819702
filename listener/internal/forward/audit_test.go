package forward

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestAuditLogAccountsForEveryEvent drives the audit log with random
// bursts and quiet spells: in every window at most perSecond events get a
// line, and the lines plus the summaries cover every event exactly once,
// with the summaries' offset ranges in order.
func TestAuditLogAccountsForEveryEvent(t *testing.T) {
	for seed := uint64(1); seed <= 200; seed++ {
		r := rand.New(rand.NewPCG(seed, seed))
		limit := r.IntN(20) // 0: no limit
		a := auditLog{perSecond: limit}
		now := time.Unix(1_700_000_000, 0)
		var written, summarised int
		var lastSummarised int64 = -1
		perWindow := map[time.Time]int{}
		account := func(h heldBack) {
			if h.Count == 0 {
				return
			}
			if h.First <= lastSummarised || h.Last < h.First || int64(h.Count) > h.Last-h.First+1 {
				t.Fatalf("seed %d: summary %+v after offset %d", seed, h, lastSummarised)
			}
			summarised += h.Count
			lastSummarised = h.Last
		}
		n := 1 + r.IntN(2000)
		for offset := int64(0); offset < int64(n); offset++ {
			// Mostly a burst (microseconds apart), sometimes a pause.
			now = now.Add(time.Duration(r.IntN(200)) * time.Microsecond)
			if r.IntN(100) == 0 {
				now = now.Add(time.Duration(r.IntN(3000)) * time.Millisecond)
			}
			if r.IntN(50) == 0 {
				account(a.roll(now)) // the partition's ticker
			}
			write, held := a.forwarded(now, offset)
			account(held)
			if write {
				written++
				perWindow[a.window]++
			}
		}
		account(a.flush(now))
		if written+summarised != n {
			t.Fatalf("seed %d, limit %d: %d lines and %d summarised, want %d events", seed, limit, written, summarised, n)
		}
		for w, c := range perWindow {
			if limit > 0 && c > limit {
				t.Fatalf("seed %d: %d lines in the window at %s, limit %d", seed, c, w, limit)
			}
		}
		if limit == 0 && written != n {
			t.Fatalf("seed %d: no limit wrote %d of %d lines", seed, written, n)
		}
	}
}
