// Package programs runs the real listener and processor binaries (built by
// the test with go build) as child processes against the local stack,
// in-process on loopback ports picked by the system, and checks what only
// whole programs show: how they stop on SIGTERM, and what they write to
// their output.
package programs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/scripts/internal/stack"
	"github.com/cloudoreg/cloudoreg/scripts/internal/supervise"
	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/standin/sources"
	"github.com/cloudoreg/cloudoreg/shared/testkit"
)

// waitLimit bounds every wait (a loaded CI machine under -race).
const waitLimit = 90 * time.Second

const (
	eventsTopic = "platform.sources.event-stream"
	statusTopic = "platform.sources.status"
)

// binDir holds the binaries TestMain builds.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cloudoreg-programs-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := func() int {
		defer os.RemoveAll(dir)
		for _, pkg := range []string{"listener/cmd/listener", "processor/cmd/processor"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(dir, filepath.Base(pkg)), "github.com/cloudoreg/cloudoreg/"+pkg).CombinedOutput()
			if err != nil {
				fmt.Fprintf(os.Stderr, "go build %s: %v\n%s", pkg, err, out)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// system is the local stack in-process and the programs as processes.
type system struct {
	t      *testing.T
	ctx    context.Context
	stack  *stack.Stack
	logs   *testkit.SyncBuffer // every line of the programs and the stand-ins
	common []string            // environment of every program

	listener   *program
	processors []*program
}

// program is one of the binaries with its fixed ports, so a restart keeps
// its addresses.
type program struct {
	name        string
	binary      string
	metricsPort int
	privatePort int
	env         []string
	run         *supervise.Running
}

func (p *program) opsAddr() string { return "127.0.0.1:" + strconv.Itoa(p.metricsPort) }

// systemConfig is what a test changes.
type systemConfig struct {
	processors int
	logs       *testkit.SyncBuffer // where all output goes; nil: a new buffer
	stack      stack.Config        // ports stay 0; topics and partitions are set
	common     []string            // added to every program's environment
	listener   []string
	processor  []string
}

func newSystem(t *testing.T, c systemConfig) *system {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &system{t: t, ctx: ctx, logs: c.logs}
	if s.logs == nil {
		s.logs = &testkit.SyncBuffer{}
	}
	ports := testkit.FreePorts(t, 1+2*c.processors)
	c.stack.EventsTopic, c.stack.StatusTopic, c.stack.Partitions = eventsTopic, statusTopic, 3
	c.stack.AvailabilityCheckURL = fmt.Sprintf("http://127.0.0.1:%d/internal/api/cloudigrade/v1/availability_status", ports[2])
	slog := logrus.New()
	slog.SetOutput(s.logs)
	slog.SetFormatter(&logrus.JSONFormatter{})
	slog.SetLevel(logrus.DebugLevel)
	st, err := stack.Start(ctx, c.stack, slog)
	if err != nil {
		cancel()
		t.Fatalf("local stack: %v", err)
	}
	s.stack = st
	t.Cleanup(func() {
		s.stopAll()
		cancel()
		st.Close()
		if t.Failed() {
			t.Logf("output of the failed run:\n%s", s.logs.String())
		}
	})
	natsURL := st.NATSURL
	s.common = append([]string{
		"KAFKA_BROKERS=" + st.KafkaAddr, "KAFKA_EVENTS_TOPIC=" + eventsTopic, "KAFKA_STATUS_TOPIC=" + statusTopic,
		"NATS_URL=" + natsURL, "SOURCES_URL=" + st.SourcesURL, "SOURCES_PSK=" + c.stack.PSK,
		"BIND_HOST=127.0.0.1", "LOG_FORMAT=json", "LOG_LEVEL=info",
	}, c.common...)
	s.listener = &program{name: "listener", binary: filepath.Join(binDir, "listener"), metricsPort: ports[0], env: append([]string{
		"METRICS_PORT=" + strconv.Itoa(ports[0]),
		"KAFKA_COMMIT_INTERVAL=100ms", "LISTENER_RETRY_BASE=20ms", "LISTENER_RETRY_MAX=200ms", "KAFKA_LAG_INTERVAL=1s",
	}, c.listener...)}
	for i := 0; i < c.processors; i++ {
		metricsPort, privatePort := ports[1+2*i], ports[2+2*i]
		s.processors = append(s.processors, &program{
			name: "processor-" + strconv.Itoa(i+1), binary: filepath.Join(binDir, "processor"),
			metricsPort: metricsPort, privatePort: privatePort,
			env: append([]string{
				"METRICS_PORT=" + strconv.Itoa(metricsPort), "PRIVATE_PORT=" + strconv.Itoa(privatePort),
				"STS_ENDPOINT=" + st.STSURL, "RHSM_URL=" + st.RHSMURL,
				"WORK_PARTITIONS=4", "WORK_ACK_WAIT=5s", "WORK_MAX_DELIVER=5",
				"RETRY_IN_PLACE=2s", "RETRY_BASE=50ms", "RETRY_MAX=400ms",
				"RETRY_BUDGET=30s", "RETRY_PARK_BASE=200ms", "RETRY_PARK_MAX=1s", "RETRY_SWEEP_INTERVAL=100ms",
			}, c.processor...),
		})
	}
	return s
}

// startAll starts the processors (they declare the work stream), then the
// listener, each waited for until /readyz answers 200.
func (s *system) startAll() {
	s.t.Helper()
	for _, p := range s.processors {
		s.start(p)
	}
	s.start(s.listener)
}

func (s *system) start(p *program) {
	s.t.Helper()
	r, err := supervise.Start(supervise.Proc{
		Name: p.name, Path: p.binary,
		Env:      append(append([]string{}, s.common...), p.env...),
		ReadyURL: "http://" + p.opsAddr() + "/readyz",
	}, s.logs)
	if err != nil {
		s.t.Fatal(err)
	}
	p.run = r
	ctx, cancel := context.WithTimeout(s.ctx, waitLimit)
	defer cancel()
	if err := r.WaitReady(ctx); err != nil {
		s.t.Fatalf("%s: %v", p.name, err)
	}
}

// terminate sends SIGTERM to every program given at once and returns how
// long each took to exit and how it exited. A program still running after
// limit is killed and reported.
func (s *system) terminate(limit time.Duration, ps ...*program) map[string]exit {
	s.t.Helper()
	var mu sync.Mutex
	out := map[string]exit{}
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func(p *program) {
			defer wg.Done()
			started := time.Now()
			err := p.run.Stop(limit)
			e := exit{took: time.Since(started), err: p.run.Err()}
			if err != nil {
				e.killed = true
			}
			mu.Lock()
			out[p.name] = e
			mu.Unlock()
		}(p)
	}
	wg.Wait()
	return out
}

type exit struct {
	took   time.Duration
	err    error // nil: exit status 0
	killed bool
}

// stopAll stops whatever still runs (cleanup).
func (s *system) stopAll() {
	for _, p := range append([]*program{s.listener}, s.processors...) {
		if p != nil && p.run != nil {
			select {
			case <-p.run.Done():
			default:
				_ = p.run.Stop(30 * time.Second)
			}
		}
	}
}

// created is what bulk_create made.
type created struct{ SourceID, AppID, AuthID string }

// createSource creates a source with a cloud-meter application and a
// cloud-meter-arn authentication, as the console does; headers are added to
// the request (tenant, identity).
func (s *system) createSource(name, arn, externalID string, headers map[string]string) (created, error) {
	auth := map[string]any{"resource_type": "application", "resource_name": "cloud-meter", "authtype": "cloud-meter-arn", "username": arn}
	if externalID != "" {
		auth["extra"] = map[string]any{"external_id": externalID}
	}
	body := map[string]any{
		"sources":         []any{map[string]any{"name": name, "source_type_name": "amazon"}},
		"applications":    []any{map[string]any{"source_name": name, "application_type_name": "cloud-meter"}},
		"authentications": []any{auth},
	}
	var out struct {
		Sources, Applications, Authentications []struct{ ID string }
	}
	if err := s.rest(http.MethodPost, "/api/sources/v3.1/bulk_create", headers, body, http.StatusCreated, &out); err != nil {
		return created{}, err
	}
	if len(out.Sources) != 1 || len(out.Applications) != 1 || len(out.Authentications) != 1 {
		return created{}, fmt.Errorf("bulk_create returned %+v", out)
	}
	return created{out.Sources[0].ID, out.Applications[0].ID, out.Authentications[0].ID}, nil
}

// rest calls the Sources stand-in's REST API.
func (s *system) rest(method, path string, headers map[string]string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.stack.SourcesURL+path, rd)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: HTTP %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func orgHeaders(org string) map[string]string { return map[string]string{event.HeaderOrgID: org} }

// awaitApps waits until every application satisfies pred, woken by the
// Sources stand-in's changes.
func (s *system) awaitApps(what string, appIDs []string, pred func(sources.Application) bool) sources.Snapshot {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, waitLimit)
	defer cancel()
	var last sources.Snapshot
	err := s.stack.Sources.Await(ctx, func(snap sources.Snapshot) bool {
		last = snap
		for _, id := range appIDs {
			if !pred(snap.Applications[id]) {
				return false
			}
		}
		return true
	})
	if err != nil {
		pending := 0
		for _, id := range appIDs {
			if !pred(last.Applications[id]) {
				pending++
			}
		}
		s.t.Fatalf("%d of %d applications never %s", pending, len(appIDs), what)
	}
	return last
}

// awaitSnapshot waits until the Sources stand-in's state satisfies pred.
func (s *system) awaitSnapshot(what string, pred func(sources.Snapshot) bool) sources.Snapshot {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, waitLimit)
	defer cancel()
	var last sources.Snapshot
	if err := s.stack.Sources.Await(ctx, func(snap sources.Snapshot) bool { last = snap; return pred(snap) }); err != nil {
		s.t.Fatalf("never %s", what)
	}
	return last
}

func hasStatus(a sources.Application) bool {
	return a.AvailabilityStatus == "available" || a.AvailabilityStatus == "unavailable"
}

// get fetches a URL of a program or stand-in.
func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: HTTP %d: %s", url, resp.StatusCode, b)
	}
	return string(b)
}
