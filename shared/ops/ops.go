// Package ops serves what an operator and OpenShift look at: /metrics,
// /healthz (the process is alive) and /readyz (it can make progress).
package ops

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/shared/buildinfo"
	"github.com/cloudoreg/cloudoreg/shared/logging"
)

// Check names a readiness condition (the lines of /readyz).
type Check string

// The readiness conditions of the two programs (README, "When readiness
// fails", explains each).
const (
	CheckKafka     Check = "kafka"     // both: the consumer group session, or the last status message
	CheckNATS      Check = "nats"      // both: connected to NATS
	CheckStream    Check = "stream"    // listener: the work stream and the routing index exist
	CheckProgress  Check = "progress"  // listener: publishing and resolving go through
	CheckConsumers Check = "consumers" // processor: the partition consumers are bound
)

// Readiness collects named conditions; the program is ready when all hold.
type Readiness struct {
	mu     sync.Mutex
	checks map[Check]string // name -> reason it is not ready ("" = ready)
}

// NewReadiness returns a Readiness with the named checks, all not ready yet.
func NewReadiness(names ...Check) *Readiness {
	r := &Readiness{checks: map[Check]string{}}
	for _, n := range names {
		r.checks[n] = "starting"
	}
	return r
}

// Set records whether check name holds; reason says why not.
func (r *Readiness) Set(name Check, ok bool, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ok {
		reason = ""
	} else if reason == "" {
		reason = "not ready"
	}
	r.checks[name] = reason
}

// Ready reports whether every check holds, and the failing ones.
func (r *Readiness) Ready() (bool, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var failing []string
	for n, reason := range r.checks {
		if reason != "" {
			failing = append(failing, string(n)+": "+reason)
		}
	}
	sort.Strings(failing)
	return len(failing) == 0, failing
}

// Server serves the ops endpoints.
type Server struct {
	srv    *http.Server
	ln     net.Listener
	failed chan error
}

// Listen binds addr (":9000", "127.0.0.1:0") and serves metrics from reg at
// metricsPath, with the probes beside them. extra handlers (path -> handler)
// are served on the same port.
func Listen(addr, metricsPath string, reg *prometheus.Registry, ready *Readiness) (*Server, error) {
	mux := http.NewServeMux()
	if metricsPath == "" {
		metricsPath = "/metrics"
	}
	mux.Handle(metricsPath, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, failing := ready.Ready()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, strings.Join(failing, "\n"))
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return Serve(addr, mux)
}

// Limits bound what one client may take of a server: time to send the
// request, to read the answer, to keep an idle connection, and the size of
// the headers and body it sends.
type Limits struct {
	ReadHeader, Read, Write, Idle time.Duration
	MaxHeaderBytes                int
	MaxBodyBytes                  int64
}

// DefaultLimits serve probes, metrics scrapes and the availability check,
// whose requests are small (the largest header is an x-rh-identity of a few
// KB) and whose answers are fast; a client that is slower or larger is a
// broken or hostile one, and must not hold a connection or memory.
var DefaultLimits = Limits{
	ReadHeader:     5 * time.Second,
	Read:           10 * time.Second,
	Write:          30 * time.Second, // a scrape of every metric on a busy 2-core pod
	Idle:           60 * time.Second,
	MaxHeaderBytes: 64 << 10,
	MaxBodyBytes:   64 << 10,
}

// Serve serves h on addr until Shutdown, within DefaultLimits.
func Serve(addr string, h http.Handler) (*Server, error) { return serve(addr, h, DefaultLimits) }

func serve(addr string, h http.Handler, l Limits) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{
		Handler:           limitBody(h, l.MaxBodyBytes),
		ReadHeaderTimeout: l.ReadHeader,
		ReadTimeout:       l.Read,
		WriteTimeout:      l.Write,
		IdleTimeout:       l.Idle,
		MaxHeaderBytes:    l.MaxHeaderBytes,
	}
	s := &Server{srv: srv, ln: ln, failed: make(chan error, 1)}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.failed <- fmt.Errorf("http server on %s stopped: %w", addr, err)
		}
	}()
	return s, nil
}

// limitBody answers 413 to a body announced larger than limit, and stops
// reading one that turns out larger (the handler's read fails).
func limitBody(h http.Handler, limit int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		h.ServeHTTP(w, r)
	})
}

// Failed delivers the error if the server stops serving on its own (the
// program should then shut down: its probes are gone).
func (s *Server) Failed() <-chan error { return s.failed }

// Addr is the bound address (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops serving, waiting for requests in progress up to ctx.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// StopOnFailure cancels the program when one of its HTTP servers dies, so
// it shuts down in order: without its probes OpenShift would restart it
// anyway, less gently.
func StopOnFailure(ctx context.Context, cancel context.CancelFunc, log *logrus.Entry, servers ...*Server) {
	for _, s := range servers {
		go func(s *Server) {
			select {
			case err := <-s.Failed():
				log.WithError(err).Error("stopping")
				cancel()
			case <-ctx.Done():
			}
		}(s)
	}
}

// NewRegistry is the metrics registry of a Cloudoreg program: the Go runtime
// and process collectors, cloudoreg_build_info, a constant 1 whose labels
// say which build runs (a dashboard sees a rollout, an alert a mixed fleet),
// and the log entries the logger could not copy (logging.Dropped).
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	b := buildinfo.Get()
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "cloudoreg_build_info",
		Help:        "The running build: version, VCS revision and Go version; always 1.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion},
	})
	info.Set(1)
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), info, logging.Dropped)
	return r
}

// fqName finds a family's name in a descriptor's text: client_golang gives
// no other way to read it.
var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// Families names every metric family a program can expose: those reg
// gathers now and those the collectors describe (a vector with no series
// yet is described but not gathered). Sorted, without duplicates.
func Families(reg *prometheus.Registry, cs ...prometheus.Collector) []string {
	seen := map[string]bool{}
	if mfs, err := reg.Gather(); err == nil {
		for _, mf := range mfs {
			seen[mf.GetName()] = true
		}
	}
	ch := make(chan *prometheus.Desc)
	go func() {
		for _, c := range cs {
			c.Describe(ch)
		}
		close(ch)
	}()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			seen[m[1]] = true
		}
	}
	return slices.Sorted(maps.Keys(seen))
}
