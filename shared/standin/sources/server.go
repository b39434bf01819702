// Package sources is an in-memory stand-in for the Red Hat Sources service:
// it keeps sources, applications and authentications per tenant, serves the
// public and internal REST APIs Cloudoreg uses, raises the same Kafka events
// in the same order as the real service, and applies the availability status
// messages Cloudoreg writes. Tests and the local stack drive it exactly as
// they would drive a real Sources installation.
package sources

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/cloudoreg/cloudoreg/shared/standin/faults"
	"github.com/sirupsen/logrus"
)

// Defaults for the Config fields left empty.
const (
	DefaultEventsTopic          = "platform.sources.event-stream"
	DefaultStatusTopic          = "platform.sources.status"
	DefaultStatusGroup          = "sources-api-status"
	DefaultAvailabilityCheckURL = "http://127.0.0.1:10000/internal/api/cloudigrade/v1/availability_status"
)

// Paths of the test endpoints; they are never faulted nor recorded.
const (
	CallsPath     = "/_calls"
	StatusLogPath = "/_status_log"
)

// Config configures a stand-in. Brokers is required.
type Config struct {
	Brokers     []string
	EventsTopic string
	StatusTopic string
	StatusGroup string
	// PSK authorises the internal API. Empty: the internal API refuses all.
	PSK string
	// AvailabilityCheckURL is where cloud-meter applications are asked to
	// re-check (the real service's CLOUD_METER_AVAILABILITY_CHECK_URL).
	AvailabilityCheckURL string
	Log                  *logrus.Logger
}

// Server is the stand-in. It is an http.Handler.
type Server struct {
	cfg     Config
	log     *logrus.Logger
	store   *store
	pub     *publisher
	faults  *faults.Injector
	calls   callLog
	handler http.Handler

	// writeMu serialises every change together with its events, so the event
	// stream has the order in which the state changed.
	writeMu sync.Mutex

	countsMu sync.Mutex
	counts   map[string]int

	httpClient *http.Client
	bgCtx      context.Context
	bgCancel   context.CancelFunc
	bgMu       sync.Mutex // orders spawn against Close's Wait
	bgClosed   bool
	bg         sync.WaitGroup
	// pubClosed is guarded by writeMu, under which every publish happens.
	pubClosed bool

	startMu      sync.Mutex
	consumer     *statusConsumer
	stopConsumer context.CancelFunc
	closed       bool
}

// New connects the event stream producer and returns a stand-in ready to
// serve HTTP. Start begins consuming the status topic.
func New(cfg Config) (*Server, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("sources stand-in: no Kafka brokers configured")
	}
	if cfg.EventsTopic == "" {
		cfg.EventsTopic = DefaultEventsTopic
	}
	if cfg.StatusTopic == "" {
		cfg.StatusTopic = DefaultStatusTopic
	}
	if cfg.StatusGroup == "" {
		cfg.StatusGroup = DefaultStatusGroup
	}
	if cfg.AvailabilityCheckURL == "" {
		cfg.AvailabilityCheckURL = DefaultAvailabilityCheckURL
	}
	log := cfg.Log
	if log == nil {
		log = logrus.StandardLogger()
	}
	if cfg.PSK == "" {
		log.Warn("sources stand-in: no PSK configured, the internal API will refuse every request")
	}
	pub, err := newPublisher(cfg.Brokers, cfg.EventsTopic)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg, log: log, store: newStore(), pub: pub,
		counts:     map[string]int{},
		httpClient: &http.Client{Timeout: availabilityTimeout},
		bgCtx:      ctx, bgCancel: cancel,
	}
	s.faults = faults.New(writeFault)
	s.handler = s.recordCalls(s.faults.Wrap(s.routes()))
	return s, nil
}

// writeFault writes an injected failure as the real service writes errors.
func writeFault(w http.ResponseWriter, status int, code string) {
	detail := code
	if detail == "" {
		detail = http.StatusText(status)
	}
	writeError(w, status, "injected fault: "+detail)
}

// ServeHTTP serves the public API, the internal API, the fault controls at
// faults.AdminPath and the test endpoints CallsPath and StatusLogPath.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == CallsPath && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.Calls())
	case r.URL.Path == StatusLogPath && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, s.StatusLog())
	case strings.HasPrefix(r.URL.Path, "/_") && r.URL.Path != faults.AdminPath:
		writeError(w, http.StatusNotFound, "no route for "+r.Method+" "+r.URL.Path)
	case r.URL.Path == faults.AdminPath:
		s.faults.Wrap(http.NotFoundHandler()).ServeHTTP(w, r)
	default:
		s.handler.ServeHTTP(w, r)
	}
}

// Start joins the status topic's consumer group and returns once the
// consumer is bound to its partitions (or ctx ends first).
func (s *Server) Start(ctx context.Context) error {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	if s.closed {
		return errors.New("sources stand-in: closed")
	}
	if s.consumer != nil {
		return errors.New("sources stand-in: already started")
	}
	return s.startStatusConsumer(ctx)
}

// Close stops the status consumer, waits for background availability checks
// and closes the producer.
func (s *Server) Close() error {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if s.consumer != nil {
		s.stopConsumer()
		if err := s.consumer.close(); err != nil {
			errs = append(errs, fmt.Errorf("status consumer: %w", err))
		}
	}
	s.bgMu.Lock()
	s.bgClosed = true
	s.bgMu.Unlock()
	s.bgCancel()
	s.bg.Wait()
	// The consumer is gone, so only late HTTP writes can still publish; they
	// hold writeMu and will find the producer closed instead of panicking.
	s.writeMu.Lock()
	s.pubClosed = true
	err := s.pub.close()
	s.writeMu.Unlock()
	if err != nil {
		errs = append(errs, fmt.Errorf("event producer: %w", err))
	}
	return errors.Join(errs...)
}

// spawn runs fn in the background unless the server is closing; Close waits
// for everything spawned.
func (s *Server) spawn(fn func()) bool {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if s.bgClosed {
		return false
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		fn()
	}()
	return true
}

// Faults returns the fault injector that wraps the REST API.
func (s *Server) Faults() *faults.Injector { return s.faults }

// Calls returns every REST call answered so far, in order.
func (s *Server) Calls() []Call { return s.calls.list() }

// StatusLog returns every message read from the status topic, in order.
func (s *Server) StatusLog() []StatusRecord {
	snap, _ := s.store.snapshot()
	return snap.StatusLog
}

// StatusCounts returns how many status messages had each outcome.
func (s *Server) StatusCounts() map[string]int {
	s.countsMu.Lock()
	defer s.countsMu.Unlock()
	out := make(map[string]int, len(s.counts))
	for k, v := range s.counts {
		out[k] = v
	}
	return out
}

// Snapshot returns a copy of the current state.
func (s *Server) Snapshot() Snapshot {
	snap, _ := s.store.snapshot()
	return snap
}

// Await blocks until pred holds for the state, re-evaluating it after every
// change, or until ctx ends (returning ctx.Err()).
func (s *Server) Await(ctx context.Context, pred func(Snapshot) bool) error {
	return s.store.await(ctx, pred)
}

var _ io.Closer = (*Server)(nil)
