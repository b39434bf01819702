package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cloudoreg/cloudoreg/shared/config"
	"github.com/cloudoreg/cloudoreg/shared/testkit"
)

// fakeLogs is CloudWatch Logs on loopback, speaking its JSON protocol
// (awsJson1.1, X-Amz-Target Logs_20140328.<Operation>) for CreateLogStream
// and PutLogEvents, and enforcing PutLogEvents' limits.
type fakeLogs struct {
	srv     *httptest.Server
	mu      sync.Mutex
	streams map[string][]string // group/stream -> messages
	auth    []string
	puts    int
	gate    chan struct{} // when set, PutLogEvents waits for it to close
	fail    string        // when set, PutLogEvents answers this error type
}

func newFakeLogs(t *testing.T, group string) *fakeLogs {
	f := &fakeLogs{streams: map[string][]string{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "Logs_20140328.")
		if !ok || r.Header.Get("Content-Type") != "application/x-amz-json-1.1" {
			awsError(w, "UnrecognizedClientException", "not the CloudWatch Logs JSON protocol")
			return
		}
		var in struct {
			LogGroupName, LogStreamName string
			LogEvents                   []struct {
				Message   string
				Timestamp int64
			}
		}
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			awsError(w, "SerializationException", err.Error())
			return
		}
		f.mu.Lock()
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		gate := f.gate
		f.mu.Unlock()
		if in.LogGroupName != group {
			awsError(w, "ResourceNotFoundException", "The specified log group does not exist.")
			return
		}
		key := in.LogGroupName + "/" + in.LogStreamName
		switch op {
		case "CreateLogStream":
			f.mu.Lock()
			defer f.mu.Unlock()
			if _, ok := f.streams[key]; ok {
				awsError(w, "ResourceAlreadyExistsException", "The specified log stream already exists")
				return
			}
			f.streams[key] = []string{}
			_, _ = w.Write([]byte(`{}`))
		case "PutLogEvents":
			if gate != nil {
				<-gate
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			f.puts++
			if f.fail != "" {
				awsError(w, f.fail, "refused by the test")
				return
			}
			if _, ok := f.streams[key]; !ok {
				awsError(w, "ResourceNotFoundException", "The specified log stream does not exist.")
				return
			}
			size := 0
			for i, e := range in.LogEvents {
				size += len(e.Message) + 26
				if i > 0 && e.Timestamp < in.LogEvents[i-1].Timestamp {
					awsError(w, "InvalidParameterException", "Log events in a single PutLogEvents request must be in chronological order.")
					return
				}
				if len(e.Message) > 256*1024-26 {
					awsError(w, "InvalidParameterException", "Log event too large")
					return
				}
			}
			if len(in.LogEvents) == 0 || len(in.LogEvents) > 10000 || size > 1048576 {
				awsError(w, "InvalidParameterException", fmt.Sprintf("%d events of %d bytes", len(in.LogEvents), size))
				return
			}
			for _, e := range in.LogEvents {
				f.streams[key] = append(f.streams[key], e.Message)
			}
			_, _ = w.Write([]byte(`{"nextSequenceToken":"49590302"}`))
		default:
			awsError(w, "InvalidAction", op)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func awsError(w http.ResponseWriter, typ, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Errortype", typ)
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": typ, "message": msg})
}

func (f *fakeLogs) messages(key string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.streams[key]...)
}

func (f *fakeLogs) deleteStream(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.streams, key)
}

func cloudWatchConfig(f *fakeLogs) config.Log {
	return config.Log{Level: "info", Format: "json", CloudWatch: config.CloudWatch{
		LogGroup: "cloudoreg-stage", Region: "us-east-1", AccessKeyID: "AKIACLOUDOREGTEST",
		SecretAccessKey: "cw-secret-SECRET-1b2c", Endpoint: f.srv.URL,
	}}
}

func closeWithin(t *testing.T, l *Logger, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	l.Close(ctx)
}

func streamKey() string {
	h, _ := os.Hostname()
	return "cloudoreg-stage/" + h
}

// Every entry reaches the pod's stream, in order, as the JSON line stdout
// gets, in batches within PutLogEvents' limits, signed with the keys.
func TestCloudWatchReceivesEveryEntry(t *testing.T) {
	f := newFakeLogs(t, "cloudoreg-stage")
	var stdout bytes.Buffer
	l, err := New(&stdout, cloudWatchConfig(f), testApp)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 100*1024) // 25 of them need several batches
	n := 12000                           // more than one batch of events
	for i := 0; i < n; i++ {
		e := l.WithField("i", i)
		if i%500 == 0 {
			e = e.WithField("padding", big)
		}
		e.Info("entry")
	}
	l.WithField("huge", strings.Repeat("y", 300*1024)).Warn("cut to CloudWatch's limit")
	closeWithin(t, l, 10*time.Second)

	got := f.messages(streamKey())
	want := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(got) != n+1 {
		t.Fatalf("CloudWatch got %d entries, want %d", len(got), n+1)
	}
	for i := 0; i < n; i++ {
		if got[i] != want[i] {
			t.Fatalf("entry %d: CloudWatch got %.200q, stdout %.200q", i, got[i], want[i])
		}
	}
	if last := got[n]; len(last) != cwMaxMessage || !strings.HasPrefix(last, want[n][:1000]) {
		t.Errorf("the oversized entry: %d bytes, want it cut to %d", len(last), cwMaxMessage)
	}
	if f.puts < 3 {
		t.Errorf("%d PutLogEvents for %d entries and 25 of 100 KiB: the batches were not split", f.puts, n)
	}
	for _, a := range f.auth {
		if !strings.Contains(a, "Credential=AKIACLOUDOREGTEST/") || !strings.Contains(a, "/us-east-1/logs/aws4_request") {
			t.Fatalf("request not signed with the configured key and region: %q", a)
		}
	}
}

// A stream that disappears (deleted, or not created at start) is created
// again and the batch sent.
func TestCloudWatchRecreatesItsStream(t *testing.T) {
	f := newFakeLogs(t, "cloudoreg-stage")
	defer func(d time.Duration) { cwFlushInterval = d }(cwFlushInterval)
	cwFlushInterval = 20 * time.Millisecond
	l, err := New(&bytes.Buffer{}, cloudWatchConfig(f), testApp)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("first")
	awaitMessages(t, f, 1) // sent by the ticker, without Close
	f.deleteStream(streamKey())
	l.Info("second")
	closeWithin(t, l, 5*time.Second)
	if got := f.messages(streamKey()); len(got) != 1 || !strings.Contains(got[0], `"message":"second"`) {
		t.Errorf("after the stream was deleted: %v", got)
	}
}

func awaitMessages(t *testing.T, f *fakeLogs, n int) {
	t.Helper()
	testkit.Await(t, 5*time.Second, fmt.Sprintf("%d entries at CloudWatch", n), func() bool { return len(f.messages(streamKey())) >= n })
}

// While CloudWatch does not answer, logging goes on at full speed: entries
// beyond the buffer are dropped and counted, and every entry is either
// delivered or counted.
func TestCloudWatchNeverBlocks(t *testing.T) {
	f := newFakeLogs(t, "cloudoreg-stage")
	defer func(n int) { cwQueueSize = n }(cwQueueSize)
	cwQueueSize = 50
	gate := make(chan struct{})
	f.mu.Lock()
	f.gate = gate
	f.mu.Unlock()
	full := Dropped.WithLabelValues("cloudwatch", "buffer_full")
	before := testutil.ToFloat64(full)
	l, err := New(&bytes.Buffer{}, cloudWatchConfig(f), testApp)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < n; i++ {
			l.WithField("i", i).Info("while CloudWatch hangs")
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("logging blocked while CloudWatch did not answer")
	}
	close(gate)
	closeWithin(t, l, 10*time.Second)
	dropped := int(testutil.ToFloat64(full) - before)
	delivered := len(f.messages(streamKey()))
	if dropped == 0 || delivered == 0 || dropped+delivered != n {
		t.Errorf("%d delivered + %d counted as dropped, want %d in all (and some of each)", delivered, dropped, n)
	}
}

// A batch CloudWatch refuses is counted, and the next one is sent.
func TestCloudWatchCountsRefusedBatches(t *testing.T) {
	f := newFakeLogs(t, "cloudoreg-stage")
	failed := Dropped.WithLabelValues("cloudwatch", "send_failed")
	before := testutil.ToFloat64(failed)
	f.mu.Lock()
	f.fail = "InvalidParameterException"
	f.mu.Unlock()
	l, err := New(&bytes.Buffer{}, cloudWatchConfig(f), testApp)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 7; i++ {
		l.Info("refused")
	}
	closeWithin(t, l, 5*time.Second)
	if got := testutil.ToFloat64(failed) - before; got != 7 {
		t.Errorf("send_failed grew by %v, want 7", got)
	}
}

func TestRejectedCount(t *testing.T) {
	i := func(n int32) *int32 { return aws.Int32(n) }
	for _, c := range []struct {
		info *types.RejectedLogEventsInfo
		n    int
		want int
	}{
		{nil, 10, 0},
		{&types.RejectedLogEventsInfo{}, 10, 0},
		{&types.RejectedLogEventsInfo{TooOldLogEventEndIndex: i(3)}, 10, 3},
		{&types.RejectedLogEventsInfo{ExpiredLogEventEndIndex: i(4), TooOldLogEventEndIndex: i(2)}, 10, 4},
		{&types.RejectedLogEventsInfo{TooNewLogEventStartIndex: i(8)}, 10, 2},
		{&types.RejectedLogEventsInfo{TooOldLogEventEndIndex: i(2), TooNewLogEventStartIndex: i(9)}, 10, 3},
		{&types.RejectedLogEventsInfo{TooOldLogEventEndIndex: i(8), TooNewLogEventStartIndex: i(2)}, 10, 10},
		{&types.RejectedLogEventsInfo{TooNewLogEventStartIndex: i(10)}, 10, 0},
	} {
		if got := rejected(c.info, c.n); got != c.want {
			t.Errorf("rejected(%+v, %d) = %d, want %d", c.info, c.n, got, c.want)
		}
	}
}
