// Package localrun starts the whole system as separate processes on this
// machine: the local stack, one listener and N processors, each on its own
// ports, all from the binaries `make build` puts in bin/.
package localrun

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cloudoreg/cloudoreg/scripts/internal/supervise"
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

// Options choose what to start.
type Options struct {
	BinDir     string
	Processors int
	Out        io.Writer
	LogFormat  string   // text (readable) or json
	Env        []string // added to every program's environment
}

// System is the running set of processes.
type System struct {
	opts       Options
	Stack      *supervise.Running
	Listener   *supervise.Running
	Processors []*supervise.Running
}

// Start starts the stack, then the processors (they declare the work
// stream), then the listener, waiting for each to be ready.
func Start(ctx context.Context, o Options) (*System, error) {
	s := &System{opts: o}
	var err error
	if s.Stack, err = s.start(ctx, s.StackProc()); err != nil {
		return s, err
	}
	for i := 0; i < o.Processors; i++ {
		p, err := s.start(ctx, s.ProcessorProc(i))
		if err != nil {
			return s, err
		}
		s.Processors = append(s.Processors, p)
	}
	if s.Listener, err = s.start(ctx, s.ListenerProc()); err != nil {
		return s, err
	}
	return s, nil
}

func (s *System) start(ctx context.Context, p supervise.Proc) (*supervise.Running, error) {
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

func (s *System) env(extra ...string) []string {
	env := []string{"LOG_FORMAT=" + s.opts.LogFormat}
	env = append(env, s.opts.Env...)
	return append(env, extra...)
}

// StackProc is the local stack.
func (s *System) StackProc() supervise.Proc {
	return supervise.Proc{Name: "stack", Path: filepath.Join(s.opts.BinDir, "stack"), Env: s.env(), ReadyAddr: "127.0.0.1:8000"}
}

// ListenerProc is the listener.
func (s *System) ListenerProc() supervise.Proc {
	return supervise.Proc{
		Name: "listener", Path: filepath.Join(s.opts.BinDir, "listener"),
		Env:      s.env("METRICS_PORT=" + strconv.Itoa(ListenerMetrics)),
		ReadyURL: fmt.Sprintf("http://127.0.0.1:%d/readyz", ListenerMetrics),
	}
}

// ProcessorProc is processor i.
func (s *System) ProcessorProc(i int) supervise.Proc {
	metrics := ProcessorMetricsBase + i
	return supervise.Proc{
		Name: fmt.Sprintf("processor-%d", i+1), Path: filepath.Join(s.opts.BinDir, "processor"),
		Env:      s.env("METRICS_PORT="+strconv.Itoa(metrics), "PRIVATE_PORT="+strconv.Itoa(ProcessorPrivateBase+i)),
		ReadyURL: fmt.Sprintf("http://127.0.0.1:%d/readyz", metrics),
	}
}

// Exited is closed when any process exits.
func (s *System) Exited() <-chan string {
	ch := make(chan string, 1)
	for _, r := range s.all() {
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

func (s *System) all() []*supervise.Running {
	var rs []*supervise.Running
	for _, r := range append([]*supervise.Running{s.Listener}, append(s.Processors, s.Stack)...) {
		if r != nil {
			rs = append(rs, r)
		}
	}
	return rs
}

// Stop stops the listener first (it commits what it forwarded), then the
// processors (they finish their work), then the stack.
func (s *System) Stop(grace time.Duration) error {
	var first error
	for _, r := range s.all() {
		if err := r.Stop(grace); err != nil && first == nil {
			first = err
		}
	}
	return first
}
