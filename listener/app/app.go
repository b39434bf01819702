// Package app wires the listener: Kafka consumer group in, JetStream work
// stream out, with the routing index, Sources lookups, metrics and probes.
// It is a package (not main) so tests can run the real listener in-process.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/IBM/sarama"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/listener/internal/forward"
	"github.com/cloudoreg/cloudoreg/listener/internal/metrics"
	"github.com/cloudoreg/cloudoreg/listener/internal/resolve"
	"github.com/cloudoreg/cloudoreg/shared/backoff"
	"github.com/cloudoreg/cloudoreg/shared/config"
	"github.com/cloudoreg/cloudoreg/shared/kafka"
	"github.com/cloudoreg/cloudoreg/shared/natsconn"
	"github.com/cloudoreg/cloudoreg/shared/ops"
	"github.com/cloudoreg/cloudoreg/shared/sourcesapi"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// Config is the listener's configuration (environment variables).
type Config struct {
	Kafka   config.Kafka
	NATS    config.NATS
	Sources config.Sources
	Log     config.Log

	EventsTopic string `env:"KAFKA_EVENTS_TOPIC" envDefault:"platform.sources.event-stream" clowder:"topic"`
	GroupID     string `env:"KAFKA_GROUP_ID" envDefault:"cloudoreg-listener"`
	// InstanceID makes the listener a static group member (KIP-345): a
	// restarted listener takes its partitions back at once instead of
	// waiting for the dead one's session to expire, and a second listener
	// started by mistake is fenced. Empty: dynamic membership.
	InstanceID    string        `env:"KAFKA_GROUP_INSTANCE_ID" envDefault:"cloudoreg-listener"`
	InitialOffset string        `env:"KAFKA_INITIAL_OFFSET" envDefault:"oldest"`
	CommitEvery   time.Duration `env:"KAFKA_COMMIT_INTERVAL" envDefault:"1s"`
	// LagInterval is how often the consumer lag is measured at the brokers
	// (cloudoreg_listener_consumer_lag); 0 turns the measurement off.
	LagInterval time.Duration `env:"KAFKA_LAG_INTERVAL" envDefault:"10s"`

	// BindHost is the interface the HTTP ports listen on: loopback for the
	// local stack, 0.0.0.0 in a pod (the deployment template sets it).
	BindHost    string `env:"BIND_HOST" envDefault:"127.0.0.1" clowder:"bindHost"`
	MetricsPort int    `env:"METRICS_PORT" envDefault:"9100" clowder:"metricsPort"`
	MetricsPath string `env:"METRICS_PATH" envDefault:"/metrics" clowder:"metricsPath"`

	IndexTTL      time.Duration `env:"ROUTING_INDEX_TTL" envDefault:"2160h"`
	KVReplicas    int           `env:"KV_REPLICAS" envDefault:"1"`
	MaxInFlight   int           `env:"LISTENER_MAX_INFLIGHT" envDefault:"256"`
	MaxEventBytes int           `env:"LISTENER_MAX_EVENT_BYTES" envDefault:"1048576"`
	// EventLogRate bounds the "event forwarded" lines per partition and
	// second; above it they are summarised (a backlog replay).
	EventLogRate   int           `env:"LISTENER_EVENT_LOG_RATE" envDefault:"100"`
	PublishTimeout time.Duration `env:"LISTENER_PUBLISH_TIMEOUT" envDefault:"5s"`
	RetryBase      time.Duration `env:"LISTENER_RETRY_BASE" envDefault:"200ms"`
	RetryMax       time.Duration `env:"LISTENER_RETRY_MAX" envDefault:"10s"`
	ShutdownGrace  time.Duration `env:"SHUTDOWN_GRACE" envDefault:"20s"`
}

// LoadConfig reads the configuration from the environment, overlaid by
// Clowder's cdappconfig.json when ACG_CONFIG is set (the clowder tags above).
func LoadConfig() (Config, error) {
	var c Config
	err := config.Load(&c)
	return c, err
}

// Listener is a running listener.
type Listener struct {
	cfg     Config
	log     *logrus.Entry
	metrics *metrics.Metrics
	ready   *ops.Readiness
	ops     *ops.Server
}

// New validates cfg and binds the ops port.
func New(cfg Config, log *logrus.Entry) (*Listener, error) {
	if cfg.MaxInFlight < 1 {
		return nil, errors.New("LISTENER_MAX_INFLIGHT must be at least 1")
	}
	l := &Listener{
		cfg:     cfg,
		log:     log,
		metrics: metrics.New(),
		ready:   ops.NewReadiness(ops.CheckKafka, ops.CheckNATS, ops.CheckStream),
	}
	srv, err := ops.Listen(net.JoinHostPort(cfg.BindHost, strconv.Itoa(cfg.MetricsPort)), cfg.MetricsPath, l.metrics.Registry, l.ready)
	if err != nil {
		return nil, fmt.Errorf("metrics port: %w", err)
	}
	l.ops = srv
	return l, nil
}

// OpsAddr is the address of /metrics, /healthz and /readyz.
func (l *Listener) OpsAddr() string { return l.ops.Addr() }

// Run consumes until ctx ends, then shuts down within the grace period.
func (l *Listener) Run(ctx context.Context) error {
	defer l.shutdownOps(ctx)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ops.StopOnFailure(ctx, cancel, l.log, l.ops)
	l.log.WithFields(logrus.Fields(config.Summary(l.cfg))).Info("listener starting")

	nc, err := natsconn.ConnectWatched(ctx, l.cfg.NATS, "cloudoreg-listener", l.log, l.ready, l.metrics.NATSConnected)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(l.cfg.MaxInFlight*4),
		jetstream.WithPublishAsyncTimeout(l.cfg.PublishTimeout))
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	index, err := l.prepareNATS(ctx, js)
	if err != nil {
		return err
	}

	group, err := l.consumerGroup()
	if err != nil {
		return err
	}
	sources, err := sourcesapi.New(l.cfg.Sources.URL, l.cfg.Sources.Key(), l.cfg.Sources.Timeout, l.cfg.Sources.CAFile)
	if err != nil {
		return err
	}
	// Not waited for on return: a measurement may hang on an unreachable
	// broker, and the process exits anyway.
	go l.watchLag(ctx)
	handler := &forward.Handler{
		JS:           js,
		Resolver:     &resolve.Resolver{Index: index, Apps: sources},
		Metrics:      l.metrics,
		Log:          l.log,
		Ready:        l.ready,
		MaxValue:     l.cfg.MaxEventBytes,
		MaxInFlight:  l.cfg.MaxInFlight,
		EventLogRate: l.cfg.EventLogRate,
		MaxPayload:   nc.MaxPayload,
		Backoff:      backoff.Policy{Base: l.cfg.RetryBase, Max: l.cfg.RetryMax},
		DrainTimeout: l.cfg.ShutdownGrace / 2,
	}
	l.consume(ctx, group, handler)

	// The session has ended and committed; closing leaves the group at once
	// so the next listener pod gets the partitions without waiting.
	if err := group.Close(); err != nil {
		l.log.WithError(err).Warn("closing the consumer group")
	}
	l.log.Info("listener stopped")
	return nil
}

// prepareNATS waits for the work stream (the processors declare it) and
// opens the routing index, retrying while NATS is unavailable.
func (l *Listener) prepareNATS(ctx context.Context, js jetstream.JetStream) (*resolve.KVIndex, error) {
	var index *resolve.KVIndex
	err := backoff.Policy{Base: l.cfg.RetryBase, Max: l.cfg.RetryMax}.Retry(ctx,
		func() error {
			if _, err := js.Stream(ctx, work.StreamName); err != nil {
				return err
			}
			var err error
			index, err = resolve.OpenKVIndex(ctx, js, l.cfg.IndexTTL, l.cfg.KVReplicas)
			return err
		},
		func(attempt int, err error) {
			l.ready.Set(ops.CheckStream, false, "work stream or routing index unavailable")
			l.log.WithError(err).WithField("attempt", attempt).Warn("waiting for the work stream " + work.StreamName + " (declared by the processors) and the routing index")
		})
	if err == nil {
		l.ready.Set(ops.CheckStream, true, "")
	}
	return index, err
}

func (l *Listener) consumerGroup() (sarama.ConsumerGroup, error) {
	sc, err := kafka.Config(l.cfg.Kafka, "cloudoreg-listener")
	if err != nil {
		return nil, err
	}
	sc.Consumer.Return.Errors = true
	sc.Consumer.Group.InstanceId = l.cfg.InstanceID
	sc.Consumer.Offsets.AutoCommit.Enable = true
	sc.Consumer.Offsets.AutoCommit.Interval = l.cfg.CommitEvery
	switch l.cfg.InitialOffset {
	case "oldest":
		sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	case "newest":
		sc.Consumer.Offsets.Initial = sarama.OffsetNewest
	default:
		return nil, fmt.Errorf("KAFKA_INITIAL_OFFSET must be oldest or newest, not %q", l.cfg.InitialOffset)
	}
	group, err := sarama.NewConsumerGroup(l.cfg.Kafka.Brokers, l.cfg.GroupID, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka consumer group: %w", err)
	}
	go func() {
		for err := range group.Errors() {
			l.log.WithError(err).Warn("kafka consumer group error")
		}
	}()
	return group, nil
}

// consume runs consumer-group sessions until ctx ends; each rebalance ends a
// session and starts the next.
func (l *Listener) consume(ctx context.Context, group sarama.ConsumerGroup, h *forward.Handler) {
	policy := backoff.Policy{Base: l.cfg.RetryBase, Max: l.cfg.RetryMax}
	for attempt := 1; ctx.Err() == nil; {
		err := group.Consume(ctx, []string{l.cfg.EventsTopic}, h)
		l.ready.Set(ops.CheckKafka, false, "no consumer group session")
		if err == nil {
			attempt = 1
			continue
		}
		if ctx.Err() != nil {
			return
		}
		l.log.WithError(err).WithField("attempt", attempt).Warn("kafka consumer group session failed, retrying")
		_ = backoff.Sleep(ctx, policy.Delay(attempt))
		attempt++
	}
}

// shutdownOps stops the ops server; ctx is the run's, whose cancellation
// is why it stops, so only its values are kept.
func (l *Listener) shutdownOps(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = l.ops.Shutdown(ctx)
}

// MetricFamilies names every metric family the listener can expose (the
// deploy checks hold alerts and dashboards to it).
func MetricFamilies() []string { return metrics.New().Families() }
