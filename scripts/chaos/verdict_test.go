package chaos

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/cloudoreg/cloudoreg/shared/standin/rhsm"
	"github.com/cloudoreg/cloudoreg/shared/standin/sources"
	"github.com/cloudoreg/cloudoreg/shared/status"
	"github.com/cloudoreg/cloudoreg/shared/workstream"
)

// The verdict must catch each kind of broken promise: a harness whose
// checks pass on anything proves nothing. Each case breaks one thing in an
// otherwise healthy record of two sources and expects exactly its counter.

var (
	trusted = role{Kind: kindTrusted, Account: "010000000001", ARN: "arn:aws:iam::010000000001:role/chaos-trusted"}
	denied  = role{Kind: kindDenied, Account: "010000000002", ARN: "arn:aws:iam::010000000002:role/chaos-denied"}
)

// healthy is the evidence of source 1001 (denied, then fixed to trusted)
// and source 1002 (created, then deleted), everything as it should be.
func healthy() evidence {
	ev := evidence{
		model: []*source{
			{Org: orgs[0], ID: "1001", AppID: "2001", AuthID: "3001", Epochs: []role{denied, trusted}, Created: true},
			{Org: orgs[0], ID: "1002", AppID: "2002", AuthID: "3002", Epochs: []role{{Kind: kindBadARN, ARN: "arn:aws:iam::1:role/x"}}, Created: true, Deleted: true},
		},
		apps: map[string]appState{"2001": {ID: "2001", SourceID: "1001", Status: status.Available}},
		regs: map[string][]rhsm.Account{orgs[0]: {{ID: trusted.Account, SourceID: "1001"}}},
	}
	events := []struct {
		typ, value, source string
	}{
		{"ApplicationAuthentication.create", `{"id":4001,"application_id":2001,"authentication_id":3001}`, "1001"},
		{"Authentication.update", `{"id":"3001","resource_type":"Application","resource_id":2001,"source_id":1001}`, "1001"},
		{"ApplicationAuthentication.create", `{"id":4002,"application_id":2002,"authentication_id":3002}`, "1002"},
		{"Source.destroy", `{"id":1002}`, "1002"},
		{"Application.update", `{"id":2001,"source_id":1001}`, ""}, // ignored
	}
	for i, e := range events {
		m := kafkaMsg{Partition: 0, Offset: int64(i), Headers: map[string]string{"event_type": e.typ}, Value: []byte(e.value)}
		ev.events = append(ev.events, m)
		if e.source != "" {
			ev.work = append(ev.work, workAt(uint64(len(ev.work)+1), e.source, m.origin()))
		}
	}
	for i, s := range []status.Message{
		status.UnavailableMessage("2001", status.CG3002),
		status.AvailableMessage("2001"),
		status.UnavailableMessage("2002", status.CG1004),
	} {
		addStatus(&ev, int64(i), s, sources.OutcomeApplied)
	}
	return ev
}

func workAt(seq uint64, sourceID, origin string) workMsg {
	h := nats.Header{}
	h.Set(workstream.HeaderSourceID, sourceID)
	h.Set(workstream.HeaderOrigin, origin)
	h.Set("Nats-Msg-Id", origin)
	return workMsg{Seq: seq, Subject: "cloudoreg.work.0." + sourceID, Header: h}
}

func addStatus(ev *evidence, offset int64, s status.Message, outcome string) {
	v, _ := json.Marshal(s)
	ev.statuses = append(ev.statuses, kafkaMsg{Partition: 1, Offset: offset, Value: v})
	ev.log = append(ev.log, sources.StatusRecord{Partition: 1, Offset: offset, Value: v, Outcome: outcome})
}

func TestVerdictHealthy(t *testing.T) {
	var r Result
	judge(&r, healthy())
	if len(r.Failures) > 0 || r.Events != 4 || r.Sources != 2 || r.Available != 1 {
		t.Fatalf("a healthy record failed: events %d sources %d (%d available)\n%s", r.Events, r.Sources, r.Available, strings.Join(r.Failures, "\n"))
	}
}

func TestVerdictCatches(t *testing.T) {
	cases := []struct {
		name    string
		breakIt func(ev *evidence)
		counter func(r Result) int
	}{
		{"event missing from the work stream", func(ev *evidence) {
			ev.work = ev.work[:1]
			ev.work = append(ev.work, workAt(9, "1002", ev.events[2].origin()), workAt(10, "1002", ev.events[3].origin()))
		}, func(r Result) int { return r.Lost }},
		{"event stored twice", func(ev *evidence) {
			ev.work = append(ev.work, workAt(9, "1002", ev.events[3].origin()))
		}, func(r Result) int { return r.DupEvents }},
		{"events of a source out of order", func(ev *evidence) {
			ev.work[0], ev.work[1] = workAt(1, "1001", ev.events[1].origin()), workAt(2, "1001", ev.events[0].origin())
		}, func(r Result) int { return r.OrderViolations }},
		{"stale status after a newer one", func(ev *evidence) {
			addStatus(ev, 3, status.UnavailableMessage("2001", status.CG3002), sources.OutcomeApplied)
			ev.apps["2001"] = appState{ID: "2001", Status: status.Available} // a later check fixed it again
		}, func(r Result) int { return r.OrderViolations }},
		{"transient fault reported as unavailable", func(ev *evidence) {
			addStatus(ev, 3, status.UnavailableMessage("2001", status.CG3000), sources.OutcomeApplied)
			addStatus(ev, 4, status.AvailableMessage("2001"), sources.OutcomeApplied)
		}, func(r Result) int { return r.Premature }},
		{"status message never read by Sources", func(ev *evidence) {
			ev.log = ev.log[:2]
		}, func(r Result) int { return r.Lost }},
		{"status message gone from the topic", func(ev *evidence) {
			ev.statuses = ev.statuses[1:]
		}, func(r Result) int { return r.Lost }},
		{"source ends in the wrong state", func(ev *evidence) {
			ev.apps["2001"] = appState{ID: "2001", Status: status.Unavailable, Error: status.CG3002.Text()}
		}, func(r Result) int { return r.Lost }},
		{"registration missing", func(ev *evidence) {
			ev.regs = nil
		}, func(r Result) int { return r.Lost }},
		{"registration kept after a delete", func(ev *evidence) {
			ev.regs[orgs[0]] = append(ev.regs[orgs[0]], rhsm.Account{ID: "010000000003", SourceID: "1002"})
		}, func(r Result) int { return r.DupRegistrations }},
		{"second account for a source", func(ev *evidence) {
			ev.regs[orgs[0]] = append(ev.regs[orgs[0]], rhsm.Account{ID: denied.Account, SourceID: "1001"})
		}, func(r Result) int { return r.DupRegistrations }},
		{"dead letter", func(ev *evidence) {
			ev.dlq = append(ev.dlq, workAt(1, "1001", "x"))
		}, func(r Result) int { return r.DeadLetters }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := healthy()
			c.breakIt(&ev)
			var r Result
			judge(&r, ev)
			if c.counter(r) == 0 || len(r.Failures) == 0 {
				t.Errorf("not caught: %+v", r)
			}
		})
	}
}

// A routed event that the listener may legitimately skip: the
// ApplicationAuthentication.create of a source deleted before the listener
// could ask Sources for its application.
func TestVerdictUnresolvableCreateOfDeletedSource(t *testing.T) {
	ev := healthy()
	ev.work = append(ev.work[:2], ev.work[3:]...) // no create of 1002
	var r Result
	judge(&r, ev)
	if len(r.Failures) > 0 {
		t.Fatalf("a skipped create of a deleted source failed the verdict:\n%s", strings.Join(r.Failures, "\n"))
	}
	ev.model[1].Deleted = false
	ev.apps["2002"] = appState{ID: "2002", Status: status.Unavailable, Error: status.CG1004.Text()}
	r = Result{}
	judge(&r, ev)
	if r.Lost != 1 {
		t.Fatalf("a skipped create of a live source was not counted lost: %s", fmt.Sprint(r.Failures))
	}
}

func TestPoisonCorpusIsPoison(t *testing.T) {
	var ev evidence
	ev.poison = map[string]string{}
	for i, p := range poisonCorpus(orgs[0], maxEventBytes) {
		m := kafkaMsg{Offset: int64(i), Headers: map[string]string{}, Value: p.Value}
		for _, h := range p.Headers {
			m.Headers[h[0]] = h[1]
		}
		ev.events = append(ev.events, m)
		ev.poison[m.origin()] = p.Label
	}
	var r Result
	judge(&r, ev)
	if r.Poison != len(ev.events) || r.Events != 0 || len(r.Failures) > 0 {
		t.Fatalf("poison %d of %d, events %d, failures %v", r.Poison, len(ev.events), r.Events, r.Failures)
	}
	ev.work = append(ev.work, workAt(1, "99001", ev.events[0].origin()))
	judge(&r, ev)
	if len(r.Failures) == 0 {
		t.Fatal("a poison message in the work stream was not caught")
	}
}
