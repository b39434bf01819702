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

// Header is one Kafka header of a recorded status message.
type Header struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// StatusRecord is one message read from the status topic. The identity
// header is left out: it is a credential and tests need only the tenant.
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
	cfg.Version = sarama.V2_8_0_0
	// A message written before the group first joined must not be missed.
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	group, err := sarama.NewConsumerGroup(s.cfg.Brokers, s.cfg.StatusGroup, cfg)
	if err != nil {
		return fmt.Errorf("status consumer group: %w", err)
	}
	c := &statusConsumer{s: s, group: group, ready: make(chan struct{}), done: make(chan struct{})}
	runCtx, cancel := context.WithCancel(s.bgCtx)
	s.consumer, s.stopConsumer = c, cancel
	go c.run(runCtx)

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
			continue
		}
		rec.Headers = append(rec.Headers, Header{Key: k, Value: v})
	}
	if identity != "" {
		// Keep the fact, not the credential.
		rec.Headers = append(rec.Headers, Header{Key: event.HeaderIdentity, Value: "(redacted)"})
	}

	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	outcome, detail, evs, fwd := s.applyStatus(eventType, orgID, account, identity, msg.Value)
	if len(evs) > 0 {
		if err := s.pub.publish(fwd, evs...); err != nil {
			outcome, detail = OutcomeEventFailed, err.Error()
		}
	}
	rec.Outcome, rec.Detail = outcome, detail
	s.countStatus(outcome)
	entry := s.log.WithFields(map[string]any{
		"outcome": outcome, "event_type": eventType, "org_id": orgID, "account_number": account,
		"partition": msg.Partition, "offset": msg.Offset,
	})
	switch outcome {
	case OutcomeApplied, OutcomeHealthcheck:
		entry.Debug("sources stand-in: status message")
	default:
		entry.WithField("detail", detail).Warn("sources stand-in: status message not applied")
	}
	_ = s.store.update(func(st *state) error {
		st.statusLog = append(st.statusLog, rec)
		return nil
	})
}

// applyStatus updates the application and mirrors a changed status onto its
// source, as UpdateSourceFromApplicationAvailabilityStatus does. It returns the
// Application.update event the real listener raises after an update.
func (s *Server) applyStatus(eventType, orgID, account, identity string, value []byte) (string, string, []outEvent, forward) {
	switch eventType {
	case status.Healthcheck:
		return OutcomeHealthcheck, "", nil, forward{}
	case status.EventType:
	default:
		return OutcomeWrongEventType, "event_type " + strconv.Quote(eventType), nil, forward{}
	}
	var p statusPayload
	if err := json.Unmarshal(value, &p); err != nil {
		return OutcomeBadPayload, "value is not a status message", nil, forward{}
	}
	if !validStatus(p.Status) {
		return OutcomeBadStatus, "invalid status " + strconv.Quote(p.Status), nil, forward{}
	}
	// The real listener accepts the identity when no tenant header is set.
	tn, err := event.ResolveTenant(orgID, account, identity)
	if err != nil {
		return OutcomeNoTenant, err.Error(), nil, forward{}
	}
	t, ok := s.store.knownTenant(tn.OrgID, tn.AccountNumber)
	if !ok {
		return OutcomeUnknownTenant, "tenant " + tn.Key() + " is not known", nil, forward{}
	}
	// Case-sensitive, as in the real service.
	if p.ResourceType != status.ResourceType {
		return OutcomeUnsupportedResource, "resource_type " + strconv.Quote(p.ResourceType), nil, forward{}
	}
	id, ok := statusResourceID(p.ResourceID)
	if !ok {
		return OutcomeBadPayload, "resource_id is not an id", nil, forward{}
	}
	var app Application
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
		return nil
	})
	if err != nil {
		return OutcomeNotFound, "application " + idString(id) + " of tenant " + tn.Key(), nil, forward{}
	}
	if identity == "" {
		identity = generatedIdentity(t.orgID, t.account)
	}
	fwd := forward{orgID: orgID, account: account, identity: identity}
	if fwd.orgID == "" && fwd.account == "" {
		fwd.orgID, fwd.account = t.orgID, t.account
	}
	return OutcomeApplied, "", []outEvent{{evAppUpdate, app.event()}}, fwd
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
