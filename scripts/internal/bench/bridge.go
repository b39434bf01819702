package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cloudoreg/cloudoreg/shared/config"
	"github.com/cloudoreg/cloudoreg/shared/kafka"
)

// BridgeOptions configure the bare bridge: the least a Kafka-to-JetStream
// forwarder with the listener's guarantees must do. A sarama consumer group
// reads the topic; each message is published asynchronously with
// Nats-Msg-Id topic/partition/offset to subject <prefix><key>; offsets are
// marked in order, each after its publish was acknowledged. With Publish
// false it only consumes and marks (bare consumption).
type BridgeOptions struct {
	Brokers, Topic, Group string
	NATSURL, Prefix       string
	Publish               bool
	MaxInFlight           int
	CommitEvery           time.Duration
}

func (b BridgeOptions) args() []string {
	return []string{"bridge",
		"-brokers", b.Brokers, "-topic", b.Topic, "-group", b.Group, "-nats", b.NATSURL, "-prefix", b.Prefix,
		"-publish=" + strconv.FormatBool(b.Publish), "-inflight", strconv.Itoa(b.MaxInFlight), "-commit", b.CommitEvery.String(),
	}
}

// RunBridge is the bridge mode of bin/bench: it parses args (as args()
// writes them) and bridges until SIGTERM.
func RunBridge(args []string) error {
	var b BridgeOptions
	fs := flag.NewFlagSet("bridge", flag.ContinueOnError)
	fs.StringVar(&b.Brokers, "brokers", "", "")
	fs.StringVar(&b.Topic, "topic", "", "")
	fs.StringVar(&b.Group, "group", "", "")
	fs.StringVar(&b.NATSURL, "nats", "", "")
	fs.StringVar(&b.Prefix, "prefix", "", "")
	fs.BoolVar(&b.Publish, "publish", true, "")
	fs.IntVar(&b.MaxInFlight, "inflight", 256, "")
	fs.DurationVar(&b.CommitEvery, "commit", 100*time.Millisecond, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return b.run(ctx)
}

func (b BridgeOptions) run(ctx context.Context) error {
	nc, err := nats.Connect(b.NATSURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(b.MaxInFlight*4))
	if err != nil {
		return err
	}
	sc, err := kafka.Config(config.Kafka{Brokers: strings.Split(b.Brokers, ",")}, "cloudoreg-bench-bridge")
	if err != nil {
		return err
	}
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.Consumer.Offsets.AutoCommit.Interval = b.CommitEvery
	group, err := sarama.NewConsumerGroup(strings.Split(b.Brokers, ","), b.Group, sc)
	if err != nil {
		return err
	}
	defer group.Close()
	h := &bridgeHandler{opts: b, js: js}
	for ctx.Err() == nil {
		if err := group.Consume(ctx, []string{b.Topic}, h); err != nil && ctx.Err() == nil {
			fmt.Fprintln(os.Stderr, "bridge: consume:", err)
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

type bridgeHandler struct {
	opts BridgeOptions
	js   jetstream.JetStream
}

func (*bridgeHandler) Setup(sarama.ConsumerGroupSession) error { return nil }

func (*bridgeHandler) Cleanup(s sarama.ConsumerGroupSession) error {
	s.Commit()
	return nil
}

type pending struct {
	fut    jetstream.PubAckFuture
	offset int64
}

func (h *bridgeHandler) ConsumeClaim(s sarama.ConsumerGroupSession, c sarama.ConsumerGroupClaim) error {
	if !h.opts.Publish {
		for m := range c.Messages() {
			s.MarkMessage(m, "")
		}
		return nil
	}
	// Acks are awaited in Kafka order, so each mark covers every offset
	// before it.
	queue := make(chan pending, h.opts.MaxInFlight)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := range queue {
			select {
			case <-p.fut.Ok():
				s.MarkOffset(c.Topic(), c.Partition(), p.offset+1, "")
			case err := <-p.fut.Err():
				fmt.Fprintln(os.Stderr, "bridge: publish:", err)
				return // not marked: the session ends and replays
			}
		}
	}()
	defer func() {
		close(queue)
		<-done
	}()
	for m := range c.Messages() {
		msg := &nats.Msg{Subject: h.opts.Prefix + string(m.Key), Data: m.Value, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, m.Topic+"/"+strconv.Itoa(int(m.Partition))+"/"+strconv.FormatInt(m.Offset, 10))
		fut, err := h.js.PublishMsgAsync(msg)
		if err != nil {
			return err
		}
		select {
		case queue <- pending{fut: fut, offset: m.Offset}:
		case <-done:
			return nil
		}
	}
	return nil
}
