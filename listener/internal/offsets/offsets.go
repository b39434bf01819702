// Package offsets tracks which Kafka offsets of one partition are finished,
// so the listener marks an offset only when it and every offset before it
// are done: publishes complete out of order, commits must not.
package offsets

// Tracker is the ordered set of offsets taken but not yet committable.
// Not safe for concurrent use: one partition loop owns it.
type Tracker struct {
	queue []entry
	done  map[int64]bool
}

type entry struct{ offset int64 }

// New returns an empty Tracker.
func New() *Tracker { return &Tracker{done: map[int64]bool{}} }

// Add records a taken offset. Offsets must be added in increasing order.
func (t *Tracker) Add(offset int64) { t.queue = append(t.queue, entry{offset}) }

// Done records that offset is finished. It returns the offset to mark as the
// next one to consume (last contiguous finished offset + 1) and whether that
// moved forward.
func (t *Tracker) Done(offset int64) (next int64, advanced bool) {
	t.done[offset] = true
	for len(t.queue) > 0 && t.done[t.queue[0].offset] {
		next, advanced = t.queue[0].offset+1, true
		delete(t.done, t.queue[0].offset)
		t.queue = t.queue[1:]
	}
	return next, advanced
}

// Pending is how many offsets are taken but not committable.
func (t *Tracker) Pending() int { return len(t.queue) }
