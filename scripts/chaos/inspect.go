package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/IBM/sarama"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cloudoreg/cloudoreg/shared/kafka"
	"github.com/cloudoreg/cloudoreg/shared/standin/rhsm"
	"github.com/cloudoreg/cloudoreg/shared/standin/sources"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// Names of what the programs keep, as the harness reads them.
const (
	eventsTopic   = "platform.sources.event-stream"
	statusTopic   = "platform.sources.status"
	listenerGroup = "cloudoreg-listener"
	parkedBucket  = "CLOUDOREG_RETRIES"
)

// inspector reads the recorded state of the stand-ins, Kafka and JetStream.
type inspector struct {
	sourcesURL, rhsmURL string
	brokers             []string
	natsURL             string
	http                *http.Client
}

// appState is an application as the customer sees it.
type appState struct {
	ID       string `json:"id"`
	SourceID string `json:"source_id"`
	Status   string `json:"availability_status"`
	Error    string `json:"availability_status_error"`
}

func (in *inspector) getJSON(ctx context.Context, url string, header map[string]string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := in.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d: %.200s", url, resp.StatusCode, b)
	}
	return json.Unmarshal(b, out)
}

// apps returns every application of the workload's orgs, by id.
func (in *inspector) apps(ctx context.Context) (map[string]appState, error) {
	out := map[string]appState{}
	for _, org := range orgs {
		var page struct{ Data []appState }
		if err := in.getJSON(ctx, in.sourcesURL+"/api/sources/v3.1/applications?limit=1000000", map[string]string{"x-rh-sources-org-id": org}, &page); err != nil {
			return nil, err
		}
		for _, a := range page.Data {
			out[a.ID] = a
		}
	}
	return out, nil
}

// registrations returns what RHSM holds: org -> accounts.
func (in *inspector) registrations(ctx context.Context) (map[string][]rhsm.Account, error) {
	var out map[string][]rhsm.Account
	err := in.getJSON(ctx, in.rhsmURL+rhsm.RegistrationsPath, nil, &out)
	return out, err
}

// statusLog returns every message the Sources stand-in read from the status topic.
func (in *inspector) statusLog(ctx context.Context) ([]sources.StatusRecord, error) {
	var out []sources.StatusRecord
	err := in.getJSON(ctx, in.sourcesURL+sources.StatusLogPath, nil, &out)
	return out, err
}

// kafkaMsg is one record of a topic.
type kafkaMsg struct {
	Partition int32
	Offset    int64
	Key       string
	Headers   map[string]string
	Value     []byte
}

// origin is the work message origin (and dedup id) of an event: topic,
// partition and offset.
func (m kafkaMsg) origin() string {
	return fmt.Sprintf("%s/%d/%d", eventsTopic, m.Partition, m.Offset)
}

func saramaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.ClientID = "cloudoreg-chaos"
	c.Version = kafka.Version
	c.Consumer.Fetch.Max = 8 << 20
	return c
}

// readTopic reads a whole topic, every partition up to its high-water mark.
func (in *inspector) readTopic(ctx context.Context, topic string) ([]kafkaMsg, error) {
	client, err := sarama.NewClient(in.brokers, saramaConfig())
	if err != nil {
		return nil, err
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return nil, err
	}
	defer consumer.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		return nil, err
	}
	var out []kafkaMsg
	for _, p := range parts {
		hwm, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return nil, err
		}
		if hwm == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			return nil, err
		}
		err = func() error {
			defer pc.Close()
			for {
				select {
				case m := <-pc.Messages():
					km := kafkaMsg{Partition: m.Partition, Offset: m.Offset, Key: string(m.Key), Headers: map[string]string{}, Value: m.Value}
					for _, h := range m.Headers {
						if _, seen := km.Headers[string(h.Key)]; !seen {
							km.Headers[string(h.Key)] = string(h.Value)
						}
					}
					out = append(out, km)
					if m.Offset >= hwm-1 {
						return nil
					}
				case err := <-pc.Errors():
					return err
				case <-ctx.Done():
					return fmt.Errorf("reading %s/%d: %w", topic, p, ctx.Err())
				}
			}
		}()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// listenerLag is how many events the listener has not committed, over all
// partitions of the event topic.
func (in *inspector) listenerLag() (int64, error) {
	client, err := sarama.NewClient(in.brokers, saramaConfig())
	if err != nil {
		return 0, err
	}
	defer client.Close()
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return 0, err
	}
	parts, err := client.Partitions(eventsTopic)
	if err != nil {
		return 0, err
	}
	committed, err := admin.ListConsumerGroupOffsets(listenerGroup, map[string][]int32{eventsTopic: parts})
	if err != nil {
		return 0, err
	}
	var lag int64
	for _, p := range parts {
		hwm, err := client.GetOffset(eventsTopic, p, sarama.OffsetNewest)
		if err != nil {
			return 0, err
		}
		at := int64(0)
		if b := committed.GetBlock(eventsTopic, p); b != nil && b.Offset > 0 {
			at = b.Offset
		}
		lag += hwm - at
	}
	return lag, nil
}

// workMsg is one message of a JetStream stream (headers only).
type workMsg struct {
	Seq     uint64
	Subject string
	Header  nats.Header
}

func (in *inspector) connectNATS() (*nats.Conn, jetstream.JetStream, error) {
	nc, err := nats.Connect(in.natsURL, nats.Name("cloudoreg-chaos"), nats.Timeout(5*time.Second))
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// readWorkStreams reads the work and dead-letter streams on one connection.
func readWorkStreams(ctx context.Context, in *inspector) (work, dlq []workMsg, err error) {
	nc, js, err := in.connectNATS()
	if err != nil {
		return nil, nil, err
	}
	defer nc.Close()
	if work, err = readStream(ctx, js, "CLOUDOREG_WORK"); err != nil {
		return nil, nil, err
	}
	if dlq, err = readStream(ctx, js, "CLOUDOREG_DLQ"); err != nil {
		return nil, nil, err
	}
	return work, dlq, nil
}

// retryNATS runs read again while it fails for want of an answer. After a
// NATS server restarts, a settled cluster may still, for a moment, have no
// responder for a JetStream request (an ordered consumer being placed, a
// leader elected again): that says nothing about the system under test,
// and the harness must not report it as a failure. Any other error, or the
// deadline, ends the retries.
func retryNATS(ctx context.Context, read func(context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second) // a request without an answer ends here, leaving time for another
		err := read(actx)
		cancel()
		if err == nil || !noAnswer(err) || ctx.Err() != nil {
			return err
		}
		if serr := sleep(ctx, 250*time.Millisecond); serr != nil {
			return fmt.Errorf("%w (last answer: %w)", serr, err)
		}
	}
}

func noAnswer(err error) bool {
	return errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrNoServers) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)
}

// readStream reads every message of a stream, in stream order.
func readStream(ctx context.Context, js jetstream.JetStream, name string) ([]workMsg, error) {
	st, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	oc, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy, HeadersOnly: true})
	if err != nil {
		return nil, err
	}
	var out []workMsg
	for {
		batch, err := oc.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		for m := range batch.Messages() {
			meta, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			out = append(out, workMsg{Seq: meta.Sequence.Stream, Subject: m.Subject(), Header: m.Headers()})
			if meta.Sequence.Stream >= info.State.LastSeq {
				return out, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("reading stream %s: got %d of %d messages: %w", name, len(out), info.State.Msgs, ctx.Err())
		}
	}
}

// busy says what work the processors still have: messages pending or
// unacknowledged in the partition consumers, and parked retries.
func busy(ctx context.Context, js jetstream.JetStream) (string, error) {
	st, err := js.Stream(ctx, work.StreamName)
	if err != nil {
		return "", err
	}
	var pending, ackPending uint64
	lister := st.ListConsumers(ctx)
	for ci := range lister.Info() {
		pending += ci.NumPending
		ackPending += uint64(ci.NumAckPending)
	}
	if err := lister.Err(); err != nil {
		return "", err
	}
	parked := 0
	if kv, err := js.KeyValue(ctx, parkedBucket); err == nil {
		keys, err := kv.ListKeys(ctx)
		if err != nil {
			return "", err
		}
		for range keys.Keys() {
			parked++
		}
	} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return "", err
	}
	if pending+ackPending == 0 && parked == 0 {
		return "", nil
	}
	return fmt.Sprintf("%d work messages pending, %d being worked on, %d sources parked", pending, ackPending, parked), nil
}
