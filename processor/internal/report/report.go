// Package report publishes availability status messages to Sources over
// Kafka (docs/contract.md, "Status messages") with one long-lived idempotent
// producer.
package report

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/IBM/sarama"

	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/status"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// Reporter implements reconcile.Reporter.
type Reporter struct {
	producer sarama.SyncProducer
	topic    string
	onSent   func(status string)
}

// New makes an idempotent, acks=all producer from base (security settings
// already applied). onSent is called after each delivered message.
func New(brokers []string, base *sarama.Config, topic string, onSent func(status string)) (*Reporter, error) {
	c := *base
	c.Producer.Idempotent = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Producer.Retry.Max = 5
	c.Net.MaxOpenRequests = 1 // idempotence requires it
	p, err := sarama.NewSyncProducer(brokers, &c)
	if err != nil {
		return nil, fmt.Errorf("kafka status producer: %w", err)
	}
	return &Reporter{producer: p, topic: topic, onSent: onSent}, nil
}

// message builds the Kafka message for a status.
func message(topic string, m work.Message, msg status.Message) (*sarama.ProducerMessage, error) {
	value, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	headers := []sarama.RecordHeader{{Key: []byte(event.HeaderEventType), Value: []byte(status.EventType)}}
	add := func(k, v string) {
		if v != "" {
			headers = append(headers, sarama.RecordHeader{Key: []byte(k), Value: []byte(v)})
		}
	}
	add(event.HeaderOrgID, m.Tenant.OrgID)
	add(event.HeaderAccount, m.Tenant.AccountNumber)
	add(event.HeaderIdentity, m.Identity)
	return &sarama.ProducerMessage{
		Topic:   topic,
		Key:     sarama.StringEncoder(m.Tenant.Key()),
		Value:   sarama.ByteEncoder(value),
		Headers: headers,
	}, nil
}

// Report implements reconcile.Reporter. A failed send is transient.
func (r *Reporter) Report(_ context.Context, m work.Message, msg status.Message) error {
	pm, err := message(r.topic, m, msg)
	if err != nil {
		return err
	}
	if _, _, err := r.producer.SendMessage(pm); err != nil {
		return failure.Transient("kafka", fmt.Errorf("status message: %w", err))
	}
	if r.onSent != nil {
		r.onSent(msg.Status)
	}
	return nil
}

// Close flushes and closes the producer.
func (r *Reporter) Close() error { return r.producer.Close() }
