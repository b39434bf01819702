package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cloudoreg/cloudoreg/shared/work"
)

// BenchmarkListenerForward measures how fast the listener moves a backlog
// from Kafka to JetStream, against a baseline measured in the same run on
// the same broker and server: a naive loop that consumes a partition and
// publishes each message synchronously (what the pipelining replaces).
// It reports events/s for both and the speed-up ratio; the ratio, not the
// absolute numbers, is what to compare between machines.
func BenchmarkListenerForward(b *testing.B) {
	const backlog = 2000
	var listenerSec, baselineSec float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		e := newEnv(b)
		for j := 0; j < backlog; j++ {
			e.produce("o1", "Application.pause", pause(j%50, j))
		}
		b.StartTimer()
		_, stop := e.runListener(e.config())
		listenerSec += e.forwardingSeconds(work.StreamName, backlog)
		b.StopTimer()
		stop()
		baselineSec += baseline(b, e, backlog)
		b.StartTimer()
	}
	b.ReportMetric(float64(backlog*b.N)/listenerSec, "events/s")
	b.ReportMetric(float64(backlog*b.N)/baselineSec, "baseline-events/s")
	b.ReportMetric(baselineSec/listenerSec, "speedup")
}

// forwardingSeconds watches a stream and returns the time from its first
// message to its nth: the forwarding rate, without start-up (joining the
// consumer group) in it.
func (e *env) forwardingSeconds(stream string, n int) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	cons, err := e.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		e.t.Fatal(err)
	}
	var first time.Time
	for i := 0; i < n; i++ {
		if _, err := cons.Next(jetstream.FetchMaxWait(waitLimit)); err != nil {
			e.t.Fatalf("stream %s: %d of %d messages: %v", stream, i, n, err)
		}
		if i == 0 {
			first = time.Now()
		}
	}
	return time.Since(first).Seconds()
}

// baseline consumes the same backlog and publishes it one synchronous
// publish at a time to a copy of the work stream; it returns the seconds.
func baseline(b *testing.B, e *env, n int) float64 {
	ctx := context.Background()
	cfg := jetstream.StreamConfig{Name: "BASELINE", Subjects: []string{"baseline.>"}, Storage: jetstream.FileStorage, Duplicates: 20 * time.Minute}
	if _, err := e.js.CreateOrUpdateStream(ctx, cfg); err != nil {
		b.Fatal(err)
	}
	c, err := sarama.NewConsumer(e.brokers, sarama.NewConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	result := make(chan float64)
	go func() { result <- e.forwardingSeconds("BASELINE", n) }()
	done := 0
	for p := int32(0); p < 3 && done < n; p++ {
		pc, err := c.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			b.Fatal(err)
		}
		hw := pc.HighWaterMarkOffset()
		for hw > 0 {
			m := <-pc.Messages()
			msg := &nats.Msg{Subject: "baseline." + work.Subject("1"), Data: m.Value, Header: nats.Header{}}
			msg.Header.Set(jetstream.MsgIDHeader, string(m.Key)+"/"+time.Now().String())
			if _, err := e.js.PublishMsg(ctx, msg); err != nil {
				b.Fatal(err)
			}
			done++
			if m.Offset+1 >= hw {
				break
			}
		}
		_ = pc.Close()
	}
	if done != n {
		b.Fatalf("baseline forwarded %d of %d", done, n)
	}
	return <-result
}
