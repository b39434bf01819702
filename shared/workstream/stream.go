// Package workstream is the JetStream side of the work stream: the NATS
// encoding of a work message (headers), the stream, dead-letter stream and
// partition consumer declarations. Both programs publish and consume through
// it; package work holds the transport-free value.
package workstream

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cloudoreg/cloudoreg/shared/work"
)

// StreamSettings are the operator's choices for the work stream. Both
// programs read them from the same WORK_* variables.
type StreamSettings struct {
	// Partitions is how many partitions the source ids are hashed onto, and so
	// how many sources can be worked on at once. Changing it remaps sources to
	// partitions: it needs a new stream (see the README's migration note).
	Partitions int           `env:"WORK_PARTITIONS" envDefault:"64"`
	Replicas   int           `env:"WORK_REPLICAS" envDefault:"1"`
	MaxAge     time.Duration `env:"WORK_MAX_AGE" envDefault:"168h"`
	Duplicates time.Duration `env:"WORK_DUPLICATE_WINDOW" envDefault:"20m"`
	DLQMaxAge  time.Duration `env:"WORK_DLQ_MAX_AGE" envDefault:"720h"`
}

// StreamConfig is the work stream: limits retention (not work-queue, so the
// duplicate window survives a server restart and messages stay inspectable),
// with subjects cloudoreg.work.<source> stored as cloudoreg.work.<p>.<source>.
func StreamConfig(s StreamSettings) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        work.StreamName,
		Description: "Cloudoreg work: one subject per Sources source id, partitioned for per-source order",
		Subjects:    []string{work.SubjectPrefix + "*"},
		SubjectTransform: &jetstream.SubjectTransformConfig{
			Source:      work.SubjectPrefix + "*",
			Destination: fmt.Sprintf("%s{{partition(%d,1)}}.{{wildcard(1)}}", work.SubjectPrefix, s.Partitions),
		},
		Retention:  jetstream.LimitsPolicy,
		Storage:    jetstream.FileStorage,
		Replicas:   s.Replicas,
		MaxAge:     s.MaxAge,
		Duplicates: s.Duplicates,
		Discard:    jetstream.DiscardOld,
	}
}

// DLQStreamConfig is the dead-letter stream: copies of work that could not be
// done, with the reason, kept for an operator to inspect and replay.
func DLQStreamConfig(s StreamSettings) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        work.DLQStreamName,
		Description: "Cloudoreg dead letters: work messages that failed for good, with the reason",
		Subjects:    []string{work.DLQPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    s.Replicas,
		MaxAge:      s.DLQMaxAge,
		Duplicates:  s.Duplicates,
	}
}

// PartitionFilter is the stored subject filter of partition p.
func PartitionFilter(p int) string { return fmt.Sprintf("%s%d.*", work.SubjectPrefix, p) }

// ConsumerName is the durable consumer of partition p.
func ConsumerName(p int) string { return consumerPrefix + strconv.Itoa(p) }

const consumerPrefix = "partition-"

// ConsumerPartition is the partition of a durable consumer's name; false
// for a consumer that is not a partition's.
func ConsumerPartition(name string) (int, bool) {
	digits, ok := strings.CutPrefix(name, consumerPrefix)
	p, err := strconv.Atoi(digits)
	return p, ok && err == nil && p >= 0 && ConsumerName(p) == name
}

// EnsureStreams creates or updates the work and dead-letter streams.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, s StreamSettings) error {
	if s.Partitions < 1 {
		return fmt.Errorf("WORK_PARTITIONS must be at least 1, not %d", s.Partitions)
	}
	if s.Duplicates < 10*time.Minute {
		return fmt.Errorf("WORK_DUPLICATE_WINDOW must be at least 10m (a listener replay must be absorbed), not %s", s.Duplicates)
	}
	if _, err := js.CreateOrUpdateStream(ctx, StreamConfig(s)); err != nil {
		return fmt.Errorf("declare stream %s: %w", work.StreamName, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, DLQStreamConfig(s)); err != nil {
		return fmt.Errorf("declare stream %s: %w", work.DLQStreamName, err)
	}
	return nil
}
