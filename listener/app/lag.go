package app

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/IBM/sarama"

	"github.com/cloudoreg/cloudoreg/shared/kafka"
)

// watchLag keeps cloudoreg_listener_consumer_lag current for every partition
// of the events topic: the partition's log-end offset minus the group's
// committed offset, both asked of the brokers every LagInterval (what
// kafka-consumer-groups shows as LAG). Measured this way the gauge keeps
// growing while the listener is stalled (NATS down, Sources down), which the
// consumer's own view does not: sarama stops fetching a partition whose
// handler does not take messages, so its high-water mark goes stale.
func (l *Listener) watchLag(ctx context.Context) {
	if l.cfg.LagInterval <= 0 {
		return
	}
	t := time.NewTicker(l.cfg.LagInterval)
	defer t.Stop()
	var client sarama.Client
	defer func() {
		if client != nil {
			_ = client.Close()
		}
	}()
	failing := false
	for {
		err := func() error {
			if client == nil {
				sc, err := kafka.Config(l.cfg.Kafka, "cloudoreg-listener-lag")
				if err != nil {
					return err
				}
				if client, err = sarama.NewClient(l.cfg.Kafka.Brokers, sc); err != nil {
					client = nil
					return err
				}
			}
			return l.measureLag(client)
		}()
		switch {
		case err != nil && !failing:
			l.log.WithError(err).Warn("measuring the consumer lag failed; cloudoreg_listener_consumer_lag is stale until it works again")
		case err == nil && failing:
			l.log.Info("measuring the consumer lag works again")
		}
		failing = err != nil
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// measureLag sets the lag gauge of every partition of the events topic.
func (l *Listener) measureLag(client sarama.Client) error {
	topic, group := l.cfg.EventsTopic, l.cfg.GroupID
	partitions, err := client.Partitions(topic)
	if err != nil {
		return fmt.Errorf("partitions of %s: %w", topic, err)
	}
	coordinator, err := client.Coordinator(group)
	if err != nil {
		return fmt.Errorf("coordinator of group %s: %w", group, err)
	}
	committed, err := coordinator.FetchOffset(sarama.NewOffsetFetchRequest(client.Config().Version, group, map[string][]int32{topic: partitions}))
	if err != nil {
		_ = client.RefreshCoordinator(group)
		return fmt.Errorf("committed offsets of group %s: %w", group, err)
	}
	for _, p := range partitions {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return fmt.Errorf("log-end offset of %s/%d: %w", topic, p, err)
		}
		position := int64(-1)
		if b := committed.GetBlock(topic, p); b != nil && b.Err == sarama.ErrNoError {
			position = b.Offset
		}
		if position < 0 {
			// Nothing committed yet: the group starts at KAFKA_INITIAL_OFFSET.
			position = end
			if l.cfg.InitialOffset == "oldest" {
				if position, err = client.GetOffset(topic, p, sarama.OffsetOldest); err != nil {
					return fmt.Errorf("oldest offset of %s/%d: %w", topic, p, err)
				}
			}
		}
		l.metrics.Lag.WithLabelValues(strconv.Itoa(int(p))).Set(float64(max(end-position, 0)))
	}
	return nil
}
