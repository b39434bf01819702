package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/cloudoreg/cloudoreg/scripts/internal/localrun"
	"github.com/cloudoreg/cloudoreg/scripts/internal/supervise"
	"github.com/cloudoreg/cloudoreg/shared/standin/faults"
)

// processors is how many processors every scenario runs.
const processors = 3

// maxEventBytes is the listener's LISTENER_MAX_EVENT_BYTES in the harness:
// small enough that the poison corpus's oversized event fits in a Kafka
// message.
const maxEventBytes = 64 << 10

// programEnv tunes the programs for a run of minutes instead of hours. Each
// setting only shortens a wait (redelivery, retry, commit); the retry
// budget stays far longer than any fault, so a transient fault must never
// become an unavailable status.
var programEnv = []string{
	"LOG_LEVEL=info",
	"WORK_ACK_WAIT=4s",
	"RETRY_IN_PLACE=4s", "RETRY_BASE=100ms", "RETRY_MAX=1s",
	"RETRY_BUDGET=1h", "RETRY_PARK_BASE=500ms", "RETRY_PARK_MAX=2s", "RETRY_SWEEP_INTERVAL=250ms",
	"SOURCES_TIMEOUT=3s", "STS_TIMEOUT=3s", "RHSM_TIMEOUT=1s",
	"KAFKA_COMMIT_INTERVAL=250ms",
	"LISTENER_RETRY_BASE=50ms", "LISTENER_RETRY_MAX=1s",
	"LISTENER_MAX_EVENT_BYTES=" + strconv.Itoa(maxEventBytes),
	"SHUTDOWN_GRACE=5s",
}

// natsCluster is how many NATS servers the cluster scenarios run, and
// clusterEnv puts Cloudoreg's streams and KV buckets on all of them.
const natsCluster = 3

var clusterEnv = []string{"WORK_REPLICAS=3", "KV_REPLICAS=3"}

// system is one scenario's processes: Kafka, NATS (one server, or a process
// per server of a cluster) and the stand-ins as processes of bin/stack,
// three processors and the listener.
type system struct {
	sys *localrun.System
	ctx context.Context
	out io.Writer
	dir string

	mu sync.Mutex // guards sys's process fields while a fault replaces one
}

func startSystem(ctx context.Context, binDir, dataDir string, out io.Writer, natsServers int, env []string) (*system, error) {
	ports, err := localrun.FreePorts(processors, natsServers)
	if err != nil {
		return nil, err
	}
	sys, err := localrun.Start(ctx, localrun.Options{
		BinDir: binDir, Processors: processors, Out: out, LogFormat: "json",
		Env: append(append([]string(nil), programEnv...), env...), Ports: &ports, Split: true, DataDir: dataDir,
		NATSServers: natsServers,
	})
	s := &system{sys: sys, ctx: ctx, out: out, dir: dataDir}
	if err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// stop stops every process in order (SIGTERM) and returns the problems:
// a process that had to be killed, or that exited with an error.
func (s *system) stop() []string {
	if s.sys == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var problems []string
	if err := s.sys.Stop(30 * time.Second); err != nil {
		problems = append(problems, err.Error())
	}
	for _, r := range s.sys.Processes() {
		select {
		case <-r.Done():
			if err := r.Err(); err != nil {
				problems = append(problems, fmt.Sprintf("%s exited with %v", r.Name, err))
			}
		default:
		}
	}
	for _, p := range problems {
		fmt.Fprintln(s.out, "chaos       | stopping:", p)
	}
	return problems
}

func (s *system) inspector() *inspector {
	return &inspector{
		sourcesURL: s.sys.SourcesURL(), rhsmURL: s.sys.RHSMBaseURL(),
		brokers: []string{s.sys.KafkaAddr()}, natsURL: s.sys.NATSURL(),
		http: &http.Client{Timeout: 30 * time.Second},
	}
}

// proc names a replaceable process of the system.
type proc struct {
	name string
	get  func(*localrun.System) *supervise.Running
	set  func(*localrun.System, *supervise.Running)
	def  func(*localrun.System) supervise.Proc
}

func listenerProc() proc {
	return proc{"listener",
		func(s *localrun.System) *supervise.Running { return s.Listener },
		func(s *localrun.System, r *supervise.Running) { s.Listener = r },
		(*localrun.System).ListenerProc}
}

func processorProc(i int) proc {
	return proc{fmt.Sprintf("processor-%d", i+1),
		func(s *localrun.System) *supervise.Running { return s.Processors[i] },
		func(s *localrun.System, r *supervise.Running) { s.Processors[i] = r },
		func(s *localrun.System) supervise.Proc { return s.ProcessorProc(i) }}
}

func kafkaProc() proc {
	return proc{"kafka",
		func(s *localrun.System) *supervise.Running { return s.Kafka },
		func(s *localrun.System, r *supervise.Running) { s.Kafka = r },
		(*localrun.System).KafkaProc}
}

// natsProc is NATS server i (from 0): the only one, or one of a cluster.
func natsProc(i int) proc {
	return proc{fmt.Sprintf("nats-%d", i+1),
		func(s *localrun.System) *supervise.Running { return s.NATS[i] },
		func(s *localrun.System, r *supervise.Running) { s.NATS[i] = r },
		func(s *localrun.System) supervise.Proc { return s.NATSProc(i) }}
}

// kill sends SIGKILL to the process and waits for it to be reaped.
func (s *system) kill(p proc) int {
	s.mu.Lock()
	r := p.get(s.sys)
	s.mu.Unlock()
	pid := r.Pid()
	r.Kill()
	return pid
}

// terminate sends SIGTERM and waits for the process to exit (killing it
// after grace), and reports whether it stopped by itself.
func (s *system) terminate(p proc, grace time.Duration) error {
	s.mu.Lock()
	r := p.get(s.sys)
	s.mu.Unlock()
	return r.Stop(grace)
}

// signal sends sig (SIGSTOP, SIGCONT) to the process.
func (s *system) signal(p proc, sig syscall.Signal) error {
	s.mu.Lock()
	r := p.get(s.sys)
	s.mu.Unlock()
	return syscall.Kill(r.Pid(), sig)
}

// relaunch starts the process again (same ports, same data) and waits
// until it is ready.
func (s *system) relaunch(p proc) error {
	s.mu.Lock()
	def := p.def(s.sys)
	s.mu.Unlock()
	r, err := s.sys.Launch(s.ctx, def)
	if r != nil {
		s.mu.Lock()
		p.set(s.sys, r)
		s.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("restarting %s: %w", p.name, err)
	}
	return nil
}

// exited names a process that stopped although no fault stopped it.
func (s *system) exited() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.sys.Processes() {
		select {
		case <-r.Done():
			return fmt.Sprintf("%s (pid %d): %v", r.Name, r.Pid(), r.Err())
		default:
		}
	}
	return ""
}

// setFault sets (or with f nil clears) the fault of a stand-in: "sources",
// "rhsm" or "sts".
func (s *system) setFault(ctx context.Context, standin string, f *faults.Fault) error {
	base := map[string]string{"sources": s.sys.SourcesURL(), "rhsm": s.sys.RHSMBaseURL(), "sts": s.sys.STSURL()}[standin]
	method, body := http.MethodDelete, []byte(nil)
	if f != nil {
		method = http.MethodPost
		body, _ = json.Marshal(f)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+faults.AdminPath, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("%s %s%s: HTTP %d", method, standin, faults.AdminPath, resp.StatusCode)
	}
	return nil
}

// setTrust replaces the STS stand-in's trust table.
func (s *system) setTrust(ctx context.Context, trust any) error {
	body, _ := json.Marshal(trust)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.sys.STSURL()+"/_trust", bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST /_trust: HTTP %d: %s", resp.StatusCode, b)
	}
	return nil
}

// tempDir makes a data directory for one scenario.
func tempDir(parent, name string) (string, error) {
	return os.MkdirTemp(parent, "chaos-"+name+"-")
}
