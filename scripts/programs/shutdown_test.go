package programs

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cloudoreg/cloudoreg/scripts/internal/stack"
	"github.com/cloudoreg/cloudoreg/shared/standin/faults"
	"github.com/cloudoreg/cloudoreg/shared/standin/sources"
	"github.com/cloudoreg/cloudoreg/shared/status"
	"github.com/cloudoreg/cloudoreg/shared/work"
	"github.com/cloudoreg/cloudoreg/shared/workstream"
)

const shutdownOrg = "5550001"

// shutdownGrace is SHUTDOWN_GRACE of both programs in TestSIGTERMMidLoad:
// far more than one reconcile takes (two delayed STS calls), so everything
// in flight finishes and nothing is handed back.
const shutdownGrace = 5 * time.Second

// loadSource is one source of the load: trusted roles verify with their
// external id and are registered, the rest are unknown to STS (CG3002).
type loadSource struct {
	name, arn, externalID, account string
	trusted                        bool
	created
}

// loadSources makes n sources; every fourth is untrusted. Each trusted one
// has an AWS account of its own, so each must end with one registration.
func loadSources(prefix string, from, n int) []*loadSource {
	var out []*loadSource
	for i := from; i < from+n; i++ {
		account := fmt.Sprintf("7%011d", i)
		out = append(out, &loadSource{
			name: fmt.Sprintf("%s-%d", prefix, i), account: account,
			arn:        fmt.Sprintf("arn:aws:iam::%s:role/shutdown-%d", account, i),
			externalID: fmt.Sprintf("shutdown-external-%d", i),
			trusted:    i%4 != 3,
		})
	}
	return out
}

// trustFile writes an STS trust table that trusts the trusted sources.
func trustFile(t *testing.T, srcs []*loadSource) string {
	t.Helper()
	type role struct {
		ARN        string `json:"arn"`
		ExternalID string `json:"external_id"`
		Assume     string `json:"assume_role"`
		Identity   string `json:"get_caller_identity"`
	}
	var roles []role
	for _, s := range srcs {
		if s.trusted {
			roles = append(roles, role{s.arn, s.externalID, "allow", "allow"})
		}
	}
	b, _ := json.Marshal(map[string]any{"roles": roles})
	path := filepath.Join(t.TempDir(), "trust.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSIGTERMMidLoad stops the listener and both processors with SIGTERM
// while sources are being created and verified (every STS call is slowed
// down), checks that each exits 0 within SHUTDOWN_GRACE, creates more
// sources while they are down, restarts them, and shows nothing was lost
// or done twice: every source ends with the right status, which Sources
// received exactly once, and RHSM holds exactly one registration per
// trusted source, made by exactly one successful call.
func TestSIGTERMMidLoad(t *testing.T) {
	first, second := loadSources("first", 0, 24), loadSources("second", 24, 24)
	all := append(append([]*loadSource{}, first...), second...)
	grace := "SHUTDOWN_GRACE=" + shutdownGrace.String()
	s := newSystem(t, systemConfig{
		processors: 2,
		stack:      stack.Config{PSK: "shutdown-psk", TrustFile: trustFile(t, all)},
		listener:   []string{grace},
		processor:  []string{grace},
	})
	s.startAll()
	s.stack.STS.Faults().Set(faults.Fault{Delay: 100 * time.Millisecond})

	create := func(src *loadSource) error {
		c, err := s.createSource(src.name, src.arn, src.externalID, orgHeaders(shutdownOrg))
		src.created = c
		return err
	}
	for _, src := range first {
		if err := create(src); err != nil {
			t.Fatal(err)
		}
	}
	// Mid-load: some outcomes are in, and more sources keep coming.
	s.awaitCount("first statuses", 4, hasStatus)
	creating := make(chan error, 1)
	someCreated := make(chan struct{})
	go func() {
		for i, src := range second {
			if err := create(src); err != nil {
				creating <- err
				return
			}
			if i == 4 {
				close(someCreated)
			}
		}
		creating <- nil
	}()
	<-someCreated
	done := s.countApps(hasStatus)
	exits := s.terminate(2*shutdownGrace, append([]*program{s.listener}, s.processors...)...)
	t.Logf("SIGTERM with %d of %d sources created so far holding a status", done, len(first)+5)
	if done >= len(first)+5 {
		t.Fatalf("everything was done before SIGTERM: the test stopped nothing mid-load")
	}
	for name, e := range exits {
		if e.err != nil || e.killed || e.took >= shutdownGrace {
			t.Errorf("%s: exit %v, killed %v, after %s; want exit 0 within SHUTDOWN_GRACE %s", name, e.err, e.killed, e.took.Round(time.Millisecond), shutdownGrace)
		} else {
			t.Logf("%s exited 0 after %s", name, e.took.Round(time.Millisecond))
		}
	}
	if err := <-creating; err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"processor stopping: finishing work in progress", "processor stopped", "listener stopped"} {
		if !strings.Contains(s.logs.String(), line) {
			t.Errorf("no %q in the output", line)
		}
	}
	if strings.Contains(s.logs.String(), "shutdown grace spent") {
		t.Errorf("work was handed back although the grace period was long enough")
	}
	finished := 0
	for _, p := range s.processors {
		finished += s.reconciledWhileStopping(p.name)
	}
	if finished == 0 {
		t.Errorf("no processor finished a reconcile after SIGTERM: nothing was in flight, the test proves little")
	} else {
		t.Logf("%d reconciles in flight at SIGTERM were finished before exiting", finished)
	}

	s.startAll()
	s.stack.STS.Faults().Clear()
	snap := s.awaitApps("got a status", appIDs(all), hasStatus)
	checkOutcomes(t, s, snap, all, true)
}

// TestSIGTERMHandsBackWorkBeyondGrace: a reconcile that outlasts
// SHUTDOWN_GRACE is cancelled and handed back, the processor still exits 0
// right after the grace period, and after a restart the source is verified
// and registered once.
func TestSIGTERMHandsBackWorkBeyondGrace(t *testing.T) {
	const grace = time.Second
	srcs := loadSources("slow", 0, 3)
	s := newSystem(t, systemConfig{
		processors: 1,
		stack:      stack.Config{PSK: "shutdown-psk", TrustFile: trustFile(t, srcs)},
		processor:  []string{"SHUTDOWN_GRACE=" + grace.String()},
	})
	s.startAll()
	// Every STS call now takes far longer than the grace period.
	s.stack.STS.Faults().Set(faults.Fault{Delay: 20 * time.Second})
	for _, src := range srcs {
		c, err := s.createSource(src.name, src.arn, src.externalID, orgHeaders(shutdownOrg))
		if err != nil {
			t.Fatal(err)
		}
		src.created = c
	}
	s.awaitWorkInProgress()
	p := s.processors[0]
	e := s.terminate(grace+10*time.Second, p)[p.name]
	// The grace period, then the cancelled calls return and NATS drains.
	if e.err != nil || e.killed || e.took >= grace+2*time.Second {
		t.Errorf("processor: exit %v, killed %v, after %s; want exit 0 right after SHUTDOWN_GRACE %s", e.err, e.killed, e.took.Round(time.Millisecond), grace)
	} else {
		t.Logf("processor exited 0 after %s (SHUTDOWN_GRACE %s)", e.took.Round(time.Millisecond), grace)
	}
	for _, line := range []string{"shutdown grace spent: handing back work in progress", "work handed back on shutdown"} {
		if !strings.Contains(s.logs.String(), line) {
			t.Errorf("no %q in the output", line)
		}
	}
	if n := len(s.stack.RHSM.Calls()); n != 0 {
		t.Errorf("RHSM was called %d times before any verification finished", n)
	}

	s.stack.STS.Faults().Clear()
	s.start(p)
	snap := s.awaitApps("got a status", appIDs(srcs), hasStatus)
	checkOutcomes(t, s, snap, srcs, false)
}

// checkOutcomes checks every source's final status and RHSM's registrations:
// exactly one per trusted source, made by exactly one successful call.
// onceOnly also requires that Sources received exactly one status per
// application.
func checkOutcomes(t *testing.T, s *system, snap sources.Snapshot, srcs []*loadSource, onceOnly bool) {
	t.Helper()
	statuses := map[string]int{}
	for _, r := range snap.StatusLog {
		var v struct {
			ResourceID string `json:"resource_id"`
		}
		if json.Unmarshal(r.Value, &v) == nil {
			statuses[v.ResourceID]++
		}
	}
	regs := map[string][]string{} // source id -> accounts
	for _, a := range s.stack.RHSM.Registrations()[shutdownOrg] {
		regs[a.SourceID] = append(regs[a.SourceID], a.ID)
	}
	registerCalls := map[string]int{}
	for _, c := range s.stack.RHSM.Calls() {
		if c.Method == "POST" && strings.HasSuffix(c.Path, "/cloud_access_providers/AWS/accounts") && c.Status/100 == 2 {
			registerCalls[c.SourceID]++
		}
	}
	lost := 0
	for _, src := range srcs {
		app := snap.Applications[src.AppID]
		want, wantErr := status.Available, ""
		if !src.trusted {
			want, wantErr = status.Unavailable, status.CG3002.Text()
		}
		if app.AvailabilityStatus != want || app.AvailabilityStatusError != wantErr {
			lost++
			t.Errorf("%s: %q %q, want %q %q", src.name, app.AvailabilityStatus, app.AvailabilityStatusError, want, wantErr)
		}
		if onceOnly && statuses[src.AppID] != 1 {
			t.Errorf("%s: Sources received %d status messages, want 1", src.name, statuses[src.AppID])
		}
		wantRegs, wantCalls := 0, 0
		if src.trusted {
			wantRegs, wantCalls = 1, 1
		}
		if got := regs[src.SourceID]; len(got) != wantRegs || (wantRegs == 1 && got[0] != src.account) {
			t.Errorf("%s: RHSM holds %v for source %s, want %d registration(s) of %s", src.name, got, src.SourceID, wantRegs, src.account)
		}
		if registerCalls[src.SourceID] != wantCalls {
			t.Errorf("%s: %d successful RHSM registrations, want %d", src.name, registerCalls[src.SourceID], wantCalls)
		}
	}
	if lost == 0 {
		t.Logf("all %d sources ended right", len(srcs))
	}
}

// reconciledWhileStopping counts the reconciles a program finished after it
// began stopping (its first run's output).
func (s *system) reconciledWhileStopping(name string) int {
	stopping, n := false, 0
	for _, line := range strings.Split(s.logs.String(), "\n") {
		rest, ok := strings.CutPrefix(line, fmt.Sprintf("%-12s| ", name))
		if !ok {
			continue
		}
		switch {
		case strings.Contains(rest, `"processor stopped"`):
			return n
		case strings.Contains(rest, `"processor stopping: finishing work in progress"`):
			stopping = true
		case stopping && strings.Contains(rest, `"source reconciled"`):
			n++
		}
	}
	return n
}

func appIDs(srcs []*loadSource) []string {
	var ids []string
	for _, s := range srcs {
		ids = append(ids, s.AppID)
	}
	return ids
}

// awaitCount waits until at least n applications satisfy pred.
func (s *system) awaitCount(what string, n int, pred func(sources.Application) bool) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, waitLimit)
	defer cancel()
	err := s.stack.Sources.Await(ctx, func(snap sources.Snapshot) bool {
		got := 0
		for _, a := range snap.Applications {
			if pred(a) {
				got++
			}
		}
		return got >= n
	})
	if err != nil {
		s.t.Fatalf("never %d %s", n, what)
	}
}

// countApps counts the applications that satisfy pred now.
func (s *system) countApps(pred func(sources.Application) bool) int {
	n := 0
	ctx, cancel := context.WithCancel(s.ctx)
	cancel() // one look, no waiting
	_ = s.stack.Sources.Await(ctx, func(snap sources.Snapshot) bool {
		n = 0
		for _, a := range snap.Applications {
			if pred(a) {
				n++
			}
		}
		return true
	})
	return n
}

// awaitWorkInProgress waits until a processor holds a work message it has
// not acknowledged yet (a partition consumer with an ack pending), asking
// JetStream on a ticker within a deadline.
func (s *system) awaitWorkInProgress() {
	s.t.Helper()
	nc, err := nats.Connect(s.stack.NATSURL)
	if err != nil {
		s.t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(s.ctx, waitLimit)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		for p := 0; p < 4; p++ {
			c, err := js.Consumer(ctx, work.StreamName, workstream.ConsumerName(p))
			if err != nil {
				continue
			}
			if info, err := c.Info(ctx); err == nil && info.NumAckPending > 0 {
				return
			}
		}
		select {
		case <-ctx.Done():
			s.t.Fatal("no work message was ever in progress")
		case <-tick.C:
		}
	}
}
