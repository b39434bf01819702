// Package localrun starts the whole system as separate processes on this
// machine: the local stack, one listener and N processors, each on its own
// ports, all from the binaries `make build` puts in bin/.
package localrun

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cloudoreg/cloudoreg/scripts/internal/supervise"
	"github.com/cloudoreg/cloudoreg/shared/backoff"
	"github.com/cloudoreg/cloudoreg/shared/testkit"
)

// Documented local ports.
const (
	SourcesURL      = "http://127.0.0.1:8000"
	RHSMURL         = "http://127.0.0.1:8001/management/v1"
	ListenerMetrics = 9100
	// Processor i (from 0) serves metrics on 9101+i and the availability
	// check on 10000+i.
	ProcessorMetricsBase = 9101
	ProcessorPrivateBase = 10000
)

// host is the interface every process of a local run listens on.
const host = "127.0.0.1"

// Ports are where the stack and the programs listen, all on 127.0.0.1.
type Ports struct {
	Kafka, Sources, RHSM, STS int
	// NATS and NATSRoute are the client and route ports of the first NATS
	// server; server i of a cluster listens on NATS+i and NATSRoute+i.
	NATS, NATSRoute int
	ListenerMetrics int
	// ProcessorMetrics[i] and ProcessorPrivate[i] are processor i's metrics
	// port and availability-check port.
	ProcessorMetrics, ProcessorPrivate []int
}

// PortVars are the environment variables that move the ports of `make
// run` and `make demo`, with the README's values. The stack's are those
// bin/stack reads itself; processor i listens on the processors' ports + i.
var PortVars = []struct {
	Name    string
	Default int
}{
	{"KAFKA_PORT", 9092}, {"NATS_PORT", 4222}, {"STACK_NATS_ROUTE_PORT", 6222},
	{"SOURCES_PORT", 8000}, {"RHSM_PORT", 8001}, {"STS_PORT", 8002},
	{"LISTENER_METRICS_PORT", ListenerMetrics},
	{"PROCESSOR_METRICS_PORT", ProcessorMetricsBase}, {"PROCESSOR_PRIVATE_PORT", ProcessorPrivateBase},
}

// PortsFromEnv are the ports of a system of n processors: the README's,
// each moved by its variable of PortVars when getenv gives one.
func PortsFromEnv(n int, getenv func(string) string) (Ports, error) {
	v := map[string]int{}
	for _, pv := range PortVars {
		v[pv.Name] = pv.Default
		raw := getenv(pv.Name)
		if raw == "" {
			continue
		}
		port, err := strconv.Atoi(raw)
		if err != nil || port < 1 || port > 65535 {
			return Ports{}, fmt.Errorf("%s=%q is not a port (1 to 65535)", pv.Name, raw)
		}
		v[pv.Name] = port
	}
	p := Ports{
		Kafka: v["KAFKA_PORT"], NATS: v["NATS_PORT"], NATSRoute: v["STACK_NATS_ROUTE_PORT"],
		Sources: v["SOURCES_PORT"], RHSM: v["RHSM_PORT"], STS: v["STS_PORT"], ListenerMetrics: v["LISTENER_METRICS_PORT"],
	}
	for i := 0; i < n; i++ {
		p.ProcessorMetrics = append(p.ProcessorMetrics, v["PROCESSOR_METRICS_PORT"]+i)
		p.ProcessorPrivate = append(p.ProcessorPrivate, v["PROCESSOR_PRIVATE_PORT"]+i)
	}
	return p, nil
}

// usedPort is one port of a system: what listens on it, and the variable
// that moves it.
type usedPort struct {
	port       int
	what, knob string
}

func (p Ports) used(natsServers int) []usedPort {
	out := []usedPort{
		{p.Kafka, "Kafka", "KAFKA_PORT"}, {p.Sources, "the Sources stand-in", "SOURCES_PORT"},
		{p.RHSM, "the RHSM stand-in", "RHSM_PORT"}, {p.STS, "the STS stand-in", "STS_PORT"},
		{p.ListenerMetrics, "the listener's metrics", "LISTENER_METRICS_PORT"},
	}
	for i := 0; i < natsServers; i++ {
		out = append(out, usedPort{p.NATS + i, fmt.Sprintf("NATS server %d", i+1), "NATS_PORT"})
		if natsServers > 1 {
			out = append(out, usedPort{p.NATSRoute + i, fmt.Sprintf("NATS server %d's routes", i+1), "STACK_NATS_ROUTE_PORT"})
		}
	}
	for i := range p.ProcessorMetrics {
		out = append(out, usedPort{p.ProcessorMetrics[i], fmt.Sprintf("processor %d's metrics", i+1), "PROCESSOR_METRICS_PORT"})
	}
	for i := range p.ProcessorPrivate {
		out = append(out, usedPort{p.ProcessorPrivate[i], fmt.Sprintf("processor %d's status API", i+1), "PROCESSOR_PRIVATE_PORT"})
	}
	return out
}

// checkFree fails, naming each port, when two parts share a port or a
// port is taken already. Checked before anything starts: a part that
// cannot bind would otherwise look ready while another program (an earlier
// `make run`) answers on its port.
func checkFree(ports []usedPort) error {
	var problems []string
	seen := map[int]usedPort{}
	for _, u := range ports {
		if o, dup := seen[u.port]; dup {
			problems = append(problems, fmt.Sprintf("port %d is given to both %s (%s) and %s (%s)", u.port, o.what, o.knob, u.what, u.knob))
			continue
		}
		seen[u.port] = u
		l, err := net.Listen("tcp", addr(u.port))
		if err != nil {
			problems = append(problems, fmt.Sprintf("port %d, for %s, is in use (%s moves it)", u.port, u.what, u.knob))
			continue
		}
		_ = l.Close()
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("cannot start on 127.0.0.1 (is another `make run` running?):\n  %s", strings.Join(problems, "\n  "))
}

// FreePorts picks ports that are free now for a system of n processors and
// natsServers NATS servers (consecutive client and route ports), so that
// tests never collide with the documented ports a developer's `make run`
// holds. Ports are fixed for the life of the system: a restarted broker must
// come back where its clients look for it (testkit.Ports says where they
// are drawn from, and why).
func FreePorts(n, natsServers int) (Ports, error) {
	sizes := []int{1, max(1, natsServers), max(1, natsServers), 1, 1, 1, 1}
	for i := 0; i < 2*n; i++ {
		sizes = append(sizes, 1)
	}
	nums, err := testkit.PortRuns(sizes...)
	if err != nil {
		return Ports{}, err
	}
	return Ports{
		Kafka: nums[0], NATS: nums[1], NATSRoute: nums[2], Sources: nums[3], RHSM: nums[4], STS: nums[5], ListenerMetrics: nums[6],
		ProcessorMetrics: nums[7 : 7+n], ProcessorPrivate: nums[7+n:],
	}, nil
}

// Options choose what to start.
type Options struct {
	BinDir     string
	Processors int
	Out        io.Writer
	LogFormat  string   // text (readable) or json
	Env        []string // added to every program's environment
	// Ports: nil means the README's, each moved by its variable of PortVars
	// (PortsFromEnv with the process's environment).
	Ports *Ports
	// Split runs the stack as three processes (Kafka, NATS, the stand-ins)
	// instead of one, so that a broker can be restarted on its own, and each
	// server of a NATS cluster as a process of its own. Kafka keeps its log
	// and NATS its JetStream store in DataDir across restarts.
	Split bool
	// NATSServers is how many NATS servers run, clustered on loopback
	// (STACK_NATS_CLUSTER); 0 or 1: one server. The programs' NATS_URL lists
	// them all.
	NATSServers int
	// DataDir is the stack's data directory (STACK_DATA_DIR); empty: each
	// stack process uses a temporary one. Split needs it to keep data
	// across broker restarts.
	DataDir string
}

// System is the running set of processes. The harness that owns it may
// replace a process it stopped by one it started (see Launch).
type System struct {
	opts  Options
	ports Ports
	// Stack is the whole local stack (one process), unless Options.Split.
	Stack *supervise.Running
	// Kafka, NATS and StandIns are the stack's parts when Options.Split,
	// NATS one process per NATS server.
	Kafka, StandIns *supervise.Running
	NATS            []*supervise.Running
	Listener        *supervise.Running
	Processors      []*supervise.Running
}

// Start starts the stack, then the processors (they declare the work
// stream), then the listener, waiting for each to be ready.
func Start(ctx context.Context, o Options) (*System, error) {
	s := &System{opts: o}
	var err error
	if o.Ports != nil {
		s.ports = *o.Ports
	} else if s.ports, err = PortsFromEnv(o.Processors, os.Getenv); err != nil {
		return s, err
	}
	if len(s.ports.ProcessorMetrics) < o.Processors || len(s.ports.ProcessorPrivate) < o.Processors {
		return s, fmt.Errorf("ports for %d processors, not %d", len(s.ports.ProcessorMetrics), o.Processors)
	}
	if err := checkFree(s.ports.used(s.natsServers())); err != nil {
		return s, err
	}
	if o.Split {
		if s.Kafka, err = s.Launch(ctx, s.KafkaProc()); err != nil {
			return s, err
		}
		for i := 0; i < s.natsServers(); i++ {
			r, err := s.Launch(ctx, s.NATSProc(i))
			if r != nil {
				s.NATS = append(s.NATS, r)
			}
			if err != nil {
				return s, err
			}
		}
		if s.natsServers() > 1 {
			if err := awaitJetStream(ctx, s.NATSURL()); err != nil {
				return s, err
			}
		}
		if s.StandIns, err = s.Launch(ctx, s.StandInsProc()); err != nil {
			return s, err
		}
	} else if s.Stack, err = s.Launch(ctx, s.StackProc()); err != nil {
		return s, err
	}
	for i := 0; i < o.Processors; i++ {
		p, err := s.Launch(ctx, s.ProcessorProc(i))
		if p != nil {
			s.Processors = append(s.Processors, p)
		}
		if err != nil {
			return s, err
		}
	}
	if s.Listener, err = s.Launch(ctx, s.ListenerProc()); err != nil {
		return s, err
	}
	return s, nil
}

// awaitJetStream waits until the NATS servers at url answer JetStream
// requests. Servers of a cluster elect their meta leader only once a quorum
// of them has met, and a request sent before is lost: the processors' first
// declarations would wait for their timeout.
func awaitJetStream(ctx context.Context, url string) error {
	nc, err := nats.Connect(url, nats.Name("cloudoreg-localrun"), nats.RetryOnFailedConnect(true), nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var last error
	policy := backoff.Policy{Base: 50 * time.Millisecond, Max: 500 * time.Millisecond}
	err = policy.Retry(ctx, func() error {
		actx, acancel := context.WithTimeout(ctx, time.Second)
		defer acancel()
		_, err := js.AccountInfo(actx)
		return err
	}, func(_ int, err error) { last = err })
	if err != nil {
		return fmt.Errorf("the NATS cluster has no JetStream: %w", last)
	}
	return nil
}

// Launch starts p and waits (up to a minute) until it is ready. On a
// readiness failure it returns the process too, still running, so that the
// caller can stop it.
func (s *System) Launch(ctx context.Context, p supervise.Proc) (*supervise.Running, error) {
	r, err := supervise.Start(p, s.opts.Out)
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := r.WaitReady(wctx); err != nil {
		return r, err
	}
	return r, nil
}

// Ports are the ports of the system.
func (s *System) Ports() Ports { return s.ports }

// Addresses of the stack's parts.

// KafkaAddr is the broker's host:port.
func (s *System) KafkaAddr() string { return addr(s.ports.Kafka) }

// NATSURL lists the URL of every NATS server, comma-separated (NATS_URL).
func (s *System) NATSURL() string {
	urls := make([]string, s.natsServers())
	for i := range urls {
		urls[i] = "nats://" + addr(s.ports.NATS+i)
	}
	return strings.Join(urls, ",")
}

func (s *System) natsServers() int { return max(1, s.opts.NATSServers) }

// SourcesURL is the base URL of the Sources stand-in.
func (s *System) SourcesURL() string { return "http://" + addr(s.ports.Sources) }

// RHSMBaseURL is the RHSM stand-in's root (its /_calls, /_registrations).
func (s *System) RHSMBaseURL() string { return "http://" + addr(s.ports.RHSM) }

// STSURL is the STS stand-in's endpoint.
func (s *System) STSURL() string { return "http://" + addr(s.ports.STS) }

func addr(port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

func (s *System) env(extra ...string) []string {
	env := []string{"LOG_FORMAT=" + s.opts.LogFormat}
	env = append(env, s.opts.Env...)
	return append(env, extra...)
}

// stackEnv is what every stack process is told: all its ports, the
// processors' availability check and the data directory.
func (s *System) stackEnv(extra ...string) []string {
	p := s.ports
	env := []string{
		"KAFKA_PORT=" + strconv.Itoa(p.Kafka), "NATS_PORT=" + strconv.Itoa(p.NATS),
		"STACK_NATS_ROUTE_PORT=" + strconv.Itoa(p.NATSRoute), "STACK_NATS_CLUSTER=" + strconv.Itoa(s.natsServers()),
		"SOURCES_PORT=" + strconv.Itoa(p.Sources), "RHSM_PORT=" + strconv.Itoa(p.RHSM), "STS_PORT=" + strconv.Itoa(p.STS),
		"KAFKA_BROKERS=" + s.KafkaAddr(),
	}
	if len(p.ProcessorPrivate) > 0 {
		env = append(env, fmt.Sprintf("SOURCES_AVAILABILITY_CHECK_URL=http://%s/internal/api/cloudigrade/v1/availability_status", addr(p.ProcessorPrivate[0])))
	}
	if s.opts.DataDir != "" {
		env = append(env, "STACK_DATA_DIR="+s.opts.DataDir)
	}
	return s.env(append(env, extra...)...)
}

// programEnv points a program at the stack.
func (s *System) programEnv(extra ...string) []string {
	env := []string{
		"KAFKA_BROKERS=" + s.KafkaAddr(), "NATS_URL=" + s.NATSURL(), "SOURCES_URL=" + s.SourcesURL(),
		"RHSM_URL=" + s.RHSMBaseURL() + "/management/v1", "STS_ENDPOINT=" + s.STSURL(),
	}
	return s.env(append(env, extra...)...)
}

// StackProc is the local stack in one process.
func (s *System) StackProc() supervise.Proc {
	return supervise.Proc{Name: "stack", Path: filepath.Join(s.opts.BinDir, "stack"), Env: s.stackEnv(), ReadyAddr: addr(s.ports.Sources)}
}

// KafkaProc is the stack's Kafka broker alone, keeping its log in DataDir.
func (s *System) KafkaProc() supervise.Proc {
	return supervise.Proc{
		Name: "kafka", Path: filepath.Join(s.opts.BinDir, "stack"),
		Env:       s.stackEnv("STACK_SKIP_STANDINS=true", "STACK_EXTERNAL_NATS=true", "STACK_KAFKA_PERSIST=true"),
		ReadyAddr: s.KafkaAddr(),
	}
}

// NATSProc is the stack's NATS server i (from 0) alone, keeping its store
// in DataDir: "nats", or "nats-<i+1>" of a cluster.
func (s *System) NATSProc(i int) supervise.Proc {
	name, env := "nats", s.stackEnv("STACK_SKIP_STANDINS=true", "STACK_EXTERNAL_KAFKA=true")
	if s.natsServers() > 1 {
		name, env = fmt.Sprintf("nats-%d", i+1), append(env, "STACK_NATS_NODE="+strconv.Itoa(i+1))
	}
	return supervise.Proc{
		Name: name, Path: filepath.Join(s.opts.BinDir, "stack"), Env: env,
		ReadyAddr: addr(s.ports.NATS + i),
	}
}

// StandInsProc is the Sources, RHSM and STS stand-ins, using KafkaProc's broker.
func (s *System) StandInsProc() supervise.Proc {
	return supervise.Proc{
		Name: "standins", Path: filepath.Join(s.opts.BinDir, "stack"),
		Env:       s.stackEnv("STACK_EXTERNAL_KAFKA=true", "STACK_EXTERNAL_NATS=true"),
		ReadyAddr: addr(s.ports.Sources),
	}
}

// ListenerProc is the listener.
func (s *System) ListenerProc() supervise.Proc {
	port := s.ports.ListenerMetrics
	return supervise.Proc{
		Name: "listener", Path: filepath.Join(s.opts.BinDir, "listener"),
		Env:      s.programEnv("METRICS_PORT=" + strconv.Itoa(port)),
		ReadyURL: fmt.Sprintf("http://%s/readyz", addr(port)),
	}
}

// ProcessorProc is processor i.
func (s *System) ProcessorProc(i int) supervise.Proc {
	metrics := s.ports.ProcessorMetrics[i]
	return supervise.Proc{
		Name: fmt.Sprintf("processor-%d", i+1), Path: filepath.Join(s.opts.BinDir, "processor"),
		Env:      s.programEnv("METRICS_PORT="+strconv.Itoa(metrics), "PRIVATE_PORT="+strconv.Itoa(s.ports.ProcessorPrivate[i])),
		ReadyURL: fmt.Sprintf("http://%s/readyz", addr(metrics)),
	}
}

// Exited is closed when any process exits.
func (s *System) Exited() <-chan string {
	ch := make(chan string, 1)
	for _, r := range s.Processes() {
		go func(r *supervise.Running) {
			<-r.Done()
			select {
			case ch <- r.Name:
			default:
			}
		}(r)
	}
	return ch
}

// Processes lists the running processes in stopping order.
func (s *System) Processes() []*supervise.Running {
	var rs []*supervise.Running
	order := append([]*supervise.Running{s.Listener}, s.Processors...)
	order = append(order, s.Stack, s.StandIns)
	order = append(order, s.NATS...)
	order = append(order, s.Kafka)
	for _, r := range order {
		if r != nil {
			rs = append(rs, r)
		}
	}
	return rs
}

// Stop stops the listener first (it commits what it forwarded), then the
// processors (they finish their work), then the stack (the stand-ins before
// the brokers they use). A process that already exited is skipped.
func (s *System) Stop(grace time.Duration) error {
	var first error
	for _, r := range s.Processes() {
		select {
		case <-r.Done():
			continue
		default:
		}
		if err := r.Stop(grace); err != nil && first == nil {
			first = err
		}
	}
	return first
}
