package offsets

import (
	"math/rand/v2"
	"testing"
)

type mark struct {
	next     int64
	advanced bool
}

func done(t *testing.T, tr *Tracker, offset int64, want mark) {
	t.Helper()
	next, adv := tr.Done(offset)
	if adv != want.advanced || (adv && next != want.next) {
		t.Fatalf("Done(%d) = %d, %v; want %d, %v", offset, next, adv, want.next, want.advanced)
	}
}

func TestInOrder(t *testing.T) {
	tr := New()
	if tr.Pending() != 0 {
		t.Fatal("new tracker not empty")
	}
	for o := int64(0); o < 5; o++ {
		tr.Add(o)
	}
	if tr.Pending() != 5 {
		t.Fatalf("pending %d", tr.Pending())
	}
	for o := int64(0); o < 5; o++ {
		done(t, tr, o, mark{o + 1, true})
		if tr.Pending() != int(4-o) {
			t.Fatalf("pending %d after %d", tr.Pending(), o)
		}
	}
}

func TestOutOfOrder(t *testing.T) {
	tr := New()
	for o := int64(100); o < 105; o++ {
		tr.Add(o)
	}
	done(t, tr, 102, mark{})
	done(t, tr, 104, mark{})
	done(t, tr, 101, mark{})
	if tr.Pending() != 5 {
		t.Fatalf("pending %d: nothing is committable before 100", tr.Pending())
	}
	done(t, tr, 100, mark{103, true}) // 100, 101, 102 contiguous; 103 unfinished
	if tr.Pending() != 2 {
		t.Fatalf("pending %d", tr.Pending())
	}
	done(t, tr, 103, mark{105, true})
	if tr.Pending() != 0 {
		t.Fatalf("pending %d", tr.Pending())
	}
	// Taking more after draining works.
	tr.Add(105)
	done(t, tr, 105, mark{106, true})
}

// Compacted topics and transaction markers leave gaps: the mark jumps over
// offsets that were never taken.
func TestGaps(t *testing.T) {
	tr := New()
	for _, o := range []int64{3, 7, 8, 20, 1000} {
		tr.Add(o)
	}
	done(t, tr, 8, mark{})
	done(t, tr, 3, mark{4, true})
	done(t, tr, 20, mark{})
	done(t, tr, 7, mark{21, true})
	if tr.Pending() != 1 {
		t.Fatalf("pending %d", tr.Pending())
	}
	done(t, tr, 1000, mark{1001, true})
	if tr.Pending() != 0 {
		t.Fatalf("pending %d", tr.Pending())
	}
}

// Offsets taken while earlier ones are in flight.
func TestInterleavedAddAndDone(t *testing.T) {
	tr := New()
	tr.Add(0)
	tr.Add(1)
	done(t, tr, 1, mark{})
	tr.Add(2)
	done(t, tr, 0, mark{2, true})
	tr.Add(5)
	done(t, tr, 5, mark{})
	if tr.Pending() != 2 {
		t.Fatalf("pending %d", tr.Pending())
	}
	done(t, tr, 2, mark{6, true})
}

// A completion reported twice (a retried publish acknowledged twice) does
// not move the mark again.
func TestDoneTwice(t *testing.T) {
	tr := New()
	tr.Add(0)
	tr.Add(1)
	done(t, tr, 0, mark{1, true})
	done(t, tr, 0, mark{})
	if tr.Pending() != 1 {
		t.Fatalf("pending %d", tr.Pending())
	}
	done(t, tr, 1, mark{2, true})
}

// The marks returned are strictly increasing and never pass an offset that
// is taken but unfinished, whatever the order of completions and the gaps.
func TestPropertyMarksNeverPassUnfinished(t *testing.T) {
	rng := rand.New(rand.NewPCG(20260101, 42))
	for run := range 300 {
		tr := New()
		var (
			next     = rng.Int64N(1000)
			taken    []int64 // in order
			finished = map[int64]bool{}
			inFlight []int64
			lastMark int64 = -1
			marks    int
		)
		total := 1 + rng.IntN(200)
		for len(taken) < total || len(inFlight) > 0 {
			// Take an offset (with a random gap) or finish a random one.
			if len(taken) < total && (len(inFlight) == 0 || rng.IntN(3) > 0) {
				tr.Add(next)
				taken = append(taken, next)
				inFlight = append(inFlight, next)
				next += 1 + int64(rng.IntN(3))*int64(rng.IntN(4)) // mostly +1, sometimes a gap
				continue
			}
			i := rng.IntN(len(inFlight))
			o := inFlight[i]
			inFlight = append(inFlight[:i], inFlight[i+1:]...)
			finished[o] = true
			m, adv := tr.Done(o)
			if !adv {
				continue
			}
			marks++
			if m <= lastMark {
				t.Fatalf("run %d: mark %d after %d is not increasing", run, m, lastMark)
			}
			lastMark = m
			for _, tk := range taken {
				if tk < m && !finished[tk] {
					t.Fatalf("run %d: mark %d passes unfinished offset %d", run, m, tk)
				}
			}
			// The mark is one past a taken, finished offset.
			if !finished[m-1] {
				t.Fatalf("run %d: mark %d is not one past a finished offset", run, m)
			}
			// Pending is exactly the taken offsets at or after the mark.
			pending := 0
			for _, tk := range taken {
				if tk >= m {
					pending++
				}
			}
			if tr.Pending() != pending {
				t.Fatalf("run %d: pending %d, want %d", run, tr.Pending(), pending)
			}
		}
		if want := taken[len(taken)-1] + 1; lastMark != want {
			t.Fatalf("run %d: final mark %d, want %d", run, lastMark, want)
		}
		if tr.Pending() != 0 || marks == 0 {
			t.Fatalf("run %d: pending %d, marks %d", run, tr.Pending(), marks)
		}
	}
}
