// Package forward moves events from one Kafka consumer-group claim to the
// JetStream work stream without losing, reordering or duplicating them:
//
//   - publishes are pipelined (async), but at most one per source is in flight,
//     so a failed publish retried later can never land behind a newer event
//     of the same source;
//   - a failed publish is retried with backoff, for ever: the partition stalls
//     rather than skips (readiness reports it);
//   - an offset is marked only when it and every offset before it are done
//     (acknowledged, ignored or skipped); sarama commits marks on a ticker;
//   - Nats-Msg-Id is topic/partition/offset, so a replay after a crash is
//     absorbed by the stream's duplicate window.
package forward

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/IBM/sarama"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/listener/internal/metrics"
	"github.com/cloudoreg/cloudoreg/listener/internal/offsets"
	"github.com/cloudoreg/cloudoreg/listener/internal/resolve"
	"github.com/cloudoreg/cloudoreg/listener/internal/route"
	"github.com/cloudoreg/cloudoreg/shared/backoff"
	"github.com/cloudoreg/cloudoreg/shared/ops"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// Readiness check names the pipeline maintains.
const (
	ReadyKafka    = "kafka"
	ReadyProgress = "progress"
)

// Publisher is the part of jetstream.JetStream the pipeline uses.
type Publisher interface {
	PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

// Handler is the sarama consumer-group handler.
type Handler struct {
	JS           Publisher
	Resolver     *resolve.Resolver
	Metrics      *metrics.Metrics
	Log          *logrus.Entry
	Ready        *ops.Readiness
	MaxValue     int // largest event value accepted
	MaxInFlight  int // publishes awaiting acknowledgement, per partition
	Backoff      backoff.Policy
	DrainTimeout time.Duration // how long to wait for in-flight publishes on rebalance or shutdown
}

// Setup is called when a session starts (after a rebalance).
func (h *Handler) Setup(s sarama.ConsumerGroupSession) error {
	h.Metrics.Rebalances.Inc()
	h.Ready.Set(ReadyKafka, true, "")
	h.Log.WithField("claims", fmt.Sprint(s.Claims())).Info("consumer group session started")
	return nil
}

// Cleanup is called when a session ends; marks are committed by sarama.
func (h *Handler) Cleanup(s sarama.ConsumerGroupSession) error {
	s.Commit()
	h.Log.Info("consumer group session ended, offsets committed")
	return nil
}

// ConsumeClaim forwards one partition until the session ends.
func (h *Handler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	p := &partition{
		h:        h,
		sess:     s,
		claim:    c,
		label:    strconv.Itoa(int(c.Partition())),
		tracker:  offsets.New(),
		inflight: map[string]*job{},
		results:  make(chan result, h.MaxInFlight+1),
	}
	return p.run(s.Context())
}

type partition struct {
	h        *Handler
	sess     sarama.ConsumerGroupSession
	claim    sarama.ConsumerGroupClaim
	label    string
	tracker  *offsets.Tracker
	inflight map[string]*job // by source id
	results  chan result
}

type job struct {
	msg      *nats.Msg
	offset   int64
	sourceID string
	started  time.Time
	attempt  int
	log      *logrus.Entry
}

type result struct {
	job *job
	ack *jetstream.PubAck
	err error
}

func (p *partition) run(ctx context.Context) error {
	for {
		select {
		case m, ok := <-p.claim.Messages():
			if !ok {
				return p.drain()
			}
			if err := p.take(ctx, m); err != nil {
				return p.drain()
			}
		case r := <-p.results:
			if err := p.complete(ctx, r); err != nil {
				return p.drain()
			}
		case <-ctx.Done():
			return p.drain()
		}
	}
}

// take handles one Kafka message. It returns an error only when the session
// ended while it was waiting.
func (p *partition) take(ctx context.Context, m *sarama.ConsumerMessage) error {
	p.tracker.Add(m.Offset)
	headers := route.FromPairs(len(m.Headers), func(i int) ([]byte, []byte) {
		if m.Headers[i] == nil {
			return nil, nil
		}
		return m.Headers[i].Key, m.Headers[i].Value
	})
	d := route.Decide(headers, m.Value, p.h.MaxValue)
	log := p.h.Log.WithFields(logrus.Fields{
		"event_type":      route.MetricType(d.EventType),
		"kafka_topic":     m.Topic,
		"kafka_partition": m.Partition,
		"kafka_offset":    m.Offset,
	})
	switch d.Action {
	case route.Ignore:
		p.h.Metrics.Events.WithLabelValues(route.MetricType(d.EventType), "ignored", "").Inc()
		log.Debug("event type ignored")
		return p.finish(m.Offset)
	case route.Skip:
		return p.skip(log, d.EventType, d.Reason, m.Offset)
	}
	log = log.WithFields(logrus.Fields{"org_id": d.Tenant.OrgID, "application_id": d.Event.ApplicationID})
	sourceID, err := p.resolve(ctx, log, d)
	if errors.Is(err, resolve.ErrUnresolvable) {
		return p.skip(log, d.EventType, "unresolvable", m.Offset)
	}
	if err != nil {
		return err
	}
	id := fmt.Sprintf("%s/%d/%d", m.Topic, m.Partition, m.Offset)
	wm := work.Message{
		Kind:             d.EventType,
		SourceID:         sourceID,
		ApplicationID:    d.Event.ApplicationID,
		AuthenticationID: d.Event.AuthenticationID,
		Tenant:           d.Tenant,
		Identity:         d.Identity,
		Origin:           id,
	}
	msg := &nats.Msg{Subject: work.Subject(sourceID), Header: wm.Header()}
	msg.Header.Set(jetstream.MsgIDHeader, id)
	j := &job{msg: msg, offset: m.Offset, sourceID: sourceID, log: log.WithField("source_id", sourceID)}
	p.h.Metrics.Events.WithLabelValues(route.MetricType(d.EventType), "routed", "").Inc()
	if err := p.waitSlot(ctx, sourceID); err != nil {
		return err
	}
	return p.publish(ctx, j)
}

func (p *partition) skip(log *logrus.Entry, eventType, reason string, offset int64) error {
	p.h.Metrics.Events.WithLabelValues(route.MetricType(eventType), "skipped", reason).Inc()
	log.WithField("reason", reason).Warn("event skipped: it cannot be processed")
	return p.finish(offset)
}

// resolve finds the source id, retrying transient failures until it
// succeeds, the event proves unresolvable, or the session ends.
func (p *partition) resolve(ctx context.Context, log *logrus.Entry, d route.Decision) (string, error) {
	for attempt := 1; ; attempt++ {
		id, via, err := p.h.Resolver.SourceID(ctx, d.Event, d.Tenant)
		if err == nil {
			p.h.Metrics.Resolved.WithLabelValues(string(via)).Inc()
			if attempt > 1 {
				p.h.Ready.Set(ReadyProgress, true, "")
			}
			return id, nil
		}
		if errors.Is(err, resolve.ErrUnresolvable) || ctx.Err() != nil {
			return "", err
		}
		p.h.Metrics.Retries.WithLabelValues("resolve").Inc()
		p.h.Ready.Set(ReadyProgress, false, "resolving a source id keeps failing")
		log.WithError(err).WithField("attempt", attempt).Warn("resolving the source id failed, retrying")
		if err := backoff.Sleep(ctx, p.h.Backoff.Delay(attempt)); err != nil {
			return "", err
		}
	}
}

// waitSlot waits until no publish of sourceID is in flight and the pipeline
// has room, completing publishes meanwhile.
func (p *partition) waitSlot(ctx context.Context, sourceID string) error {
	for p.inflight[sourceID] != nil || len(p.inflight) >= p.h.MaxInFlight {
		select {
		case r := <-p.results:
			if err := p.complete(ctx, r); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// publish sends j asynchronously, retrying if the client refuses it outright.
func (p *partition) publish(ctx context.Context, j *job) error {
	for {
		j.attempt++
		j.started = time.Now()
		fut, err := p.h.JS.PublishMsgAsync(j.msg)
		if err == nil {
			p.inflight[j.sourceID] = j
			p.h.Metrics.InFlight.Inc()
			go await(fut, j, p.results)
			return nil
		}
		if err := p.retryWait(ctx, j, err); err != nil {
			return err
		}
	}
}

func await(fut jetstream.PubAckFuture, j *job, results chan<- result) {
	select {
	case a := <-fut.Ok():
		results <- result{job: j, ack: a}
	case err := <-fut.Err():
		results <- result{job: j, err: err}
	}
}

func (p *partition) retryWait(ctx context.Context, j *job, err error) error {
	p.h.Metrics.Retries.WithLabelValues("nats").Inc()
	p.h.Ready.Set(ReadyProgress, false, "publishing to JetStream keeps failing")
	j.log.WithError(err).WithField("attempt", j.attempt).Warn("publish to JetStream failed, retrying")
	return backoff.Sleep(ctx, p.h.Backoff.Delay(j.attempt))
}

// complete handles one publish outcome: retry a failure in place (the
// source's slot stays taken, so nothing of that source overtakes it), or
// finish the offset.
func (p *partition) complete(ctx context.Context, r result) error {
	j := r.job
	delete(p.inflight, j.sourceID)
	p.h.Metrics.InFlight.Dec()
	if r.err != nil {
		p.inflight[j.sourceID] = j // hold the slot while waiting
		err := p.retryWait(ctx, j, r.err)
		delete(p.inflight, j.sourceID)
		if err != nil {
			return err
		}
		return p.publish(ctx, j)
	}
	p.h.Ready.Set(ReadyProgress, true, "")
	p.h.Metrics.PublishSeconds.Observe(time.Since(j.started).Seconds())
	p.h.Metrics.Published.Inc()
	if r.ack.Duplicate {
		p.h.Metrics.Duplicates.Inc()
	}
	j.log.WithFields(logrus.Fields{"nats_stream_seq": r.ack.Sequence, "duplicate": r.ack.Duplicate}).Info("event forwarded to the work stream")
	return p.finish(j.offset)
}

// finish marks offset done and marks the Kafka offset if it advanced.
func (p *partition) finish(offset int64) error {
	next, advanced := p.tracker.Done(offset)
	if advanced {
		p.sess.MarkOffset(p.claim.Topic(), p.claim.Partition(), next, "")
		p.h.Metrics.Commits.Inc()
		p.h.Metrics.LastMarked.WithLabelValues(p.label).Set(float64(next))
	}
	return nil
}

// drain waits (bounded) for in-flight publishes so their offsets can be
// marked before the session commits. What is not acknowledged in time is
// not marked: it will be consumed again and deduplicated by the stream.
func (p *partition) drain() error {
	timer := time.NewTimer(p.h.DrainTimeout)
	defer timer.Stop()
	for len(p.inflight) > 0 {
		select {
		case r := <-p.results:
			delete(p.inflight, r.job.sourceID)
			p.h.Metrics.InFlight.Dec()
			if r.err == nil {
				p.h.Metrics.Published.Inc()
				_ = p.finish(r.job.offset)
			}
		case <-timer.C:
			p.h.Log.WithField("inflight", len(p.inflight)).Warn("stopping with unacknowledged publishes; they will be replayed")
			return nil
		}
	}
	return nil
}
