package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cloudoreg/cloudoreg/processor/internal/failure"
	"github.com/cloudoreg/cloudoreg/shared/backoff"
	"github.com/cloudoreg/cloudoreg/shared/work"
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
		if _, err = w.js.PublishMsg(ctx, out); err == nil {
			w.metrics.DeadLetters.WithLabelValues(string(reason)).Inc()
			w.log.WithFields(map[string]any{"reason": reason, "detail": fmt.Sprint(cause), "nats_stream_seq": seq, "subject": subject}).Error("work message dead-lettered")
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

// WatchMaxDeliveries is the backstop for messages whose processor died
// repeatedly: the server gives up on them after MaxDeliver and says so in an
// advisory; one processor (queue group) copies them to the dead-letter stream.
func (w *Worker) WatchMaxDeliveries(nc *nats.Conn) (*nats.Subscription, error) {
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
