// Package stack runs Cloudoreg's surroundings on one machine with no
// installed services: a Kafka-protocol broker (kfake), an embedded NATS
// server with JetStream (or a cluster of them), and stand-ins for Sources,
// RHSM and STS that speak the real wire formats. `make stack` runs it as a
// program; the end-to-end tests run it in-process on port 0.
package stack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/sirupsen/logrus"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/cloudoreg/cloudoreg/scripts"
	"github.com/cloudoreg/cloudoreg/shared/backoff"
	"github.com/cloudoreg/cloudoreg/shared/standin/rhsm"
	"github.com/cloudoreg/cloudoreg/shared/standin/sources"
	"github.com/cloudoreg/cloudoreg/shared/standin/sts"
)

// Config is where the stack listens and what it starts with. A port of 0
// picks a free one (tests); the defaults are the documented local ports.
type Config struct {
	KafkaPort   int    `env:"KAFKA_PORT" envDefault:"9092"`
	NATSPort    int    `env:"NATS_PORT" envDefault:"4222"`
	SourcesPort int    `env:"SOURCES_PORT" envDefault:"8000"`
	RHSMPort    int    `env:"RHSM_PORT" envDefault:"8001"`
	STSPort     int    `env:"STS_PORT" envDefault:"8002"`
	DataDir     string `env:"STACK_DATA_DIR"` // empty: a temporary directory, removed on Close
	// KafkaPersist keeps Kafka's log in DataDir across restarts.
	KafkaPersist bool   `env:"STACK_KAFKA_PERSIST" envDefault:"false"`
	TrustFile    string `env:"STS_TRUST_FILE"` // empty: scripts/sts-trust.json, built in
	PSK          string `env:"SOURCES_PSK" envDefault:"cloudoreg-local-psk"`
	EventsTopic  string `env:"KAFKA_EVENTS_TOPIC" envDefault:"platform.sources.event-stream"`
	StatusTopic  string `env:"KAFKA_STATUS_TOPIC" envDefault:"platform.sources.status"`
	Partitions   int    `env:"STACK_KAFKA_PARTITIONS" envDefault:"3"`
	// BindHost is the interface of every port: loopback on a developer's
	// machine, 0.0.0.0 in a container (docker-compose.yml).
	BindHost string `env:"STACK_BIND_HOST" envDefault:"127.0.0.1"`
	// ExternalKafka: do not start kfake; the Sources stand-in uses Brokers
	// (whose topics must exist). For docker-compose's real Kafka.
	ExternalKafka bool     `env:"STACK_EXTERNAL_KAFKA" envDefault:"false"`
	Brokers       []string `env:"KAFKA_BROKERS" envSeparator:"," envDefault:"127.0.0.1:9092"`
	// ExternalNATS: do not start the embedded NATS (the stand-ins never use it).
	ExternalNATS bool `env:"STACK_EXTERNAL_NATS" envDefault:"false"`
	// NATSCluster is how many NATS servers run, clustered on loopback, each
	// with JetStream and a store of its own (1: one server, no cluster).
	// Server i (from 0) listens for clients on NATS_PORT+i and for routes on
	// STACK_NATS_ROUTE_PORT+i; a port of 0 picks free ones.
	NATSCluster   int `env:"STACK_NATS_CLUSTER" envDefault:"1"`
	NATSRoutePort int `env:"STACK_NATS_ROUTE_PORT" envDefault:"6222"`
	// NATSNode (1 to NATSCluster) runs only that server of the cluster, so
	// that each server can be a process of its own that the chaos harness
	// kills; 0 runs them all. Its ports must be fixed: every server must
	// know the others' routes.
	NATSNode int `env:"STACK_NATS_NODE" envDefault:"0"`
	// SkipStandIns: run only the brokers, no Sources, RHSM or STS stand-in:
	// only kfake with STACK_EXTERNAL_NATS=true, only NATS with
	// STACK_EXTERNAL_KAFKA=true. The chaos harness (scripts/chaos) runs
	// Kafka, NATS and the stand-ins as three processes, so that it can
	// restart a broker (with STACK_DATA_DIR and STACK_KAFKA_PERSIST its data
	// survives) while the stand-ins, whose state is in memory, keep running.
	// (Negative so that the zero Config runs everything.)
	SkipStandIns bool `env:"STACK_SKIP_STANDINS" envDefault:"false"`
	// AvailabilityCheckURL is where the Sources stand-in sends checks: the
	// processor's private port.
	AvailabilityCheckURL string `env:"SOURCES_AVAILABILITY_CHECK_URL" envDefault:"http://127.0.0.1:10000/internal/api/cloudigrade/v1/availability_status"`
}

// Stack is a running local stack.
type Stack struct {
	Kafka *kfake.Cluster
	// NATS is the NATS server, or the first this process runs of a cluster
	// (NATSServers has them all).
	NATS    *server.Server
	Sources *sources.Server
	RHSM    *rhsm.Server
	STS     *sts.Server

	// NATSURL lists every server of a cluster (comma-separated, as NATS_URL
	// takes it), also those another process runs.
	KafkaAddr, NATSURL, SourcesURL, RHSMURL, STSURL string

	natsPeers []*server.Server // the cluster's servers after NATS
	servers   []*http.Server
	tempDir   string
}

// Start starts every part; on error it stops what it started and returns
// the error of the part that failed.
func Start(ctx context.Context, cfg Config, log *logrus.Logger) (*Stack, error) {
	s := &Stack{}
	if err := s.start(ctx, cfg, log); err != nil {
		s.Close() //nolint:contextcheck // stopping what started must not depend on the caller's context
		return nil, err
	}
	return s, nil
}

func (s *Stack) start(ctx context.Context, cfg Config, log *logrus.Logger) error {
	dir := cfg.DataDir
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "cloudoreg-stack-"); err != nil {
			return err
		}
		s.tempDir = dir
	}
	if cfg.BindHost == "" {
		cfg.BindHost = "127.0.0.1"
	}
	if cfg.ExternalKafka {
		if len(cfg.Brokers) == 0 && !cfg.SkipStandIns {
			return fmt.Errorf("STACK_EXTERNAL_KAFKA needs KAFKA_BROKERS")
		}
		if len(cfg.Brokers) > 0 {
			s.KafkaAddr = cfg.Brokers[0]
		}
	} else if err := s.startKafka(cfg, dir); err != nil {
		return err
	}
	if !cfg.ExternalNATS {
		if err := s.startNATS(ctx, cfg, dir, log); err != nil {
			return err
		}
	}
	if cfg.SkipStandIns {
		return nil
	}
	return s.startStandIns(ctx, cfg, log)
}

func (s *Stack) startKafka(cfg Config, dir string) error {
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(cfg.KafkaPort),
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, net.JoinHostPort(cfg.BindHost, strconv.Itoa(cfg.KafkaPort)))
		}),
		kfake.SeedTopics(int32(cfg.Partitions), cfg.EventsTopic, cfg.StatusTopic),
	}
	if cfg.KafkaPersist {
		opts = append(opts, kfake.DataDir(filepath.Join(dir, "kafka")))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("kafka (kfake) on port %d: %w", cfg.KafkaPort, err)
	}
	s.Kafka = c
	s.KafkaAddr = c.ListenAddrs()[0]
	return nil
}

func (s *Stack) startNATS(ctx context.Context, cfg Config, dir string, log *logrus.Logger) error {
	if cfg.NATSCluster <= 1 {
		ns, err := startNATSServer(cfg.BindHost, cfg.NATSPort, &server.Options{
			ServerName: "cloudoreg-local", StoreDir: filepath.Join(dir, "nats"),
		}, nil)
		if err != nil {
			return err
		}
		s.NATS, s.NATSURL = ns, ns.ClientURL()
		return nil
	}
	return s.startNATSCluster(ctx, cfg, dir, log)
}

// NATSServerName is the name of server i (from 0) of the local cluster,
// as JetStream reports a stream's leader.
func NATSServerName(i int) string { return fmt.Sprintf("cloudoreg-local-%d", i+1) }

// startNATSCluster starts the servers of the cluster this process runs
// (all, or only NATSNode's). Every server is given every route, itself
// included (the server skips it): JetStream sizes its first meta group
// from the configured routes.
func (s *Stack) startNATSCluster(ctx context.Context, cfg Config, dir string, log *logrus.Logger) error {
	n := cfg.NATSCluster
	if cfg.NATSNode < 0 || cfg.NATSNode > n {
		return fmt.Errorf("nats: STACK_NATS_NODE %d is not a server of a cluster of %d", cfg.NATSNode, n)
	}
	if cfg.NATSNode > 0 && (cfg.NATSPort == 0 || cfg.NATSRoutePort == 0) {
		return fmt.Errorf("nats: STACK_NATS_NODE needs fixed ports (NATS_PORT and STACK_NATS_ROUTE_PORT), not 0")
	}
	routePorts, err := clusterPorts(cfg.BindHost, cfg.NATSRoutePort, n)
	if err != nil {
		return fmt.Errorf("nats route: %w", err)
	}
	routes := make([]*url.URL, n)
	for i, p := range routePorts {
		routes[i] = &url.URL{Scheme: "nats-route", Host: net.JoinHostPort(dialHost(cfg.BindHost), strconv.Itoa(p))}
	}
	var started []*server.Server
	var urls []string
	for i := 0; i < n; i++ {
		port := 0
		if cfg.NATSPort != 0 {
			port = cfg.NATSPort + i
		}
		if cfg.NATSNode != 0 && cfg.NATSNode != i+1 {
			urls = append(urls, "nats://"+net.JoinHostPort(dialHost(cfg.BindHost), strconv.Itoa(port)))
			continue
		}
		ns, err := startNATSServer(cfg.BindHost, port, &server.Options{
			ServerName: NATSServerName(i),
			StoreDir:   filepath.Join(dir, fmt.Sprintf("nats-%d", i+1)),
			Cluster:    server.ClusterOpts{Name: "cloudoreg-local", Host: cfg.BindHost, Port: routePorts[i]},
			Routes:     routes,
		}, natsLogger{log.WithField("nats_server", NATSServerName(i))})
		if err != nil {
			shutdownAll(started)
			return fmt.Errorf("%w (server %d of %d)", err, i+1, n)
		}
		started = append(started, ns)
		urls = append(urls, ns.ClientURL())
	}
	s.NATS, s.natsPeers, s.NATSURL = started[0], started[1:], strings.Join(urls, ",")
	if cfg.NATSNode == 0 {
		// Ready means JetStream can place a stream on every server; alone, a
		// server of a cluster has no JetStream until a quorum has met.
		if err := awaitJetStreamCluster(ctx, started, 30*time.Second); err != nil {
			return fmt.Errorf("nats: %w", err)
		}
	}
	return nil
}

// startNATSServer starts a JetStream server on host:port (0: a free one)
// with the rest of opts, and waits until it takes connections. A cluster's
// servers log to the stack's log (routes, elections, catching up: what to
// read when a server was lost); a lone server says nothing.
func startNATSServer(host string, port int, opts *server.Options, logger server.Logger) (*server.Server, error) {
	if port != 0 {
		// The embedded server only logs a port it cannot bind and never
		// becomes ready; binding it first names the real error.
		if err := bindable(host, port); err != nil {
			return nil, fmt.Errorf("nats: %w", err)
		}
	}
	if opts.Cluster.Port != 0 {
		if err := bindable(host, opts.Cluster.Port); err != nil {
			return nil, fmt.Errorf("nats route: %w", err)
		}
	}
	opts.Host, opts.Port = host, portOrRandom(port)
	opts.JetStream, opts.NoSigs = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	if logger != nil {
		ns.SetLoggerV2(logger, false, false, false)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("nats did not start on port %d (is it taken?)", port)
	}
	return ns, nil
}

func bindable(host string, port int) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return ln.Close()
}

// clusterPorts are base, base+1, ... for n servers; with base 0, free
// ports, which the servers bind a moment later.
func clusterPorts(host string, base, n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		if base != 0 {
			ports[i] = base + i
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// dialHost is where a client reaches a server bound to host.
func dialHost(host string) string {
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return "127.0.0.1"
	}
	return host
}

// awaitJetStreamCluster waits until the servers have a JetStream meta
// leader that counts every one of them as a current peer.
func awaitJetStreamCluster(ctx context.Context, servers []*server.Server, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	formed := func() error {
		leaders, current := 0, 0
		for _, ns := range servers {
			if ns.JetStreamIsLeader() && len(ns.JetStreamClusterPeers()) == len(servers) {
				leaders++
			}
			if ns.JetStreamIsCurrent() {
				current++
			}
		}
		if leaders != 1 || current != len(servers) {
			return errors.New("not formed yet")
		}
		return nil
	}
	policy := backoff.Policy{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond}
	if err := policy.Retry(ctx, formed, nil); err != nil {
		return fmt.Errorf("the JetStream cluster of %d servers did not form within %s", len(servers), limit)
	}
	return nil
}

// natsLogger writes a NATS server's notices, warnings and errors to the
// stack's log (its debug and trace are off).
type natsLogger struct{ log *logrus.Entry }

func (l natsLogger) Noticef(format string, v ...any) { l.log.Infof(format, v...) }
func (l natsLogger) Warnf(format string, v ...any)   { l.log.Warnf(format, v...) }
func (l natsLogger) Errorf(format string, v ...any)  { l.log.Errorf(format, v...) }
func (l natsLogger) Fatalf(format string, v ...any)  { l.log.Fatalf(format, v...) }
func (l natsLogger) Debugf(format string, v ...any)  { l.log.Debugf(format, v...) }
func (l natsLogger) Tracef(format string, v ...any)  { l.log.Tracef(format, v...) }

// NATSServers are the NATS servers this process runs, NATS first.
func (s *Stack) NATSServers() []*server.Server {
	if s.NATS == nil {
		return nil
	}
	return append([]*server.Server{s.NATS}, s.natsPeers...)
}

func shutdownAll(servers []*server.Server) {
	for _, ns := range servers {
		ns.Shutdown()
		ns.WaitForShutdown()
	}
}

func (s *Stack) startStandIns(ctx context.Context, cfg Config, log *logrus.Logger) error {
	trust, err := loadTrust(cfg.TrustFile)
	if err != nil {
		return err
	}
	s.STS = sts.New(trust, log.WithField("standin", "sts"))
	if s.STSURL, err = s.serve(cfg.BindHost, cfg.STSPort, s.STS); err != nil {
		return fmt.Errorf("sts stand-in: %w", err)
	}
	s.RHSM = rhsm.New(rhsm.Options{Logger: log.WithField("standin", "rhsm")})
	base, err := s.serve(cfg.BindHost, cfg.RHSMPort, s.RHSM)
	if err != nil {
		return fmt.Errorf("rhsm stand-in: %w", err)
	}
	s.RHSMURL = base + rhsm.DefaultPrefix
	brokers := []string{s.KafkaAddr}
	if cfg.ExternalKafka {
		brokers = cfg.Brokers
	}
	s.Sources, err = sources.New(sources.Config{
		Brokers:              brokers,
		EventsTopic:          cfg.EventsTopic,
		StatusTopic:          cfg.StatusTopic,
		PSK:                  cfg.PSK,
		AvailabilityCheckURL: cfg.AvailabilityCheckURL,
		Log:                  log,
	})
	if err != nil {
		return fmt.Errorf("sources stand-in: %w", err)
	}
	if err := s.Sources.Start(ctx); err != nil {
		return fmt.Errorf("sources stand-in status consumer: %w", err)
	}
	if s.SourcesURL, err = s.serve(cfg.BindHost, cfg.SourcesPort, s.Sources); err != nil {
		return fmt.Errorf("sources stand-in: %w", err)
	}
	return nil
}

// serve serves h on host:port and returns its base URL.
func (s *Stack) serve(host string, port int, h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.servers = append(s.servers, srv)
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), nil
}

// Close stops everything (HTTP first, so no request reaches a stopped broker).
func (s *Stack) Close() {
	for _, srv := range s.servers {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(ctx)
		cancel()
	}
	if s.Sources != nil {
		_ = s.Sources.Close()
	}
	shutdownAll(s.NATSServers())
	if s.Kafka != nil {
		s.Kafka.Close()
	}
	if s.tempDir != "" {
		_ = os.RemoveAll(s.tempDir)
	}
}

func portOrRandom(p int) int {
	if p == 0 {
		return server.RANDOM_PORT
	}
	return p
}

// loadTrust reads the STS stand-in's trust table from path, or takes the
// one built into the program (scripts/sts-trust.json) when path is empty,
// so that bin/stack runs from any directory.
func loadTrust(path string) (sts.Trust, error) {
	if path == "" {
		t, err := sts.DecodeTrust(bytes.NewReader(scripts.STSTrust))
		if err != nil {
			return sts.Trust{}, fmt.Errorf("the built-in STS trust table: %w", err)
		}
		return t, nil
	}
	t, err := sts.LoadTrust(path)
	if err != nil {
		return sts.Trust{}, fmt.Errorf("STS trust table %s: %w", path, err)
	}
	return t, nil
}
