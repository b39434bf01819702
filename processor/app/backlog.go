package app

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/processor/internal/metrics"
	"github.com/cloudoreg/cloudoreg/shared/work"
	"github.com/cloudoreg/cloudoreg/shared/workstream"
)

// backlog refreshes the backlog gauges from JetStream on a ticker, so a
// storm of scrapes costs no JetStream requests.
type backlog struct {
	js     jetstream.JetStream
	parked parkedReader
	m      *metrics.Metrics
	log    *logrus.Entry
}

func (b backlog) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		b.refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refresh updates what it can read; a failed part keeps its last values
// and is logged (the NATS alerts say why).
func (b backlog) refresh(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for what, fn := range map[string]func(context.Context) error{
		"dead letters": b.deadLetters, "parked retries": b.parkedRetries, "work consumers": b.consumers,
	} {
		if err := fn(ctx); err != nil && ctx.Err() == nil {
			b.log.WithError(err).Warnf("refreshing the backlog metrics of the %s failed", what)
		}
	}
}

func (b backlog) deadLetters(ctx context.Context) error {
	s, err := b.js.Stream(ctx, work.DLQStreamName)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	b.m.DeadLettersWaiting.Set(float64(info.State.Msgs))
	return nil
}

func (b backlog) parkedRetries(ctx context.Context) error {
	list, err := b.parked.ParkedRetries(ctx)
	if err != nil {
		return err
	}
	b.m.ParkedRetries.Set(float64(len(list)))
	var oldest time.Time
	for _, p := range list {
		if oldest.IsZero() || p.FirstFailure.Before(oldest) {
			oldest = p.FirstFailure
		}
	}
	age := 0.0
	if !oldest.IsZero() {
		age = time.Since(oldest).Seconds()
	}
	b.m.ParkedOldest.Set(age)
	return nil
}

// consumers reads every partition consumer's state in one paged listing.
func (b backlog) consumers(ctx context.Context) error {
	s, err := b.js.Stream(ctx, work.StreamName)
	if err != nil {
		return err
	}
	list := s.ListConsumers(ctx)
	for info := range list.Info() {
		n, ok := workstream.ConsumerPartition(info.Name)
		if !ok {
			continue // not one of the partition consumers
		}
		p := strconv.Itoa(n)
		b.m.WorkPending.WithLabelValues(p).Set(float64(info.NumPending))
		b.m.WorkUnacked.WithLabelValues(p).Set(float64(info.NumAckPending))
		b.m.WorkRedelivered.WithLabelValues(p).Set(float64(info.NumRedelivered))
	}
	return list.Err()
}
