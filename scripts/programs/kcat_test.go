package programs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cloudoreg/cloudoreg/scripts/internal/stack"
	"github.com/cloudoreg/cloudoreg/shared/event"
	"github.com/cloudoreg/cloudoreg/shared/testkit"
)

// kcatRecord is one message as `kcat -C -J` prints it.
type kcatRecord struct {
	Partition int32    `json:"partition"`
	Offset    int64    `json:"offset"`
	Headers   []string `json:"headers"` // name, value, name, value...
	Key       *string  `json:"key"`
	Payload   *string  `json:"payload"`
}

func (r kcatRecord) header(name string) string {
	for i := 0; i+1 < len(r.Headers); i += 2 {
		if r.Headers[i] == name {
			return r.Headers[i+1]
		}
	}
	return ""
}

// kcat is the path of kcat (librdkafka's command-line client), an
// independent Kafka client: Sources' producers and consumers are not Go
// programs either. A machine without it fails the test with what to do.
func kcat(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat is not installed: this test drives the real programs with it as an independent Kafka client; "+
			"install the Debian package kcat (`apt-get install kcat`, which .ci/run does): %v", err)
	}
	return path
}

// TestIndependentKafkaClient runs the real binaries against Kafka messages
// written and read by kcat instead of Go clients: events produced by
// librdkafka (its headers, its partitioner) are forwarded and reconciled,
// a poison event among them is skipped without stopping its partition,
// and the status messages are what Sources reads (headers, key, value).
func TestIndependentKafkaClient(t *testing.T) {
	bin := kcat(t)
	const org = "1234567"
	src := &loadSource{name: "kcat", arn: "arn:aws:iam::123456789012:role/cloudoreg-kcat", externalID: "kcat-external-id", trusted: true}
	s := newSystem(t, systemConfig{processors: 1, stack: stack.Config{PSK: "kcat-psk", TrustFile: trustFile(t, []*loadSource{src})}})
	s.startAll()
	c, err := s.createSource(src.name, src.arn, src.externalID, orgHeaders(org))
	if err != nil {
		t.Fatal(err)
	}
	// The stand-in's own create event gives the first status.
	first := awaitKcatStatuses(t, bin, s.stack.KafkaAddr, c.AppID, 1)
	checkStatusMessage(t, first[0], org, c.AppID)

	// kcat re-sends the create, after a poison event of the same source
	// (same key, so the same partition, before it): the listener skips the
	// poison and forwards the create; the processor answers again.
	produceWithKcat(t, bin, s.stack.KafkaAddr, c.SourceID, `{"application_id":`, // truncated JSON
		"event_type="+string(event.AppAuthCreate), event.HeaderOrgID+"="+org)
	produceWithKcat(t, bin, s.stack.KafkaAddr, c.SourceID,
		fmt.Sprintf(`{"id":9001,"application_id":%s,"authentication_id":%s}`, c.AppID, c.AuthID),
		"event_type="+string(event.AppAuthCreate), event.HeaderOrgID+"="+org, "encoding=json")
	again := awaitKcatStatuses(t, bin, s.stack.KafkaAddr, c.AppID, 2)
	checkStatusMessage(t, again[1], org, c.AppID)
	testkit.Await(t, waitLimit, "the poison event counted as skipped", func() bool {
		return testkit.Metric(t, s.listener.opsAddr(), `cloudoreg_listener_events_total{event_type="ApplicationAuthentication.create",outcome="skipped",reason="bad_payload"}`) == 1
	})
	// The second status answers kcat's event: the stand-in's and kcat's
	// creates are the only ones the listener forwarded.
	if n := testkit.Metric(t, s.listener.opsAddr(), `cloudoreg_listener_events_total{event_type="ApplicationAuthentication.create",outcome="routed",reason=""}`); n != 2 {
		t.Errorf("the listener forwarded %v ApplicationAuthentication.create events, want 2 (the stand-in's and kcat's)", n)
	}
}

// checkStatusMessage checks one status message against what Sources reads.
func checkStatusMessage(t *testing.T, r kcatRecord, org, appID string) {
	t.Helper()
	if got := r.header("event_type"); got != "availability_status" {
		t.Errorf("status message event_type %q, want availability_status", got)
	}
	if got := r.header(event.HeaderOrgID); got != org {
		t.Errorf("status message %s %q, want %q", event.HeaderOrgID, got, org)
	}
	if r.Key == nil || *r.Key != org {
		t.Errorf("status message key %v, want the org id %q", r.Key, org)
	}
	var v map[string]string
	if r.Payload == nil || json.Unmarshal([]byte(*r.Payload), &v) != nil {
		t.Fatalf("status message value is not a JSON object of strings: %v", r.Payload)
	}
	want := map[string]string{"resource_type": "Application", "resource_id": appID, "status": "available", "error": ""}
	if fmt.Sprint(v) != fmt.Sprint(want) {
		t.Errorf("status message value %v, want %v", v, want)
	}
}

// produceWithKcat writes one message with kcat.
func produceWithKcat(t *testing.T, bin, broker, key, value string, headers ...string) {
	t.Helper()
	args := []string{"-P", "-b", broker, "-t", eventsTopic, "-k", key}
	for _, h := range headers {
		args = append(args, "-H", h)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(value + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}
}

// awaitKcatStatuses reads the status topic with kcat until it holds n
// status messages of the application, and returns them in offset order.
func awaitKcatStatuses(t *testing.T, bin, broker, appID string, n int) []kcatRecord {
	t.Helper()
	var got []kcatRecord
	testkit.Await(t, waitLimit, fmt.Sprintf("%d status messages of application %s read by kcat", n, appID), func() bool {
		got = readStatusesWithKcat(t, bin, broker, appID)
		return len(got) >= n
	})
	return got
}

// readStatusesWithKcat reads the whole status topic once.
func readStatusesWithKcat(t *testing.T, bin, broker, appID string) []kcatRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-C", "-b", broker, "-t", statusTopic, "-o", "beginning", "-e", "-q", "-J")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat -C: %v\n%s", err, stderr.String())
	}
	var out []kcatRecord
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r kcatRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("kcat -J printed %q: %v", sc.Text(), err)
		}
		if r.Payload != nil && strings.Contains(*r.Payload, `"resource_id":"`+appID+`"`) {
			out = append(out, r)
		}
	}
	// One partition per org key: offset order is the order they were sent.
	for i := 1; i < len(out); i++ {
		if out[i].Partition != out[0].Partition || out[i].Offset < out[i-1].Offset {
			t.Fatalf("status messages of one application on several partitions or out of order: %+v", out)
		}
	}
	return out
}
