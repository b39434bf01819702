package chaos

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/standin/rhsm"
	"github.com/cloudoreg/cloudoreg/shared/standin/sources"
	"github.com/cloudoreg/cloudoreg/shared/status"
	"github.com/cloudoreg/cloudoreg/shared/workstream"
)

// Result is the verdict on one scenario.
type Result struct {
	Scenario string
	// Events is how many valid events of a type Cloudoreg acts on Sources
	// wrote (the ones that must reach JetStream); Poison how many poison
	// messages the harness wrote between them.
	Events, Poison int
	Sources        int // sources the workload created
	Available      int // of those, how many ended available (and deserve it)
	Ops            int // REST changes the workload made
	// Lost counts what did not arrive: routed events missing from the work
	// stream, status messages missing on either side of the status topic,
	// and sources that did not end in the state their ARN deserves.
	Lost int
	// DupEvents counts Kafka events stored more than once in the work
	// stream; DupRegistrations RHSM registrations beyond the one a source
	// deserves (a second account, or any for a source that deserves none).
	DupEvents, DupRegistrations int
	// OrderViolations counts a source's events stored out of Kafka order,
	// and statuses that went back to an ARN the source no longer had.
	OrderViolations int
	// Premature counts unavailable statuses no ARN of the source deserves:
	// a transient fault reported as the customer's problem.
	Premature   int
	DeadLetters int
	// Skipped counts the events the listener skipped, by reason (from its
	// log lines: a replay after a restart is counted again).
	Skipped map[string]int
	// Recovery is the time from the end of the last fault until every
	// source was in its deserved state and the programs had nothing left
	// to do (with the workload's last changes caught up with too).
	Recovery  time.Duration
	Recovered bool
	Faults    []string // what was injected, when
	Figures   []string // what a scenario measured of its own (printed under its summary)
	Failures  []string // every invariant failure, readable
	Err       error    // the harness itself failed
}

// Passed reports whether every invariant held.
func (r *Result) Passed() bool {
	return r.Err == nil && r.Recovered && len(r.Failures) == 0
}

// Summary is the one-line report of the scenario.
func (r *Result) Summary() string {
	verdict := "PASS"
	if !r.Passed() {
		verdict = "FAIL"
	}
	rec := "not recovered"
	if r.Recovered {
		rec = fmt.Sprintf("recovered in %.1fs", r.Recovery.Seconds())
	}
	return fmt.Sprintf("%-18s events %4d (+%d poison), sources %3d (%3d available), lost %d, dup events %d, dup registrations %d, order violations %d, premature unavailable %d, dead letters %d, %s, %s: %s",
		r.Scenario, r.Events, r.Poison, r.Sources, r.Available, r.Lost, r.DupEvents, r.DupRegistrations, r.OrderViolations, r.Premature, r.DeadLetters, formatSkipped(r.Skipped), rec, verdict)
}

func (r *Result) fail(format string, args ...any) {
	const maxListed = 40
	if len(r.Failures) == maxListed {
		r.Failures = append(r.Failures, "... (more failures not listed)")
	}
	if len(r.Failures) < maxListed {
		r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
	}
}

// evidence is everything recorded at the end of a scenario.
type evidence struct {
	model    []*source
	poison   map[string]string // origin -> label
	events   []kafkaMsg        // the event topic
	statuses []kafkaMsg        // the status topic
	log      []sources.StatusRecord
	apps     map[string]appState
	regs     map[string][]rhsm.Account
	work     []workMsg
	dlq      []workMsg
}

var kafkaOrigin = regexp.MustCompile(`^` + regexp.QuoteMeta(eventsTopic) + `/(\d+)/(\d+)$`)

// judge checks every invariant on the evidence.
func judge(r *Result, ev evidence) {
	bySource, byApp := map[string]*source{}, map[string]*source{}
	for _, s := range ev.model {
		bySource[s.ID], byApp[s.AppID] = s, s
	}
	r.Sources = len(ev.model)
	checkEvents(r, ev, byApp)
	checkWorkOrder(r, ev)
	checkStatuses(r, ev, byApp)
	checkEndStates(r, ev, bySource)
	r.DeadLetters = len(ev.dlq)
	for _, m := range ev.dlq {
		r.fail("dead letter: source %s, %s (%s): %s", m.Header.Get(workstream.HeaderSourceID), m.Header.Get(workstream.HeaderKind),
			m.Header.Get("Cloudoreg-Dlq-Reason"), m.Header.Get("Cloudoreg-Dlq-Detail"))
	}
}

// checkEvents: every routed event reached the work stream exactly once;
// no poison message did.
func checkEvents(r *Result, ev evidence, byApp map[string]*source) {
	stored := map[string]int{}
	for _, m := range ev.work {
		if o := m.Header.Get(workstream.HeaderOrigin); kafkaOrigin.MatchString(o) {
			stored[o]++
			if id := m.Header.Get("Nats-Msg-Id"); id != o {
				r.fail("work message %d: Nats-Msg-Id %q differs from its origin %q", m.Seq, id, o)
			}
		}
	}
	createRouted := map[string]bool{} // application id -> its ApplicationAuthentication.create reached the stream
	for _, m := range ev.events {
		origin := m.origin()
		n := stored[origin]
		if label, ok := ev.poison[origin]; ok {
			r.Poison++
			if n > 0 {
				r.fail("poison %q (%s) reached the work stream", label, origin)
			}
			continue
		}
		et := m.Headers[event.HeaderEventType]
		if !event.Routed(et) {
			if n > 0 {
				r.fail("%s %s (ignored type) reached the work stream", et, origin)
			}
			continue
		}
		r.Events++
		if n > 1 {
			r.DupEvents += n - 1
			r.fail("%s %s stored %d times in the work stream", et, origin, n)
		}
		if n >= 1 {
			if et == string(event.AppAuthCreate) {
				createRouted[appIDOf(m.Value)] = true
			}
			continue
		}
		// Missing. Only an ApplicationAuthentication event may be skipped,
		// as unresolvable: its application was deleted before the listener
		// asked Sources, and (for a destroy) never indexed.
		if et == string(event.AppAuthCreate) || et == string(event.AppAuthDestroy) {
			app := appIDOf(m.Value)
			s := byApp[app]
			if s != nil && s.Deleted && (et == string(event.AppAuthCreate) || !createRouted[app]) {
				continue
			}
		}
		r.Lost++
		r.fail("%s %s never reached the work stream", et, origin)
	}
}

func appIDOf(value []byte) string {
	var p struct {
		ApplicationID json.Number `json:"application_id"`
	}
	_ = json.Unmarshal(value, &p)
	return p.ApplicationID.String()
}

// checkWorkOrder: a source's events are stored in Kafka order.
func checkWorkOrder(r *Result, ev evidence) {
	type pos struct {
		seq       uint64
		partition int
		offset    int64
	}
	last := map[string]pos{}
	for _, m := range ev.work {
		g := kafkaOrigin.FindStringSubmatch(m.Header.Get(workstream.HeaderOrigin))
		if g == nil {
			continue
		}
		p, _ := strconv.Atoi(g[1])
		o, _ := strconv.ParseInt(g[2], 10, 64)
		src := m.Header.Get(workstream.HeaderSourceID)
		cur := pos{m.Seq, p, o}
		if prev, ok := last[src]; ok && (prev.partition != p || prev.offset >= o) {
			r.OrderViolations++
			r.fail("source %s: event %d/%d stored (seq %d) after %d/%d (seq %d)", src, p, o, m.Seq, prev.partition, prev.offset, prev.seq)
		}
		last[src] = cur
	}
}

type statusValue struct {
	ResourceID json.RawMessage `json:"resource_id"`
	Status     string          `json:"status"`
	Error      string          `json:"error"`
}

func (v statusValue) app() string {
	var s string
	if json.Unmarshal(v.ResourceID, &s) == nil {
		return s
	}
	return strings.Trim(string(v.ResourceID), `"`)
}

// checkStatuses: every status message written reached Sources (and only
// those), none went back in time, none reported a transient fault.
func checkStatuses(r *Result, ev evidence, byApp map[string]*source) {
	type key struct {
		p int32
		o int64
	}
	inTopic := map[key]string{}
	for _, m := range ev.statuses {
		inTopic[key{m.Partition, m.Offset}] = string(m.Value)
	}
	seen := map[key]bool{}
	var applied []sources.StatusRecord
	for _, rec := range ev.log {
		k := key{rec.Partition, rec.Offset}
		if seen[k] {
			continue // read again after a broker restart: the same message
		}
		seen[k] = true
		topicValue, ok := inTopic[k]
		if !ok {
			r.Lost++
			r.fail("status message %d/%d was read by Sources but is no longer in the status topic", rec.Partition, rec.Offset)
		} else if !sameJSON(topicValue, rec.Value) {
			r.Lost++
			r.fail("status message %d/%d differs between the topic and what Sources read", rec.Partition, rec.Offset)
		}
		if rec.Outcome == sources.OutcomeApplied {
			applied = append(applied, rec)
		}
	}
	for k := range inTopic {
		if !seen[k] {
			r.Lost++
			r.fail("status message %d/%d never reached Sources", k.p, k.o)
		}
	}
	// Per application, in the order Sources applied them: each status must
	// be one an ARN the source had at that point or later deserves.
	epoch := map[string]int{}
	for _, rec := range applied {
		var v statusValue
		if err := json.Unmarshal(rec.Value, &v); err != nil {
			r.fail("status message %d/%d: %v", rec.Partition, rec.Offset, err)
			continue
		}
		app := v.app()
		s := byApp[app]
		if s == nil {
			r.fail("status %s for application %s, which the workload never made", v.Status, app)
			continue
		}
		if !s.ours() {
			r.fail("status %s for application %s of another team's source %s", v.Status, app, s.ID)
			continue
		}
		at, matched := epoch[app], -1
		for j := at; j < len(s.Epochs); j++ {
			if s.Epochs[j].deserves().matches(v.Status, v.Error) {
				matched = j
				break
			}
		}
		if matched >= 0 {
			epoch[app] = matched
			continue
		}
		earlier := false
		for j := 0; j < at; j++ {
			earlier = earlier || s.Epochs[j].deserves().matches(v.Status, v.Error)
		}
		switch {
		case earlier:
			r.OrderViolations++
			r.fail("source %s: status %q arrived after the source had moved on to %s (a stale reconcile overtook a newer one)", s.ID, describeStatus(v), s.Epochs[at].deserves())
		case v.Status == status.Unavailable:
			r.Premature++
			r.fail("source %s (%s): reported %q, which no ARN it had deserves", s.ID, kindsOf(s), describeStatus(v))
		default:
			r.OrderViolations++
			r.fail("source %s (%s): reported %q, which no ARN it had deserves", s.ID, kindsOf(s), describeStatus(v))
		}
	}
}

func describeStatus(v statusValue) string {
	if v.Error == "" {
		return v.Status
	}
	code := v.Error
	if i := strings.Index(code, "Error code "); i >= 0 && len(code) >= i+17 {
		code = code[i+11 : i+17]
	}
	return v.Status + " " + code
}

func kindsOf(s *source) string {
	var ks []string
	for _, e := range s.Epochs {
		ks = append(ks, string(e.Kind))
	}
	return strings.Join(ks, "->")
}

func sameJSON(a string, b []byte) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal(b, &y) != nil {
		return a == string(b)
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}

// checkEndStates: each source ends as its last ARN deserves, with exactly
// the RHSM registration that goes with it.
func checkEndStates(r *Result, ev evidence, bySource map[string]*source) {
	for _, s := range ev.model {
		app, exists := ev.apps[s.AppID]
		switch {
		case s.Deleted:
			if exists {
				r.fail("source %s was deleted but its application %s is still listed", s.ID, s.AppID)
			}
		case !exists:
			r.Lost++
			r.fail("source %s: application %s is gone from Sources", s.ID, s.AppID)
		case !s.ours():
			if app.Status == status.Available || app.Status == status.Unavailable {
				r.fail("another team's source %s got a status %q", s.ID, app.Status)
			}
		default:
			want := s.final().deserves()
			if !want.matches(app.Status, app.Error) {
				r.Lost++
				r.fail("source %s (%s) ended %q %q, deserves %s", s.ID, kindsOf(s), app.Status, app.Error, want)
			} else if app.Status == status.Available {
				r.Available++
			}
		}
	}
	held := map[string][]string{} // source id -> accounts RHSM holds for it
	for org, accts := range ev.regs {
		for _, a := range accts {
			s := bySource[a.SourceID]
			if s == nil || s.Org != org {
				r.DupRegistrations++
				r.fail("RHSM holds account %s for source %s of org %s, which the workload never made there", a.ID, a.SourceID, org)
				continue
			}
			held[a.SourceID] = append(held[a.SourceID], a.ID)
		}
	}
	ids := make([]string, 0, len(bySource))
	for id := range bySource {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		s, accts := bySource[id], held[id]
		wantAcct := ""
		if !s.Deleted && s.ours() && s.final().Kind == kindTrusted {
			wantAcct = s.final().Account
		}
		var stray []string
		found := false
		for _, a := range accts {
			if a == wantAcct && !found {
				found = true
				continue
			}
			stray = append(stray, a)
		}
		if len(stray) > 0 {
			r.DupRegistrations += len(stray)
			r.fail("RHSM holds %v for source %s (%s, deleted %v), which deserves %q", stray, id, kindsOf(s), s.Deleted, wantAcct)
		}
		if wantAcct != "" && !found {
			r.Lost++
			r.fail("RHSM does not hold account %s for source %s", wantAcct, id)
		}
	}
}
