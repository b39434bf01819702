// Package chaos is the reliability proof of issue 7: it runs the real
// programs as separate processes (bin/listener, three bin/processor, and
// the local stack split into Kafka, NATS and the stand-ins), drives a
// workload of sources through the Sources stand-in's REST API (creates,
// ARN updates, pauses, deletes, re-creates, bad ARNs, denied roles) and
// breaks things meanwhile, one scenario at a time:
//
//  1. listener-kill: kill -9 the listener at random moments, restart it;
//  2. processor-kill: kill -9 one of the three processors, restart it;
//  3. nats-restart: restart the NATS server, its file store kept;
//  4. kafka-outage: restart the Kafka broker (its log kept), and freeze it
//     (SIGSTOP) so that it is unreachable for a while;
//  5. dependency-faults: STS throttles, Sources answers 5xx, RHSM times
//     out, each for a while;
//  6. poison: a corpus of unprocessable messages written into the event
//     topic between the valid events;
//  7. sigterm-all: SIGTERM the listener, the processors, Kafka and NATS at
//     once, mid-load, and start them again. The stand-ins stay: they are
//     the external services, and their state is in memory;
//  8. nats-node-kill: on a cluster of three NATS servers with the streams
//     and KV buckets at R3, kill -9 a server that does not lead the work
//     stream, and start it again;
//  9. nats-leader-kill: the same for the server that leads the work stream.
//  10. repeat-faults: STS throttles until sources changed meanwhile park,
//     the retries apply the change, then the same sources are changed and
//     parked again under a second fault, inside the duplicate window.
//
// Then it checks, from what the stand-ins recorded, the Kafka topics and
// the JetStream streams, that nothing was lost or duplicated, that no
// source's order was violated and that no transient fault was reported as
// unavailable (see Result). Randomness comes from a seed; waits are on
// conditions with deadlines.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloudoreg/cloudoreg/shared/standin/faults"
	"github.com/cloudoreg/cloudoreg/shared/standin/sts"
)

// Scale sets how big and long each scenario is.
type Scale struct {
	Sources  int           // sources each scenario's workload creates
	Workload time.Duration // how long the workload spreads its changes over
	Repeats  int           // how often a repeated fault (a kill) is injected
	Outage   time.Duration // how long a dependency fault or a broker outage lasts
	Settle   time.Duration // how long the system may take to recover
	Apart    time.Duration // between the two fault episodes of repeat-faults
}

// Scales: Short runs inside `make test`, Full is `make chaos`.
var (
	Short = Scale{Sources: 24, Workload: 4 * time.Second, Repeats: 2, Outage: 1500 * time.Millisecond, Settle: 90 * time.Second, Apart: 2 * time.Second}
	Full  = Scale{Sources: 300, Workload: 25 * time.Second, Repeats: 6, Outage: 5 * time.Second, Settle: 3 * time.Minute, Apart: 2 * time.Minute}
)

// Options configure a run.
type Options struct {
	BinDir string // bin/listener, bin/processor, bin/stack
	Scale  Scale
	Seed   uint64
	// LogDir receives <scenario>.log with every process's output; empty:
	// logs are discarded.
	LogDir string
	// DataDir holds the brokers' data of each scenario (removed after);
	// empty: the system's temporary directory.
	DataDir string
	// Only, when set, names the scenarios to run.
	Only []string
	// Env is added to every process's environment after the harness's own
	// settings (programEnv): to try a configuration, or to check that the
	// invariants catch a bad one (RETRY_BUDGET=2s must fail).
	Env []string
	// Progress receives a line per step; nil: none.
	Progress io.Writer
}

// Scenario is one kind of trouble.
type Scenario struct {
	Name        string
	Description string
	inject      func(ctx context.Context, f *fault) error
	// cluster runs NATS as a cluster of natsCluster servers, each its own
	// process, with Cloudoreg's streams and KV buckets on all of them.
	cluster bool
}

// Scenarios are the faults of issue 7, in order, then the loss of a NATS
// server of a cluster (issue 14).
var Scenarios = []Scenario{
	{"listener-kill", "kill -9 the listener at random moments and restart it, repeatedly", injectListenerKills, false},
	{"processor-kill", "kill -9 one of three processors at random moments and restart it, repeatedly", injectProcessorKills, false},
	{"nats-restart", "restart the NATS server (SIGTERM, file store kept)", injectNATSRestarts, false},
	{"kafka-outage", "restart the Kafka broker (log kept) and freeze it (SIGSTOP) for a while", injectKafkaOutages, false},
	{"dependency-faults", "STS throttles, Sources answers 503, RHSM times out, each for a while", injectDependencyFaults, false},
	{"poison", "a poison corpus written into the event topic between the valid events", injectPoison, false},
	{"sigterm-all", "SIGTERM the listener, the processors, Kafka and NATS at once mid-load, then start them again", injectSigtermAll, false},
	{"nats-node-kill", "kill -9 a NATS server that does not lead the work stream (3 servers, R3) and restart it", injectNATSNodeKills, true},
	{"nats-leader-kill", "kill -9 the NATS server that leads the work stream (3 servers, R3) and restart it", injectNATSLeaderKills, true},
	{Name: "repeat-faults", Description: "STS throttles until the changed sources park, twice, the same sources changed again inside the duplicate window", inject: injectRepeatFaults},
}

// Run runs the chosen scenarios one after the other, each on a fresh
// system, and returns their results.
func Run(ctx context.Context, o Options) []*Result {
	var out []*Result
	for i, sc := range Scenarios {
		if len(o.Only) > 0 && !contains(o.Only, sc.Name) {
			continue
		}
		out = append(out, RunScenario(ctx, o, i, sc))
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// fault is what an injector works with.
type fault struct {
	sys   *system
	r     *rand.Rand
	scale Scale
	start time.Time
	res   *Result
	drv   *driver   // the workload's, for an injector that changes sources itself
	trust sts.Trust // the workload's trust table, which such an injector extends

	mu     sync.Mutex
	poison map[string]string
	last   time.Time // when the last fault was logged (injected or over)
}

// logf records an injected fault with the time since the workload began.
func (f *fault) logf(format string, args ...any) {
	line := fmt.Sprintf("t+%5.1fs ", time.Since(f.start).Seconds()) + fmt.Sprintf(format, args...)
	f.mu.Lock()
	f.res.Faults = append(f.res.Faults, line)
	f.last = time.Now()
	f.mu.Unlock()
	fmt.Fprintln(f.sys.out, "chaos       |", line)
}

// at waits until a fraction of the workload's duration has passed.
func (f *fault) at(ctx context.Context, fraction float64) error {
	return sleep(ctx, time.Until(f.start.Add(time.Duration(fraction*float64(f.scale.Workload)))))
}

// spread runs do n times, each at a random moment of its own slice of the
// workload.
func (f *fault) spread(ctx context.Context, n int, do func(i int) error) error {
	for i := 0; i < n; i++ {
		if err := f.at(ctx, (float64(i)+0.15+0.7*f.r.Float64())/float64(n)); err != nil {
			return err
		}
		if err := do(i); err != nil {
			return err
		}
	}
	return nil
}

// jitter is a random duration in [lo, hi).
func (f *fault) jitter(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(f.r.Float64()*float64(hi-lo))
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func injectListenerKills(ctx context.Context, f *fault) error {
	return f.spread(ctx, f.scale.Repeats, func(int) error {
		pid := f.sys.kill(listenerProc())
		f.logf("kill -9 listener (pid %d)", pid)
		if err := sleep(ctx, f.jitter(0, 300*time.Millisecond)); err != nil {
			return err
		}
		if err := f.sys.relaunch(listenerProc()); err != nil {
			return err
		}
		f.logf("listener restarted")
		return nil
	})
}

func injectProcessorKills(ctx context.Context, f *fault) error {
	return f.spread(ctx, f.scale.Repeats, func(int) error {
		i := f.r.IntN(processors)
		pid := f.sys.kill(processorProc(i))
		f.logf("kill -9 processor-%d (pid %d)", i+1, pid)
		if err := sleep(ctx, f.jitter(0, 500*time.Millisecond)); err != nil {
			return err
		}
		if err := f.sys.relaunch(processorProc(i)); err != nil {
			return err
		}
		f.logf("processor-%d restarted", i+1)
		return nil
	})
}

func injectNATSRestarts(ctx context.Context, f *fault) error {
	return f.spread(ctx, max(1, f.scale.Repeats/2), func(int) error {
		if err := f.sys.terminate(natsProc(0), 30*time.Second); err != nil {
			f.res.fail("NATS did not stop on SIGTERM: %v", err)
		}
		f.logf("NATS stopped (SIGTERM)")
		if err := sleep(ctx, f.jitter(f.scale.Outage/3, f.scale.Outage)); err != nil {
			return err
		}
		if err := f.sys.relaunch(natsProc(0)); err != nil {
			return err
		}
		f.logf("NATS restarted")
		return nil
	})
}

func injectKafkaOutages(ctx context.Context, f *fault) error {
	return f.spread(ctx, max(2, f.scale.Repeats/2), func(i int) error {
		down := f.jitter(f.scale.Outage/2, f.scale.Outage)
		if i%2 == 1 {
			if err := f.sys.signal(kafkaProc(), syscall.SIGSTOP); err != nil {
				return err
			}
			f.logf("Kafka frozen (SIGSTOP) for %.1fs", down.Seconds())
			err := sleep(ctx, down)
			if cerr := f.sys.signal(kafkaProc(), syscall.SIGCONT); cerr != nil {
				return cerr
			}
			f.logf("Kafka thawed (SIGCONT)")
			return err
		}
		if err := f.sys.terminate(kafkaProc(), 30*time.Second); err != nil {
			f.res.fail("Kafka did not stop on SIGTERM: %v", err)
		}
		f.logf("Kafka stopped (SIGTERM) for %.1fs", down.Seconds())
		if err := sleep(ctx, down); err != nil {
			return err
		}
		if err := f.sys.relaunch(kafkaProc()); err != nil {
			return err
		}
		f.logf("Kafka restarted")
		return nil
	})
}

func injectDependencyFaults(ctx context.Context, f *fault) error {
	steps := []struct {
		standin, what string
		fault         faults.Fault
	}{
		{"sts", "STS throttles (400 Throttling)", faults.Fault{Status: 400, Code: "Throttling"}},
		{"sources", "Sources answers 503", faults.Fault{Status: 503}},
		// Longer than the processors' RHSM_TIMEOUT (1s): every call times out.
		{"rhsm", "RHSM times out (answers after 1.5s)", faults.Fault{Delay: 1500 * time.Millisecond}},
	}
	for i, s := range steps {
		if err := f.at(ctx, (float64(i)+0.2+0.4*f.r.Float64())/float64(len(steps))); err != nil {
			return err
		}
		fl := s.fault
		fl.For = f.scale.Outage
		if err := f.sys.setFault(ctx, s.standin, &fl); err != nil {
			return err
		}
		f.logf("%s for %.1fs", s.what, fl.For.Seconds())
	}
	if err := sleep(ctx, f.scale.Outage); err != nil {
		return err
	}
	for _, s := range steps {
		if err := f.sys.setFault(ctx, s.standin, nil); err != nil {
			return err
		}
	}
	if err := setLatency(ctx, f.sys); err != nil {
		return err
	}
	f.logf("every dependency fault over")
	return nil
}

// setLatency gives STS and RHSM calls the latency of the real services, so
// that reconciles take a while and a fault finds work in flight (with
// instant stand-ins a kill -9 almost always hits an idle processor).
func setLatency(ctx context.Context, sys *system) error {
	if err := sys.setFault(ctx, "sts", &faults.Fault{Delay: 80 * time.Millisecond}); err != nil {
		return err
	}
	return sys.setFault(ctx, "rhsm", &faults.Fault{Delay: 60 * time.Millisecond})
}

func injectPoison(ctx context.Context, f *fault) error {
	f.poison = map[string]string{}
	return f.spread(ctx, f.scale.Repeats, func(i int) error {
		org := orgs[i%len(orgs)]
		corpus := poisonCorpus(org, maxEventBytes)
		at, err := producePoison([]string{f.sys.sys.KafkaAddr()}, eventsTopic, org, corpus)
		f.mu.Lock()
		for k, v := range at {
			f.poison[k] = v
		}
		f.mu.Unlock()
		if err != nil {
			return err
		}
		f.logf("%d poison messages written for org %s", len(corpus), org)
		return nil
	})
}

func injectSigtermAll(ctx context.Context, f *fault) error {
	if err := f.at(ctx, 0.3+0.3*f.r.Float64()); err != nil {
		return err
	}
	all := []proc{listenerProc(), kafkaProc(), natsProc(0)}
	for i := 0; i < processors; i++ {
		all = append(all, processorProc(i))
	}
	var wg sync.WaitGroup
	for _, p := range all {
		wg.Add(1)
		go func(p proc) {
			defer wg.Done()
			// Kafka and NATS go at the same moment as the programs, so these
			// must stop without them: a program that needs its brokers to
			// shut down hangs here and is killed after 30s.
			if err := f.sys.terminate(p, 30*time.Second); err != nil {
				f.mu.Lock()
				f.res.fail("%s did not stop on SIGTERM: %v", p.name, err)
				f.mu.Unlock()
			}
		}(p)
	}
	f.logf("SIGTERM to listener, %d processors, Kafka and NATS", processors)
	wg.Wait()
	f.logf("everything stopped")
	for _, p := range all {
		f.sys.mu.Lock()
		r := p.get(f.sys.sys)
		f.sys.mu.Unlock()
		if err := r.Err(); err != nil && p.name != "kafka" && p.name != natsProc(0).name {
			f.res.fail("%s exited with %v on SIGTERM", p.name, err)
		}
	}
	if err := sleep(ctx, f.jitter(200*time.Millisecond, time.Second)); err != nil {
		return err
	}
	for _, p := range []proc{kafkaProc(), natsProc(0)} {
		if err := f.sys.relaunch(p); err != nil {
			return err
		}
	}
	for i := 0; i < processors; i++ {
		if err := f.sys.relaunch(processorProc(i)); err != nil {
			return err
		}
	}
	if err := f.sys.relaunch(listenerProc()); err != nil {
		return err
	}
	f.logf("everything started again")
	return nil
}

// RunScenario runs one scenario on a fresh system and judges it.
func RunScenario(ctx context.Context, o Options, index int, sc Scenario) (res *Result) {
	res = &Result{Scenario: sc.Name}
	progress := func(format string, args ...any) {
		if o.Progress != nil {
			fmt.Fprintf(o.Progress, "%-18s %s\n", sc.Name, fmt.Sprintf(format, args...))
		}
	}
	out := io.Discard
	if o.LogDir != "" {
		if err := os.MkdirAll(o.LogDir, 0o750); err != nil {
			res.Err = err
			return res
		}
		lf, err := os.Create(filepath.Join(o.LogDir, sc.Name+".log"))
		if err != nil {
			res.Err = err
			return res
		}
		defer lf.Close()
		out = &lockedWriter{w: lf}
	}
	dataDir, err := tempDir(o.DataDir, sc.Name)
	if err != nil {
		res.Err = err
		return res
	}
	defer os.RemoveAll(dataDir)

	skips := &skipCounter{w: out}
	natsServers, env, nats := 1, o.Env, "NATS"
	if sc.cluster {
		natsServers, env = natsCluster, append(append([]string(nil), clusterEnv...), o.Env...)
		nats = fmt.Sprintf("a cluster of %d NATS servers", natsCluster)
	}
	progress("starting Kafka, %s, the stand-ins, %d processors and the listener", nats, processors)
	sys, err := startSystem(ctx, o.BinDir, dataDir, skips, natsServers, env)
	if err != nil {
		res.Err = fmt.Errorf("starting the system: %w", err)
		return res
	}
	stopped := false
	defer func() {
		if !stopped {
			sys.stop()
		}
	}()

	r := rand.New(rand.NewPCG(o.Seed, uint64(index)))
	p := makePlan(r, index+1, o.Scale.Sources, o.Scale.Workload)
	if err := sys.setTrust(ctx, p.Trust); err != nil {
		res.Err = err
		return res
	}
	if err := setLatency(ctx, sys); err != nil {
		res.Err = err
		return res
	}
	drv := newDriver(sys.sys.SourcesURL())
	f := &fault{sys: sys, r: rand.New(rand.NewPCG(o.Seed^0x9e3779b97f4a7c15, uint64(index))), scale: o.Scale, start: time.Now(), res: res, drv: drv, trust: p.Trust}
	progress("workload of %d sources over %s, with: %s", o.Scale.Sources, o.Scale.Workload, sc.Description)
	var wg sync.WaitGroup
	var workErr, injectErr error
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(2)
	go func() {
		defer wg.Done()
		if workErr = drv.run(wctx, p); workErr != nil {
			cancel()
		}
	}()
	go func() {
		defer wg.Done()
		if injectErr = sc.inject(wctx, f); injectErr != nil {
			cancel()
		}
	}()
	wg.Wait()
	res.Ops = drv.opCount()
	// Recovery counts from the end of the last fault (a process ready
	// again, a stand-in healthy again); the workload may still have been
	// making changes then, which the system must also have caught up with.
	faultsOver := f.last
	if faultsOver.IsZero() {
		faultsOver = time.Now()
	}
	if err := errors.Join(workErr, injectErr); err != nil {
		res.Err = err
		return res
	}
	if x := sys.exited(); x != "" {
		res.fail("a process exited by itself: %s", x)
	}

	model := drv.model()
	in := sys.inspector()
	progress("faults and workload over after %.1fs (%d changes); waiting for the system to settle", time.Since(f.start).Seconds(), res.Ops)
	why := settle(ctx, in, model, o.Scale.Settle)
	if why == "" {
		res.Recovered, res.Recovery = true, time.Since(faultsOver)
	} else {
		res.fail("not settled %s after the faults: %s", o.Scale.Settle, why)
	}
	ev, err := collect(ctx, in, model, f.poison)
	if err != nil {
		res.Err = fmt.Errorf("collecting the evidence: %w", err)
		return res
	}
	judge(res, ev)
	res.Skipped = skips.counts()
	if x := sys.exited(); x != "" {
		res.fail("a process exited by itself: %s", x)
	}
	stopped = true
	for _, p := range sys.stop() {
		res.fail("stopping the system with SIGTERM: %s", p)
	}
	return res
}

// settle waits until the listener has committed every event, the
// processors have nothing pending, nothing is parked, every stream has its
// leader and all replicas current, and every source is in its deserved
// state; it returns what was still missing at the
// deadline, or "".
func settle(ctx context.Context, in *inspector, model []*source, limit time.Duration) string {
	return waitFor(ctx, limit, func(ctx context.Context) string { return notSettled(ctx, in, model) })
}

// waitFor checks cond every 250ms until it returns "" or limit passes,
// and returns its last answer (what was still missing). Each check has 5s:
// a request to a NATS server that has just restarted, before it has found
// its cluster, gets no answer, and must not hold the wait to its end.
func waitFor(ctx context.Context, limit time.Duration, cond func(context.Context) string) string {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	last := "not checked"
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		why := cond(cctx)
		ccancel()
		if why == "" {
			return ""
		}
		if ctx.Err() == nil { // an answer cut short by the deadline tells nothing
			last = why
		}
		select {
		case <-ctx.Done():
			return last
		case <-tick.C:
		}
	}
}

func notSettled(ctx context.Context, in *inspector, model []*source) string {
	lag, err := in.listenerLag()
	if err != nil {
		return "listener lag: " + err.Error()
	}
	if lag > 0 {
		return fmt.Sprintf("the listener has %d events to forward", lag)
	}
	nc, js, err := in.connectNATS()
	if err != nil {
		return "NATS: " + err.Error()
	}
	defer nc.Close()
	b, err := busy(ctx, js)
	if err != nil {
		return "work stream: " + err.Error()
	}
	if b != "" {
		return b
	}
	if _, behind, err := clusterState(ctx, js); err != nil {
		return "NATS cluster: " + err.Error()
	} else if behind != "" {
		return "NATS cluster: " + behind
	}
	apps, err := in.apps(ctx)
	if err != nil {
		return err.Error()
	}
	regs, err := in.registrations(ctx)
	if err != nil {
		return err.Error()
	}
	var check Result
	checkEndStates(&check, evidence{model: model, apps: apps, regs: regs}, indexSources(model))
	if len(check.Failures) > 0 {
		return fmt.Sprintf("%d end-state failures, first: %s", len(check.Failures), check.Failures[0])
	}
	return ""
}

func indexSources(model []*source) map[string]*source {
	m := map[string]*source{}
	for _, s := range model {
		m[s.ID] = s
	}
	return m
}

// collect reads every record the invariants are checked on. It waits
// (briefly) for Sources to have read the whole status topic.
func collect(ctx context.Context, in *inspector, model []*source, poison map[string]string) (evidence, error) {
	ev := evidence{model: model, poison: poison}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var err error
	if ev.events, err = in.readTopic(ctx, eventsTopic); err != nil {
		return ev, err
	}
	// A status message missing from the log after this wait is lost.
	caughtUp := time.Now().Add(15 * time.Second)
	for {
		if ev.statuses, err = in.readTopic(ctx, statusTopic); err != nil {
			return ev, err
		}
		if ev.log, err = in.statusLog(ctx); err != nil {
			return ev, err
		}
		read := map[string]bool{}
		for _, rec := range ev.log {
			read[fmt.Sprintf("%d/%d", rec.Partition, rec.Offset)] = true
		}
		all := true
		for _, m := range ev.statuses {
			all = all && read[fmt.Sprintf("%d/%d", m.Partition, m.Offset)]
		}
		if all || time.Now().After(caughtUp) {
			break
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return ev, err
		}
	}
	if ev.apps, err = in.apps(ctx); err != nil {
		return ev, err
	}
	if ev.regs, err = in.registrations(ctx); err != nil {
		return ev, err
	}
	err = retryNATS(ctx, func(ctx context.Context) error {
		var err error
		ev.work, ev.dlq, err = readWorkStreams(ctx, in)
		return err
	})
	return ev, err
}

// lockedWriter serialises the log writes of the harness and the processes.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Report formats the results: a summary line per scenario, then the faults
// and failures of those that failed.
func Report(results []*Result, verbose bool) string {
	var b strings.Builder
	for _, r := range results {
		fmt.Fprintln(&b, r.Summary())
		for _, l := range r.Figures {
			fmt.Fprintf(&b, "%-18s %s\n", "", l)
		}
	}
	for _, r := range results {
		if r.Passed() && !verbose {
			continue
		}
		fmt.Fprintf(&b, "\n%s:\n", r.Scenario)
		if r.Err != nil {
			fmt.Fprintf(&b, "  harness error: %v\n", r.Err)
		}
		for _, l := range r.Faults {
			fmt.Fprintf(&b, "  fault   %s\n", l)
		}
		for _, l := range r.Failures {
			fmt.Fprintf(&b, "  FAILED  %s\n", l)
		}
	}
	return b.String()
}
