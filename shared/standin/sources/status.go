package sources

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/kafka"
	"github.com/cloudoreg/cloudoreg/shared/status"
)

// Outcomes of a status message, as recorded and counted.
const (
	OutcomeApplied             = "applied"
	OutcomeHealthcheck         = "ignored_healthcheck"
	OutcomeWrongEventType      = "rejected_event_type"
	OutcomeBadPayload          = "rejected_payload"
	OutcomeBadStatus           = "rejected_status"
	OutcomeNoTenant            = "rejected_no_tenant"
	OutcomeUnknownTenant       = "rejected_unknown_tenant"
	OutcomeUnsupportedResource = "rejected_resource_type"
	OutcomeNotFound            = "rejected_not_found"
	OutcomeEventFailed         = "applied_event_failed"
)

// redacted replaces the value of a header that is a credential.
const redacted = "(redacted)"

// Header is one Kafka header of a recorded status message.
type Header struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// StatusRecord is one message read from the status topic, headers in their
// order. Credentials (x-rh-identity, x-rh-sources-psk) are kept as names with
// a redacted value: tests need to know they were sent, never their content.
type StatusRecord struct {
	Time      time.Time       `json:"time"`
	Partition int32           `json:"partition"`
	Offset    int64           `json:"offset"`
	Key       string          `json:"key"`
	Headers   []Header        `json:"headers"`
	Value     json.RawMessage `json:"value"`
	Outcome   string          `json:"outcome"`
	Detail    string          `json:"detail,omitempty"`
}

// HasIdentity is true when the message carried an x-rh-identity header.
func (r StatusRecord) HasIdentity() bool {
	for _, h := range r.Headers {
		if h.Key == event.HeaderIdentity {
			return true
		}
	}
	return false
}

// Header returns the value of the first header named key.
func (r StatusRecord) Header(key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return h.Value
		}
	}
	return ""
}

func cloneStatusLog(in []StatusRecord) []StatusRecord {
	out := make([]StatusRecord, len(in))
	for i, r := range in {
		r.Headers = append([]Header(nil), r.Headers...)
		r.Value = bytes.Clone(r.Value)
		out[i] = r
	}
	return out
}

// statusConsumer reads platform.sources.status in a consumer group, like the
// real service's availability status listener.
type statusConsumer struct {
	s     *Server
	group sarama.ConsumerGroup
	ready chan struct{}
	once  sync.Once
	done  chan struct{}
}

func (s *Server) startStatusConsumer(ctx context.Context) error {
	cfg := sarama.NewConfig()
	cfg.ClientID = "sources-api-standin-status"
	cfg.Version = kafka.Version
	// A message written before the group first joined must not be missed.
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	group, err := sarama.NewConsumerGroup(s.cfg.Brokers, s.cfg.StatusGroup, cfg)
	if err != nil {
		return fmt.Errorf("status consumer group: %w", err)
	}
	c := &statusConsumer{s: s, group: group, ready: make(chan struct{}), done: make(chan struct{})}
	runCtx, cancel := context.WithCancel(s.bgCtx)
	s.consumer, s.stopConsumer = c, cancel
	go c.run(runCtx) //nolint:contextcheck // the consumer outlives the call that starts it

	select {
	case <-c.ready:
		return nil
	case <-c.done:
		return errors.New("status consumer stopped before it was bound")
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *statusConsumer) run(ctx context.Context) {
	defer close(c.done)
	for {
		err := c.group.Consume(ctx, []string{c.s.cfg.StatusTopic}, c)
		if errors.Is(err, sarama.ErrClosedConsumerGroup) || ctx.Err() != nil {
			return
		}
		if err != nil {
			c.s.log.WithError(err).Warn("sources stand-in: status consumer session ended")
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

func (c *statusConsumer) close() error {
	err := c.group.Close()
	<-c.done
	return err
}

// Setup marks the consumer as bound: from now on it owns its partitions.
func (c *statusConsumer) Setup(sarama.ConsumerGroupSession) error {
	c.once.Do(func() { close(c.ready) })
	return nil
}

func (c *statusConsumer) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (c *statusConsumer) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case <-sess.Context().Done():
			return nil
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			c.s.handleStatus(msg)
			sess.MarkMessage(msg, "")
		}
	}
}

type statusPayload struct {
	ResourceType string          `json:"resource_type"`
	ResourceID   json.RawMessage `json:"resource_id"`
	Status       string          `json:"status"`
	Error        string          `json:"error"`
}

// handleStatus applies one status message the way the real listener does and
// records what became of it.
func (s *Server) handleStatus(msg *sarama.ConsumerMessage) {
	rec := StatusRecord{
		Time: now(), Partition: msg.Partition, Offset: msg.Offset, Key: string(msg.Key),
		Headers: []Header{},
	}
	if len(msg.Value) > 0 && json.Valid(msg.Value) {
		rec.Value = bytes.Clone(msg.Value)
	} else if len(msg.Value) > 0 {
		rec.Value, _ = json.Marshal(string(msg.Value))
	}
	var eventType, orgID, account, identity string
	for _, h := range msg.Headers {
		k, v := string(h.Key), string(h.Value)
		switch k {
		case event.HeaderEventType:
			eventType = v
		case event.HeaderOrgID:
			orgID = v
		case event.HeaderAccount:
			account = v
		case event.HeaderIdentity:
			identity = v
		}
		// Keep the fact, not the credential.
		if k == event.HeaderIdentity || k == event.HeaderPSK {
			v = redacted
		}
		rec.Headers = append(rec.Headers, Header{Key: k, Value: v})
	}

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	res := s.applyStatus(rec, eventType, orgID, account, identity, msg.Value)
	if len(res.events) > 0 {
		if err := s.publish(res.fwd, res.events...); err != nil {
			res.outcome, res.detail = OutcomeEventFailed, err.Error()
			_ = s.store.update(func(st *state) error {
				st.statusLog[res.index].Outcome, st.statusLog[res.index].Detail = res.outcome, res.detail
				return nil
			})
		}
	}
	s.countStatus(res.outcome)
	entry := s.log.WithFields(map[string]any{
		"outcome": res.outcome, "event_type": eventType, "org_id": orgID, "account_number": account,
		"partition": msg.Partition, "offset": msg.Offset,
	})
	switch res.outcome {
	case OutcomeApplied, OutcomeHealthcheck:
		entry.Debug("sources stand-in: status message")
	case OutcomeUnknownTenant:
		// Beside a real Sources the topic carries its tenants too: counted
		// and recorded, but not worth a warning.
		entry.WithField("detail", res.detail).Debug("sources stand-in: status message for a tenant it does not know")
	default:
		entry.WithField("detail", res.detail).Warn("sources stand-in: status message not applied")
	}
}

type statusResult struct {
	outcome, detail string
	index           int // of the record in the status log
	events          []outEvent
	fwd             forward
}

// applyStatus updates the application and mirrors a changed status onto its
// source, as UpdateSourceFromApplicationAvailabilityStatus does, and returns
// the Application.update event the real listener raises after an update. The
// record joins the status log in the same step as the change it caused, so a
// test that awaited the change also finds the record.
func (s *Server) applyStatus(rec StatusRecord, eventType, orgID, account, identity string, value []byte) statusResult {
	done := func(outcome, detail string) statusResult {
		rec.Outcome, rec.Detail = outcome, detail
		var idx int
		_ = s.store.update(func(st *state) error {
			idx = len(st.statusLog)
			st.statusLog = append(st.statusLog, rec)
			return nil
		})
		return statusResult{outcome: outcome, detail: detail, index: idx}
	}
	switch eventType {
	case status.Healthcheck:
		return done(OutcomeHealthcheck, "")
	case status.EventType:
	default:
		return done(OutcomeWrongEventType, "event_type "+strconv.Quote(eventType))
	}
	var p statusPayload
	if err := json.Unmarshal(value, &p); err != nil {
		return done(OutcomeBadPayload, "value is not a status message")
	}
	if !validStatus(p.Status) {
		return done(OutcomeBadStatus, "invalid status "+strconv.Quote(p.Status))
	}
	// The real listener accepts the identity when no tenant header is set.
	tn, err := event.ResolveTenant(orgID, account, identity)
	if err != nil {
		return done(OutcomeNoTenant, err.Error())
	}
	t, ok := s.store.knownTenant(tn.OrgID, tn.AccountNumber)
	if !ok {
		return done(OutcomeUnknownTenant, "tenant "+tn.Key()+" is not known")
	}
	// Case-sensitive, as in the real service.
	if p.ResourceType != status.ResourceType {
		return done(OutcomeUnsupportedResource, "resource_type "+strconv.Quote(p.ResourceType))
	}
	id, ok := statusResourceID(p.ResourceID)
	if !ok {
		return done(OutcomeBadPayload, "resource_id is not an id")
	}
	var (
		app Application
		idx int
	)
	err = s.store.update(func(st *state) error {
		a, ok := st.app(t.id, id)
		if !ok {
			return notFound("application")
		}
		ts := now()
		previous := a.AvailabilityStatus
		a.AvailabilityStatus, a.AvailabilityStatusError = p.Status, p.Error
		a.LastCheckedAt = &ts
		if p.Status == statusAvailable {
			a.LastAvailableAt = cloneTime(&ts)
		}
		a.UpdatedAt = ts
		if previous != p.Status {
			if src, ok := st.sources[a.SourceID]; ok {
				src.AvailabilityStatus = p.Status
				src.LastCheckedAt = cloneTime(a.LastCheckedAt)
				if a.LastAvailableAt != nil {
					src.LastAvailableAt = cloneTime(a.LastAvailableAt)
				}
				src.UpdatedAt = ts
			}
		}
		app = a.clone()
		rec.Outcome = OutcomeApplied
		idx = len(st.statusLog)
		st.statusLog = append(st.statusLog, rec)
		return nil
	})
	if err != nil {
		return done(OutcomeNotFound, "application "+idString(id)+" of tenant "+tn.Key())
	}
	if identity == "" {
		identity = generatedIdentity(t.orgID, t.account)
	}
	fwd := forward{orgID: orgID, account: account, identity: identity}
	if fwd.orgID == "" && fwd.account == "" {
		fwd.orgID, fwd.account = t.orgID, t.account
	}
	return statusResult{outcome: OutcomeApplied, index: idx, events: []outEvent{{evAppUpdate, app.event()}}, fwd: fwd}
}

// statusResourceID accepts the id as a string or a number, as the real
// listener does.
func statusResourceID(raw json.RawMessage) (int64, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return 0, false
	}
	s := string(raw)
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, false
		}
	}
	id, err := strconv.ParseInt(s, 10, 64)
	return id, err == nil && id > 0
}

func (s *Server) countStatus(outcome string) {
	s.countsMu.Lock()
	defer s.countsMu.Unlock()
	s.counts[outcome]++
}
