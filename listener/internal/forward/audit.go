package forward

import "time"

// auditLog rations the one log line per forwarded event of a partition.
// At normal load (a few events a minute) every event gets its line; above
// perSecond lines in a second (a backlog replay, a re-sync) the lines past
// the limit are held back and counted, and one summary line per second
// names how many and their offset range: formatting a line per event would
// otherwise cost more than forwarding it. Nothing is hidden: the summary
// and a counter cover every held-back line, and every event keeps its
// topic/partition/offset in the work stream (Nats-Msg-Id).
type auditLog struct {
	perSecond int
	window    time.Time // start of the current second
	written   int       // lines written in the window
	held      heldBack
}

// heldBack is what a summary line reports.
type heldBack struct {
	Count       int
	First, Last int64 // Kafka offsets of the first and last held-back event
}

// forwarded reports whether the event at offset gets its own line now; a
// non-zero summary is due for the window that ended before now. A limit of
// 0 writes every line.
func (a *auditLog) forwarded(now time.Time, offset int64) (write bool, summary heldBack) {
	if a.perSecond <= 0 {
		return true, heldBack{}
	}
	summary = a.roll(now)
	if a.written < a.perSecond {
		a.written++
		return true, summary
	}
	if a.held.Count == 0 {
		a.held.First = offset
	}
	a.held.Count++
	a.held.Last = offset
	return false, summary
}

// roll starts a new window when the current one is over and returns what
// the ended one held back (zero when nothing).
func (a *auditLog) roll(now time.Time) heldBack {
	if now.Sub(a.window) < time.Second {
		return heldBack{}
	}
	return a.flush(now)
}

// flush ends the window at now and returns what it held back.
func (a *auditLog) flush(now time.Time) heldBack {
	held := a.held
	a.window, a.written, a.held = now, 0, heldBack{}
	return held
}
