package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cloudoreg/cloudoreg/shared/backoff"
	"github.com/cloudoreg/cloudoreg/shared/failure"
	"github.com/cloudoreg/cloudoreg/shared/work"
	"github.com/cloudoreg/cloudoreg/shared/workstream"
)

// Headers a dead letter carries besides the original ones.
const (
	HeaderDLQReason     = "Cloudoreg-Dlq-Reason"
	HeaderDLQDetail     = "Cloudoreg-Dlq-Detail"
	HeaderDLQDeliveries = "Cloudoreg-Dlq-Deliveries"
	HeaderDLQStreamSeq  = "Cloudoreg-Dlq-Stream-Seq"
	HeaderDLQSubject    = "Cloudoreg-Dlq-Subject"
)

// deadLetter copies msg with the reason to the dead-letter stream, then
// terminates it. If the copy cannot be stored, the message is handed back
// instead: nothing leaves the work stream without a trace.
func (w *Worker) deadLetter(ctx context.Context, msg jetstream.Msg, reason failure.DeadLetterReason, cause error) {
	var seq, deliveries uint64
	if meta, err := msg.Metadata(); err == nil {
		seq, deliveries = meta.Sequence.Stream, meta.NumDelivered
	}
	if err := w.copyToDLQ(ctx, msg.Subject(), msg.Headers(), msg.Data(), seq, deliveries, reason, cause); err != nil {
		w.log.WithError(err).WithField("nats_stream_seq", seq).Error("dead-lettering failed; handing the message back")
		_ = msg.NakWithDelay(w.cfg.Backoff.Max)
		return
	}
	if err := msg.Term(); err != nil {
		w.log.WithError(err).WithField("nats_stream_seq", seq).Warn("terminating a dead-lettered message failed")
	}
}

func (w *Worker) copyToDLQ(ctx context.Context, subject string, h nats.Header, data []byte, seq, deliveries uint64, reason failure.DeadLetterReason, cause error) error {
	out := &nats.Msg{Subject: work.DLQPrefix + strings.TrimPrefix(subject, work.SubjectPrefix), Header: nats.Header{}, Data: data}
	for k, v := range h {
		if k != jetstream.MsgIDHeader {
			out.Header[k] = v
		}
	}
	out.Header.Set(HeaderDLQReason, string(reason))
	out.Header.Set(HeaderDLQDetail, fmt.Sprint(cause))
	out.Header.Set(HeaderDLQDeliveries, strconv.FormatUint(deliveries, 10))
	out.Header.Set(HeaderDLQStreamSeq, strconv.FormatUint(seq, 10))
	out.Header.Set(HeaderDLQSubject, subject)
	// One dead letter per work message, whoever writes it (handler or advisory).
	out.Header.Set(jetstream.MsgIDHeader, "dlq/"+strconv.FormatUint(seq, 10))
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		var ack *jetstream.PubAck
		if ack, err = w.js.PublishMsg(ctx, out); err == nil {
			fields := map[string]any{"reason": reason, "detail": fmt.Sprint(cause), "nats_stream_seq": seq, "subject": subject}
			if ack.Duplicate {
				w.log.WithFields(fields).Info("work message already dead-lettered")
				return nil
			}
			w.metrics.DeadLetters.WithLabelValues(string(reason)).Inc()
			w.log.WithFields(fields).Error("work message dead-lettered")
			return nil
		}
		if backoff.Sleep(ctx, w.cfg.Backoff.Delay(attempt)) != nil {
			break
		}
	}
	return err
}

// maxDeliveriesAdvisory is the part of the server's advisory we read.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// AdvisorySubject is where the server announces messages that reached MaxDeliver.
const AdvisorySubject = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + work.StreamName + ".*"

// watchMaxDeliveries is the backstop for messages whose processor died
// repeatedly: the server gives up on them after MaxDeliver and says so in an
// advisory; one processor (queue group) copies them to the dead-letter stream.
func (w *Worker) watchMaxDeliveries(nc *nats.Conn) (*nats.Subscription, error) {
	return nc.QueueSubscribe(AdvisorySubject, "cloudoreg-processor-advisories", func(m *nats.Msg) {
		var a maxDeliveriesAdvisory
		if err := json.Unmarshal(m.Data, &a); err != nil {
			w.log.WithError(err).Warn("unreadable max-deliveries advisory")
			return
		}
		ctx := w.workCtx
		stream, err := w.js.Stream(ctx, work.StreamName)
		if err != nil {
			w.log.WithError(err).Warn("max-deliveries advisory: work stream unavailable")
			return
		}
		raw, err := stream.GetMsg(ctx, a.StreamSeq)
		if err != nil {
			w.log.WithError(err).WithField("nats_stream_seq", a.StreamSeq).Error("max-deliveries advisory: message not readable")
			return
		}
		cause := fmt.Errorf("consumer %s gave up after %d deliveries (a processor kept dying on it)", a.Consumer, a.Deliveries)
		if err := w.copyToDLQ(ctx, raw.Subject, raw.Header, raw.Data, a.StreamSeq, a.Deliveries, failure.ReasonMaxDeliveries, cause); err != nil {
			w.log.WithError(err).WithField("nats_stream_seq", a.StreamSeq).Error("max-deliveries advisory: dead-lettering failed")
		}
	})
}

// deadLetterExhausted dead-letters the messages the server gave up on while
// no processor heard the advisory (all were down, or the one that heard it
// died before copying). The consumer's state says which: with MaxAckPending
// 1 an ack moves the ack floor up to the last delivered message, so the
// messages of the partition above the floor, except the one still pending
// (the last delivered), are those that exhausted their deliveries. The
// server keeps no other record of them, so a failure here is logged and
// start-up goes on.
func (w *Worker) deadLetterExhausted(ctx context.Context) {
	stream, err := w.js.Stream(ctx, work.StreamName)
	if err != nil {
		w.log.WithError(err).Warn("looking for exhausted work messages: work stream unavailable")
		return
	}
	for p := 0; p < w.cfg.Partitions; p++ {
		if err := w.deadLetterExhaustedOf(ctx, stream, p); err != nil {
			w.log.WithError(err).WithField("consumer", workstream.ConsumerName(p)).Warn("looking for exhausted work messages failed")
		}
	}
}

func (w *Worker) deadLetterExhaustedOf(ctx context.Context, stream jetstream.Stream, p int) error {
	c, err := stream.Consumer(ctx, workstream.ConsumerName(p))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil // first start: nothing was delivered yet
	}
	if err != nil {
		return err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return err
	}
	last := info.Delivered.Stream - uint64(min(info.NumAckPending, 1))
	for seq := info.AckFloor.Stream + 1; seq <= last; {
		raw, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(workstream.PartitionFilter(p)))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if raw.Sequence > last {
			return nil
		}
		if !w.alreadyDeadLettered(ctx, raw) {
			cause := fmt.Errorf("consumer %s gave up after %d deliveries while no processor heard it", workstream.ConsumerName(p), w.cfg.MaxDeliver)
			if err := w.copyToDLQ(ctx, raw.Subject, raw.Header, raw.Data, raw.Sequence, uint64(w.cfg.MaxDeliver), "max_deliveries", cause); err != nil {
				return err
			}
		}
		seq = raw.Sequence + 1
	}
	return nil
}

// alreadyDeadLettered reports whether the source's last dead letter is this
// message: the ack floor stays below an exhausted message until the next
// ack, so every start-up finds it again, also after the dead-letter
// stream's duplicate window.
func (w *Worker) alreadyDeadLettered(ctx context.Context, raw *jetstream.RawStreamMsg) bool {
	dlq, err := w.js.Stream(ctx, work.DLQStreamName)
	if err != nil {
		return false
	}
	last, err := dlq.GetLastMsgForSubject(ctx, work.DLQPrefix+strings.TrimPrefix(raw.Subject, work.SubjectPrefix))
	return err == nil && last.Header.Get(HeaderDLQStreamSeq) == strconv.FormatUint(raw.Sequence, 10)
}
