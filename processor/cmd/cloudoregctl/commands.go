package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/cloudoreg/cloudoreg/processor/internal/statusapi"
)

func (c *cli) status(id string) int {
	var s statusapi.SourceResponse
	raw, err := c.call(http.MethodGet, "/sources/"+url.PathEscape(id), nil, &s)
	return c.answer(raw, err, func(tw *tabwriter.Writer) {
		row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
		row("source", s.SourceID)
		row("org", dash(s.OrgID))
		if o := s.Outcome; o != nil {
			row("state", o.State)
			row("code", dash(o.Code))
			if o.CustomerText != "" {
				row("customer sees", o.CustomerText)
			}
			if o.Reason != "" {
				row("reason", o.Reason)
			}
			row("application", dash(o.ApplicationID))
			row("aws account", dash(o.AccountID))
			row("attempts", strconv.Itoa(o.Attempts))
			row("event", fmt.Sprintf("%s (%s), done %s", o.EventType, o.Origin, ts(o.Time)))
		} else {
			row("state", "no outcome recorded")
		}
		if p := s.ParkedRetry; p != nil {
			row("parked retry", fmt.Sprintf("due %s, attempt %d, failing since %s", ts(p.Due), p.Attempts, ts(p.FirstFailure)))
		} else {
			row("parked retry", "none")
		}
		row("rhsm", rhsmLine(s.RHSM))
	})
}

func rhsmLine(r statusapi.RHSMResponse) string {
	if r.Error != "" {
		return "unknown: " + r.Error
	}
	if len(r.Registrations) == 0 {
		return "not registered"
	}
	line := ""
	for i, g := range r.Registrations {
		if i > 0 {
			line += ", "
		}
		line += g.AccountID
		if g.Verified {
			line += " (verified)"
		}
	}
	return "registered: " + line
}

func (c *cli) reconcile(id string) int {
	q := url.Values{}
	if c.org != "" {
		q.Set("org_id", c.org)
	}
	var r statusapi.ReconcileResponse
	raw, err := c.call(http.MethodPost, "/sources/"+url.PathEscape(id)+"/reconcile", q, &r)
	return c.answer(raw, err, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "reconcile of source %s (org %s) enqueued; `cloudoregctl status %s` shows the outcome\n", r.SourceID, r.OrgID, r.SourceID)
	})
}

// allDeadLetters walks every page.
func (c *cli) allDeadLetters() ([]statusapi.DeadLetterResponse, error) {
	var all []statusapi.DeadLetterResponse
	after := uint64(0)
	for {
		var page statusapi.DeadLettersResponse
		q := url.Values{"after": {strconv.FormatUint(after, 10)}, "limit": {strconv.Itoa(statusapi.MaxLimit)}}
		if _, err := c.call(http.MethodGet, "/dead-letters", q, &page); err != nil {
			return nil, err
		}
		all = append(all, page.DeadLetters...)
		if page.NextAfter == nil {
			return all, nil
		}
		after = *page.NextAfter
	}
}

func (c *cli) dlqList() int {
	all, err := c.allDeadLetters()
	if err != nil {
		return c.fail(err)
	}
	if c.json {
		return c.printValue(statusapi.DeadLettersResponse{DeadLetters: all})
	}
	if len(all) == 0 {
		fmt.Fprintln(c.out, "no dead letters")
		return exitOK
	}
	return c.table(func(tw *tabwriter.Writer) {
		fmt.Fprintln(tw, "SEQ\tSOURCE\tORG\tREASON\tDELIVERIES\tEVENT\tTIME")
		for _, d := range all {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%s\n", d.Seq, dash(d.SourceID), dash(d.OrgID), d.Reason, d.Deliveries, dash(d.EventType), ts(d.Time))
		}
	})
}

func (c *cli) dlqShow(arg string) int {
	seq, ok := parseSeq(arg)
	if !ok {
		return c.usage("a dead letter's sequence is a positive number")
	}
	var d statusapi.DeadLetterResponse
	raw, err := c.call(http.MethodGet, "/dead-letters/"+strconv.FormatUint(seq, 10), nil, &d)
	return c.answer(raw, err, func(tw *tabwriter.Writer) {
		row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
		row("seq", strconv.FormatUint(d.Seq, 10))
		row("source", dash(d.SourceID))
		row("org", dash(d.OrgID))
		row("reason", d.Reason)
		row("detail", dash(deref(d.Detail)))
		row("deliveries", strconv.Itoa(d.Deliveries))
		row("event", dash(d.EventType))
		row("origin", dash(deref(d.Origin)))
		if d.WorkSeq != nil {
			row("work seq", strconv.FormatUint(*d.WorkSeq, 10))
		}
		row("time", ts(d.Time))
	})
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func parseSeq(s string) (uint64, bool) {
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil && n > 0
}

func (c *cli) replayOne(seq uint64) (statusapi.ReplayResponse, []byte, error) {
	var r statusapi.ReplayResponse
	raw, err := c.call(http.MethodPost, "/dead-letters/"+strconv.FormatUint(seq, 10)+"/replay", nil, &r)
	return r, raw, err
}

func (c *cli) dlqReplay(arg string) int {
	seq, ok := parseSeq(arg)
	if !ok {
		return c.usage("a dead letter's sequence is a positive number")
	}
	r, raw, err := c.replayOne(seq)
	return c.answer(raw, err, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "dead letter %d replayed as work %d%s\n", r.Seq, r.WorkSeq, duplicateNote(r.Duplicate))
	})
}

func duplicateNote(dup bool) string {
	if dup {
		return " (already replayed before: the dead letter is now deleted)"
	}
	return ""
}

// dlqReplayAll replays every dead letter; one that cannot be replayed is
// reported and the rest go on. Exit 1 when any failed.
func (c *cli) dlqReplayAll() int {
	all, err := c.allDeadLetters()
	if err != nil {
		return c.fail(err)
	}
	var done []statusapi.ReplayResponse
	failed := 0
	for _, d := range all {
		r, _, err := c.replayOne(d.Seq)
		if err != nil {
			failed++
			fmt.Fprintf(c.errOut, "cloudoregctl: dead letter %d: %v\n", d.Seq, err)
			continue
		}
		done = append(done, r)
	}
	if c.json {
		c.printValue(map[string]any{"replayed": orEmpty(done), "failed": failed})
	} else {
		fmt.Fprintf(c.out, "%d dead letters replayed, %d failed\n", len(done), failed)
	}
	if failed > 0 {
		return exitFailure
	}
	return exitOK
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (c *cli) dlqPurge() int {
	if _, err := time.ParseDuration(c.olderThan); err != nil {
		return c.usage("--older-than takes a duration such as 72h")
	}
	var p statusapi.PurgeResponse
	raw, err := c.call(http.MethodDelete, "/dead-letters", url.Values{"older_than": {c.olderThan}}, &p)
	return c.answer(raw, err, func(tw *tabwriter.Writer) {
		fmt.Fprintf(tw, "%d dead letters older than %s purged\n", p.Purged, c.olderThan)
	})
}

func (c *cli) parkedList() int {
	var p statusapi.ParkedResponse
	raw, err := c.call(http.MethodGet, "/parked", nil, &p)
	return c.answer(raw, err, func(tw *tabwriter.Writer) {
		if len(p.Parked) == 0 {
			fmt.Fprintln(tw, "no parked retries")
			return
		}
		fmt.Fprintln(tw, "SOURCE\tORG\tEVENT\tATTEMPTS\tDUE\tFAILING SINCE")
		for _, e := range p.Parked {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", e.SourceID, dash(e.OrgID), dash(e.EventType), e.Attempts, ts(e.Due), ts(e.FirstFailure))
		}
	})
}
