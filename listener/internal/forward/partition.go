// Package forward moves events from one Kafka consumer-group claim to the
// JetStream work stream without losing, reordering or duplicating them:
//
//   - publishes are pipelined (async), but at most one per source is in flight,
//     so a failed publish retried later can never land behind a newer event
//     of the same source;
//   - a failed publish is retried with backoff, for ever: the partition stalls
//     rather than skips (readiness reports it); only a message no retry can
//     get through (over the server's size limits, refused by JetStream for
//     what it is) is skipped as poison, counted with its reason;
//   - an offset is marked only when it and every offset before it are done
//     (acknowledged, ignored or skipped); sarama commits marks on a ticker;
//   - Nats-Msg-Id is topic/partition/offset, so a replay after a crash is
//     absorbed by the stream's duplicate window.
package forward

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/IBM/sarama"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/listener/internal/metrics"
	"github.com/cloudoreg/cloudoreg/listener/internal/offsets"
	"github.com/cloudoreg/cloudoreg/listener/internal/resolve"
	"github.com/cloudoreg/cloudoreg/listener/internal/route"
	"github.com/cloudoreg/cloudoreg/shared/backoff"
	"github.com/cloudoreg/cloudoreg/shared/ops"
	"github.com/cloudoreg/cloudoreg/shared/work"
	"github.com/cloudoreg/cloudoreg/shared/workstream"
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
	// MaxPayload is the largest message (headers and payload) the NATS
	// server takes, as the connection reports it (nats.Conn.MaxPayload);
	// 0 means unknown.
	MaxPayload func() int64
	// EventLogRate is how many "event forwarded" lines a partition writes
	// per second at most (0: no limit); see auditLog.
	EventLogRate int
}

// maxHeaderBytes is JetStream's limit on a stored message's headers (the
// store keeps their length in 16 bits): a larger header block is refused
// with err_code 10097 on every attempt.
const maxHeaderBytes = math.MaxUint16

// Error codes of JetStream refusals that hold for the message on every
// attempt (the jetstream package names only the first).
const (
	errCodeMessageTooLarge = jetstream.JSErrCodeStreamMessageExceedsMaximum // 10054
	errCodeHeaderTooLarge  = jetstream.ErrorCode(10097)
)

// Setup is called when a session starts (after a rebalance).
func (h *Handler) Setup(s sarama.ConsumerGroupSession) error {
	h.Metrics.Rebalances.Inc()
	h.Ready.Set(ops.CheckKafka, true, "")
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
		h:          h,
		sess:       s,
		claim:      c,
		lastMarked: h.Metrics.LastMarked.WithLabelValues(strconv.Itoa(int(c.Partition()))),
		events:     map[eventOutcome]prometheus.Counter{},
		tracker:    offsets.New(),
		inflight:   map[string]*job{},
		// Each in-flight job has one entry in acks or one in results, never
		// both, so neither channel ever blocks its sender.
		acks:    make(chan pending, h.MaxInFlight+1),
		results: make(chan result, h.MaxInFlight+1),
		audit:   auditLog{perSecond: h.EventLogRate},
	}
	go p.awaitAcks()
	defer close(p.acks)
	return p.run(s.Context())
}

type partition struct {
	h          *Handler
	sess       sarama.ConsumerGroupSession
	claim      sarama.ConsumerGroupClaim
	lastMarked prometheus.Gauge
	events     map[eventOutcome]prometheus.Counter // resolved once each, not per event
	tracker    *offsets.Tracker
	inflight   map[string]*job // by source id
	acks       chan pending    // publishes awaiting their ack, in publish order
	results    chan result
	audit      auditLog
}

type eventOutcome struct{ eventType, outcome, reason string }

type job struct {
	msg           *nats.Msg
	offset        int64
	eventType     string
	routed        bool // decided to route: the tenant and application are known
	orgID         string
	applicationID string
	sourceID      string
	started       time.Time
	attempt       int
}

type pending struct {
	fut jetstream.PubAckFuture
	job *job
}

type result struct {
	job *job
	ack *jetstream.PubAck
	err error
}

func (p *partition) run(ctx context.Context) error {
	// A burst's last held-back lines are summarised within a second even
	// when no event follows.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case now := <-tick.C:
			p.logHeldBack(p.audit.roll(now))
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
	j := &job{offset: m.Offset, eventType: d.EventType}
	if d.Action == route.Ignore {
		// Most of the stream: no log entry is built unless it is written.
		p.count(d.EventType, "ignored", "")
		if p.h.Log.Logger.IsLevelEnabled(logrus.DebugLevel) {
			p.log(j).Debug("event type ignored")
		}
		p.finish(m.Offset)
		return nil
	}
	if d.Action == route.Skip {
		return p.skip(p.log(j), d.EventType, d.Reason, m.Offset)
	}
	j.routed, j.orgID, j.applicationID = true, d.Tenant.OrgID, d.Event.ApplicationID
	sourceID, err := p.resolve(ctx, j, d)
	switch {
	case errors.Is(err, resolve.ErrUnresolvable):
		return p.skip(p.log(j), d.EventType, route.ReasonUnresolvable, m.Offset)
	case errors.Is(err, resolve.ErrRefused):
		return p.skip(p.log(j).WithError(err), d.EventType, route.ReasonRefusedBySources, m.Offset)
	case err != nil:
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
	j.msg, j.sourceID = workstream.NewMsg(wm, id), sourceID
	if !p.h.fits(j.msg) {
		return p.skip(p.log(j), d.EventType, route.ReasonExceedsNATSLimits, m.Offset)
	}
	if err := p.waitSlot(ctx, sourceID); err != nil {
		return err
	}
	return p.publish(ctx, j)
}

// log is the log entry of one event: its type and Kafka coordinates, and
// what is known of its tenant, application and source. It is built only
// when a line is written: during a backlog most events have none.
func (p *partition) log(j *job) *logrus.Entry {
	f := logrus.Fields{
		"event_type":      route.MetricType(j.eventType),
		"kafka_topic":     p.claim.Topic(),
		"kafka_partition": p.claim.Partition(),
		"kafka_offset":    j.offset,
	}
	if j.routed {
		f["org_id"], f["application_id"] = j.orgID, j.applicationID
	}
	if j.sourceID != "" {
		f["source_id"] = j.sourceID
	}
	return p.h.Log.WithFields(f)
}

// count adds one to the events counter of the event type, outcome and
// reason, resolving its series once per partition rather than per event.
func (p *partition) count(eventType, outcome, reason string) {
	k := eventOutcome{route.MetricType(eventType), outcome, reason}
	c, ok := p.events[k]
	if !ok {
		c = p.h.Metrics.Events.WithLabelValues(k.eventType, k.outcome, k.reason)
		p.events[k] = c
	}
	c.Inc()
}

// fits reports whether the server can take msg: JetStream's header limit
// and the connection's max payload, which counts the headers too.
func (h *Handler) fits(msg *nats.Msg) bool {
	hdr := headerSize(msg.Header)
	if hdr > maxHeaderBytes {
		return false
	}
	limit := int64(0)
	if h.MaxPayload != nil {
		limit = h.MaxPayload()
	}
	return limit <= 0 || int64(hdr+len(msg.Data)) <= limit
}

// headerSize is the size of the encoded header block as the server sees
// it: the version line, one "Key: Value" line per value, the blank line.
func headerSize(h nats.Header) int {
	if len(h) == 0 {
		return 0
	}
	n := len("NATS/1.0\r\n") + len("\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(": ") + len(v) + len("\r\n")
		}
	}
	return n
}

// refusedForGood reports whether a publish failed because of the message
// itself, so that no retry can succeed.
func refusedForGood(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == errCodeMessageTooLarge || apiErr.ErrorCode == errCodeHeaderTooLarge
	}
	return errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadHeaderMsg)
}

func (p *partition) skip(log *logrus.Entry, eventType, reason string, offset int64) error {
	p.count(eventType, "skipped", reason)
	log.WithField("reason", reason).Warn("event skipped: it cannot be processed")
	p.finish(offset)
	return nil
}

// resolve finds the source id, retrying transient failures until it
// succeeds, the event proves unresolvable or refused, or the session ends.
func (p *partition) resolve(ctx context.Context, j *job, d route.Decision) (string, error) {
	for attempt := 1; ; attempt++ {
		id, via, err := p.h.Resolver.SourceID(ctx, d.Event, d.Tenant)
		if err == nil {
			p.h.Metrics.Resolved.WithLabelValues(string(via)).Inc()
			if attempt > 1 {
				p.h.Ready.Set(ops.CheckProgress, true, "")
			}
			return id, nil
		}
		if errors.Is(err, resolve.ErrUnresolvable) || errors.Is(err, resolve.ErrRefused) || ctx.Err() != nil {
			return "", err
		}
		p.h.Metrics.Retries.WithLabelValues("resolve").Inc()
		p.h.Ready.Set(ops.CheckProgress, false, "resolving a source id keeps failing")
		p.log(j).WithError(err).WithField("attempt", attempt).Warn("resolving the source id failed, retrying")
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
			p.acks <- pending{fut: fut, job: j}
			return nil
		}
		if refusedForGood(err) {
			return p.refused(j, err)
		}
		if err := p.retryWait(ctx, j, err); err != nil {
			return err
		}
	}
}

// awaitAcks hands the publishes' outcomes back to the partition, in
// publish order: one goroutine per partition instead of one per publish
// (JetStream acknowledges one stream's publishes in order anyway, and a
// future always ends, with its ack or the publish timeout). It stops when
// the partition closes acks.
func (p *partition) awaitAcks() {
	for a := range p.acks {
		select {
		case ack := <-a.fut.Ok():
			p.results <- result{job: a.job, ack: ack}
		case err := <-a.fut.Err():
			p.results <- result{job: a.job, err: err}
		}
	}
}

func (p *partition) retryWait(ctx context.Context, j *job, err error) error {
	p.h.Metrics.Retries.WithLabelValues("nats").Inc()
	p.h.Ready.Set(ops.CheckProgress, false, "publishing to JetStream keeps failing")
	p.log(j).WithError(err).WithField("attempt", j.attempt).Warn("publish to JetStream failed, retrying")
	return backoff.Sleep(ctx, p.h.Backoff.Delay(j.attempt))
}

// complete handles one publish outcome: retry a failure in place (the
// source's slot stays taken, so nothing of that source overtakes it), or
// finish the offset.
func (p *partition) complete(ctx context.Context, r result) error {
	j := r.job
	delete(p.inflight, j.sourceID)
	p.h.Metrics.InFlight.Dec()
	if r.err != nil && refusedForGood(r.err) {
		return p.refused(j, r.err)
	}
	if r.err != nil {
		p.inflight[j.sourceID] = j // hold the slot while waiting
		err := p.retryWait(ctx, j, r.err)
		delete(p.inflight, j.sourceID)
		if err != nil {
			return err
		}
		return p.publish(ctx, j)
	}
	p.h.Ready.Set(ops.CheckProgress, true, "")
	p.h.Metrics.PublishSeconds.Observe(time.Since(j.started).Seconds())
	p.acknowledged(j)
	if r.ack.Duplicate {
		p.h.Metrics.Duplicates.Inc()
	}
	write, held := p.audit.forwarded(time.Now(), j.offset)
	p.logHeldBack(held)
	if write {
		p.log(j).WithFields(logrus.Fields{"nats_stream_seq": r.ack.Sequence, "duplicate": r.ack.Duplicate}).Info("event forwarded to the work stream")
	} else {
		p.h.Metrics.EventLogsHeld.Inc()
	}
	p.finish(j.offset)
	return nil
}

// acknowledged counts a job the stream stored: an event is routed once it
// is in the stream, so a refused one is counted only as skipped.
func (p *partition) acknowledged(j *job) {
	p.h.Metrics.Published.Inc()
	p.count(j.eventType, "routed", "")
}

// refused skips a job JetStream will never take.
func (p *partition) refused(j *job, err error) error {
	return p.skip(p.log(j).WithError(err), j.eventType, route.ReasonRefusedByNATS, j.offset)
}

// finish marks offset done and marks the Kafka offset if it advanced.
func (p *partition) finish(offset int64) {
	next, advanced := p.tracker.Done(offset)
	if advanced {
		p.sess.MarkOffset(p.claim.Topic(), p.claim.Partition(), next, "")
		p.h.Metrics.Commits.Inc()
		p.lastMarked.Set(float64(next))
	}
}

// drain waits (bounded) for in-flight publishes so their offsets can be
// marked before the session commits. What is not acknowledged in time is
// not marked: it will be consumed again and deduplicated by the stream.
func (p *partition) drain() error {
	defer func() { p.logHeldBack(p.audit.flush(time.Now())) }()
	timer := time.NewTimer(p.h.DrainTimeout)
	defer timer.Stop()
	for len(p.inflight) > 0 {
		select {
		case r := <-p.results:
			delete(p.inflight, r.job.sourceID)
			p.h.Metrics.InFlight.Dec()
			if r.err == nil {
				p.acknowledged(r.job)
				p.finish(r.job.offset)
			}
		case <-timer.C:
			p.h.Log.WithField("inflight", len(p.inflight)).Warn("stopping with unacknowledged publishes; they will be replayed")
			return nil
		}
	}
	return nil
}

// logHeldBack writes the summary of the event lines a window held back.
func (p *partition) logHeldBack(h heldBack) {
	if h.Count == 0 {
		return
	}
	p.h.Log.WithFields(logrus.Fields{
		"kafka_topic": p.claim.Topic(), "kafka_partition": p.claim.Partition(),
		"events": h.Count, "first_kafka_offset": h.First, "last_kafka_offset": h.Last,
	}).Info("events forwarded to the work stream without a line each (more than LISTENER_EVENT_LOG_RATE a second)")
}
