package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/scripts/internal/stack"
	"github.com/cloudoreg/cloudoreg/shared/config"
	"github.com/cloudoreg/cloudoreg/shared/kafka"
	"github.com/cloudoreg/cloudoreg/shared/testkit"
	"github.com/cloudoreg/cloudoreg/shared/work"
	"github.com/cloudoreg/cloudoreg/shared/workstream"
)

// standinEventsTopic takes the events the Sources stand-in emits while the
// harness creates sources: the rows write their own topics.
const standinEventsTopic = "bench.standin-events"

// env is the surroundings of every row: one kfake broker, one NATS server
// with a JetStream file store, the stand-ins (all in this process, as
// bin/stack runs them), and clients of each.
type env struct {
	opts  Options
	stack *stack.Stack
	nc    *nats.Conn
	js    jetstream.JetStream
	admin sarama.ClusterAdmin
	log   *logrus.Logger
	runs  int // unique names of groups, topics and streams

	sources     []source // created once, reused by the processor rows
	forwardRate float64  // row 1's listener rate (row 3's baseline)
	bridgeRSS   int64    // row 1's bridge peak RSS (row 7's baseline)
}

func startEnv(ctx context.Context, o Options) (*env, error) {
	log := logrus.New()
	log.SetOutput(io.Discard)
	st, err := stack.Start(ctx, stack.Config{
		EventsTopic: standinEventsTopic, StatusTopic: "platform.sources.status", Partitions: o.KafkaPartitions,
		PSK: "cloudoreg-local-psk", BindHost: "127.0.0.1",
		AvailabilityCheckURL: "http://127.0.0.1:1/unused",
	}, log)
	if err != nil {
		return nil, err
	}
	e := &env{opts: o, stack: st, log: log}
	if e.nc, err = nats.Connect(st.NATSURL); err != nil {
		e.close()
		return nil, err
	}
	if e.js, err = jetstream.New(e.nc, jetstream.WithPublishAsyncMaxPending(4096)); err != nil {
		e.close()
		return nil, err
	}
	sc, err := kafka.Config(config.Kafka{Brokers: []string{st.KafkaAddr}}, "cloudoreg-bench")
	if err != nil {
		e.close()
		return nil, err
	}
	if e.admin, err = sarama.NewClusterAdmin([]string{st.KafkaAddr}, sc); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *env) close() {
	if e.admin != nil {
		_ = e.admin.Close()
	}
	if e.nc != nil {
		e.nc.Close()
	}
	e.stack.Close()
}

// name returns a name used once in this run.
func (e *env) name(prefix string) string {
	e.runs++
	return fmt.Sprintf("%s-%d", prefix, e.runs)
}

func (e *env) createTopic(name string) error {
	return e.admin.CreateTopic(name, &sarama.TopicDetail{NumPartitions: int32(e.opts.KafkaPartitions), ReplicationFactor: 1}, false)
}

// workStream (re)creates the work stream, empty, as the processors declare it.
func (e *env) workStream(ctx context.Context) error {
	_ = e.js.DeleteStream(ctx, work.StreamName)
	return workstream.EnsureStreams(ctx, e.js, e.streamSettings())
}

func (e *env) streamSettings() workstream.StreamSettings {
	return workstream.StreamSettings{Partitions: e.opts.Partitions, Replicas: 1, MaxAge: time.Hour, Duplicates: 20 * time.Minute, DLQMaxAge: time.Hour}
}

// streamMsgs is the number of messages a stream holds.
func (e *env) streamMsgs(ctx context.Context, name string) (uint64, error) {
	s, err := e.js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// committed is the sum of the group's committed offsets on topic.
func (e *env) committed(group, topic string) (int64, error) {
	parts := make([]int32, e.opts.KafkaPartitions)
	for i := range parts {
		parts[i] = int32(i)
	}
	res, err := e.admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	if errors.Is(err, sarama.ErrGroupIDNotFound) {
		return 0, nil // not joined yet
	}
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, b := range res.Blocks[topic] {
		if b.Offset > 0 {
			sum += b.Offset
		}
	}
	return sum, nil
}

// proc is a program of the bench run as a child process, its output going
// to a log file (a pod's stdout goes to a file too).
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	// metrics is the address of its /metrics, when it has one.
	metrics string
}

func (e *env) start(name, path string, args []string, extra ...string) (*proc, error) {
	if err := os.MkdirAll(e.opts.LogDir, 0o755); err != nil {
		return nil, err
	}
	out, err := os.Create(filepath.Join(e.opts.LogDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), extra...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = out.Close()
		close(p.done)
	}()
	return p, nil
}

// programEnv points a program at the surroundings, with its ports.
func (e *env) programEnv(metricsPort int, extra ...string) []string {
	s := e.stack
	env := []string{
		"KAFKA_BROKERS=" + s.KafkaAddr, "NATS_URL=" + s.NATSURL, "SOURCES_URL=" + s.SourcesURL,
		"RHSM_URL=" + s.RHSMURL, "STS_ENDPOINT=" + s.STSURL,
		"AWS_ACCESS_KEY_ID=bench", "AWS_SECRET_ACCESS_KEY=bench",
		"METRICS_PORT=" + strconv.Itoa(metricsPort), "LOG_LEVEL=" + e.opts.LogLevel, "LOG_FORMAT=json",
		"WORK_PARTITIONS=" + strconv.Itoa(e.opts.Partitions), "WORK_MAX_AGE=1h", "WORK_DLQ_MAX_AGE=1h",
		"KAFKA_COMMIT_INTERVAL=100ms", "KAFKA_LAG_INTERVAL=0", "SHUTDOWN_GRACE=5s", "RECONCILE_EVERY=0",
	}
	return append(env, extra...)
}

func (e *env) startListener(name, topic, group string, extra ...string) (*proc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	env := e.programEnv(port, append([]string{
		"KAFKA_EVENTS_TOPIC=" + topic, "KAFKA_GROUP_ID=" + group, "KAFKA_GROUP_INSTANCE_ID=" + group,
	}, extra...)...)
	p, err := e.start(name, filepath.Join(e.opts.BinDir, "listener"), nil, env...)
	if err != nil {
		return nil, err
	}
	p.metrics = fmt.Sprintf("127.0.0.1:%d", port)
	return p, nil
}

func (e *env) startProcessor(name string, extra ...string) (*proc, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	env := e.programEnv(ports[0], append([]string{"PRIVATE_PORT=" + strconv.Itoa(ports[1])}, extra...)...)
	p, err := e.start(name, filepath.Join(e.opts.BinDir, "processor"), nil, env...)
	if err != nil {
		return nil, err
	}
	p.metrics = fmt.Sprintf("127.0.0.1:%d", ports[0])
	return p, nil
}

// startBridge runs the bare bridge (this program's bridge mode).
func (e *env) startBridge(name string, b BridgeOptions) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return e.start(name, self, b.args())
}

// waitReady waits for the program's /readyz.
func (p *proc) waitReady(ctx context.Context) error {
	return poll(ctx, 100*time.Millisecond, func() (bool, error) {
		select {
		case <-p.done:
			return false, fmt.Errorf("%s exited (see its log)", p.name)
		default:
		}
		resp, err := http.Get("http://" + p.metrics + "/readyz")
		if err != nil {
			return false, nil
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// stop sends SIGTERM and waits, killing after a grace period.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// peakRSS is the process's peak resident set (VmHWM) in bytes.
func (p *proc) peakRSS() (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", p.cmd.Process.Pid)
}

// metric sums the samples of the program's /metrics named name whose
// labels include label (e.g. `kind="x"`; empty: every sample).
func (p *proc) metric(name, label string) (float64, error) {
	return testkit.SumMetric(p.metrics, name, label)
}

// poll calls cond every interval until it is true, fails, or ctx ends.
func poll(ctx context.Context, interval time.Duration, cond func() (bool, error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func freePort() (int, error) {
	p, err := freePorts(1)
	if err != nil {
		return 0, err
	}
	return p[0], nil
}

// freePorts returns ports free now (held open together so they differ).
func freePorts(n int) ([]int, error) {
	var ports []int
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
