package logging

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/shared/config"
)

// PutLogEvents' limits: events and bytes per batch (each event counts 26
// bytes besides its message), bytes per message.
const (
	cwMaxBatchEvents = 10_000
	cwMaxBatchBytes  = 1_048_576
	cwEventOverhead  = 26
	cwMaxMessage     = 256*1024 - cwEventOverhead
)

// CloudWatch copy tuning: how many entries wait at most (beyond, entries are
// dropped, never waited for), and how often a partial batch is sent.
var (
	cwQueueSize     = 10_000
	cwFlushInterval = 5 * time.Second
	cwCallTimeout   = 10 * time.Second
)

// Dropped counts log entries that did not reach a destination besides
// stdout, by destination and reason. Every program registers it (see
// ops.NewRegistry); its series exist at 0 from the start.
var Dropped = func() *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cloudoreg_log_entries_dropped_total",
		Help: "Log entries not copied to CloudWatch: buffer_full (the hot path never waits), send_failed (PutLogEvents failed after the SDK's retries), rejected (too old or too new for CloudWatch).",
	}, []string{"destination", "reason"})
	for _, r := range []string{"buffer_full", "send_failed", "rejected"} {
		c.WithLabelValues("cloudwatch", r)
	}
	return c
}()

// cloudWatch is a logrus hook copying every entry to a CloudWatch Logs
// stream. Fire only formats the entry and offers it to a bounded queue; one
// goroutine sends batches, so a slow or unreachable CloudWatch costs log
// entries (counted), never the time of the code that logs.
type cloudWatch struct {
	client        *cloudwatchlogs.Client
	group, stream string
	format        logrus.Formatter
	queue         chan types.InputLogEvent
	stop          chan struct{}
	stopOnce      sync.Once
	done          chan struct{}
	// sendCtx ends when Close's deadline passes, aborting a call in flight.
	sendCtx    context.Context
	cancelSend context.CancelFunc
}

func newCloudWatch(c config.CloudWatch, stream string, format logrus.Formatter) *cloudWatch {
	opts := cloudwatchlogs.Options{
		Region:      c.Region,
		Credentials: credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, ""),
	}
	if c.Endpoint != "" {
		opts.BaseEndpoint = aws.String(c.Endpoint)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &cloudWatch{
		client: cloudwatchlogs.New(opts),
		group:  c.LogGroup, stream: stream,
		format:  format,
		queue:   make(chan types.InputLogEvent, cwQueueSize),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		sendCtx: ctx, cancelSend: cancel,
	}
	go h.run()
	return h
}

// Levels implements logrus.Hook: every level the logger lets through.
func (h *cloudWatch) Levels() []logrus.Level { return logrus.AllLevels }

// Fire implements logrus.Hook.
func (h *cloudWatch) Fire(e *logrus.Entry) error {
	b, err := h.format.Format(e)
	if err != nil {
		return err
	}
	msg := string(b[:len(b)-1]) // without the newline
	if len(msg) > cwMaxMessage {
		msg = msg[:cwMaxMessage]
	}
	select {
	case h.queue <- types.InputLogEvent{Message: aws.String(msg), Timestamp: aws.Int64(e.Time.UnixMilli())}:
	default:
		Dropped.WithLabelValues("cloudwatch", "buffer_full").Inc()
	}
	return nil
}

// Close sends what is queued and stops, giving up when ctx ends.
func (h *cloudWatch) Close(ctx context.Context) {
	h.stopOnce.Do(func() { close(h.stop) })
	select {
	case <-h.done:
	case <-ctx.Done():
		h.cancelSend()
		<-h.done
	}
}

func (h *cloudWatch) run() {
	defer close(h.done)
	h.createStream()
	tick := time.NewTicker(cwFlushInterval)
	defer tick.Stop()
	var b batch
	for {
		select {
		case ev := <-h.queue:
			h.add(&b, ev)
		case <-tick.C:
			h.send(&b)
		case <-h.stop:
			for {
				select {
				case ev := <-h.queue:
					h.add(&b, ev)
				default:
					h.send(&b)
					return
				}
			}
		}
	}
}

// batch is the events of the next PutLogEvents and their size as
// CloudWatch counts it.
type batch struct {
	events []types.InputLogEvent
	bytes  int
}

func (h *cloudWatch) add(b *batch, ev types.InputLogEvent) {
	n := len(*ev.Message) + cwEventOverhead
	if len(b.events) == cwMaxBatchEvents || b.bytes+n > cwMaxBatchBytes {
		h.send(b)
	}
	b.events = append(b.events, ev)
	b.bytes += n
}

func (h *cloudWatch) send(b *batch) {
	if len(b.events) == 0 {
		return
	}
	events := b.events
	*b = batch{}
	// CloudWatch wants a batch in time order; entries of concurrent
	// goroutines can reach the queue slightly out of it.
	sort.SliceStable(events, func(i, j int) bool { return *events[i].Timestamp < *events[j].Timestamp })
	out, err := h.put(events)
	var missing *types.ResourceNotFoundException
	if errors.As(err, &missing) {
		// The stream was deleted, or creating it at start failed.
		h.createStream()
		out, err = h.put(events)
	}
	if err != nil {
		Dropped.WithLabelValues("cloudwatch", "send_failed").Add(float64(len(events)))
		// Not through logrus: that would queue the failure behind itself.
		fmt.Fprintf(os.Stderr, "cloudwatch: %d log entries lost: %v\n", len(events), err)
		return
	}
	if n := rejected(out.RejectedLogEventsInfo, len(events)); n > 0 {
		Dropped.WithLabelValues("cloudwatch", "rejected").Add(float64(n))
	}
}

func (h *cloudWatch) put(events []types.InputLogEvent) (*cloudwatchlogs.PutLogEventsOutput, error) {
	ctx, cancel := context.WithTimeout(h.sendCtx, cwCallTimeout)
	defer cancel()
	return h.client.PutLogEvents(ctx, &cloudwatchlogs.PutLogEventsInput{
		LogGroupName: aws.String(h.group), LogStreamName: aws.String(h.stream), LogEvents: events,
	})
}

// createStream creates the pod's stream; one that exists is fine (a
// restarted container keeps its pod name).
func (h *cloudWatch) createStream() {
	ctx, cancel := context.WithTimeout(h.sendCtx, cwCallTimeout)
	defer cancel()
	_, err := h.client.CreateLogStream(ctx, &cloudwatchlogs.CreateLogStreamInput{
		LogGroupName: aws.String(h.group), LogStreamName: aws.String(h.stream),
	})
	var exists *types.ResourceAlreadyExistsException
	if err != nil && !errors.As(err, &exists) {
		fmt.Fprintf(os.Stderr, "cloudwatch: create log stream %s in %s: %v\n", h.stream, h.group, err)
	}
}

// rejected counts the events of a batch of n that CloudWatch refused: the
// indexes mark the too-old and expired ones at the start, the too-new ones
// at the end.
func rejected(info *types.RejectedLogEventsInfo, n int) int {
	if info == nil {
		return 0
	}
	head := 0
	for _, end := range []*int32{info.TooOldLogEventEndIndex, info.ExpiredLogEventEndIndex} {
		if end != nil && int(*end) > head {
			head = int(*end)
		}
	}
	tail := 0
	if start := info.TooNewLogEventStartIndex; start != nil && int(*start) < n {
		tail = n - int(*start)
	}
	return min(head+tail, n)
}
