package app_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/cloudoreg/cloudoreg/shared/testkit"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// listenerBinary builds cmd/listener once per test run.
func listenerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cloudoreg-listener-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "listener")
		out, err := exec.Command("go", "build", "-o", binary, "github.com/cloudoreg/cloudoreg/listener/cmd/listener").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %w: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building the listener: %v", buildErr)
	}
	return binary
}

// startProcess runs the listener binary against env, its metrics on
// metricsPort.
func (e *env) startProcess(t *testing.T, metricsPort int) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(listenerBinary(t))
	cmd.Env = append(os.Environ(),
		"KAFKA_BROKERS="+e.brokers[0],
		fmt.Sprintf("NATS_URL=nats://127.0.0.1:%d", e.natsPort),
		"SOURCES_URL="+e.sources.URL, "SOURCES_PSK=test-psk",
		"METRICS_PORT="+strconv.Itoa(metricsPort), "BIND_HOST=127.0.0.1",
		"KAFKA_COMMIT_INTERVAL=50ms", "LISTENER_RETRY_BASE=20ms", "LISTENER_RETRY_MAX=200ms",
		"LOG_LEVEL=warn",
	)
	cmd.Stdout, cmd.Stderr = e.logs, e.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

// TestKillRestartLosesNothing kills the listener process with SIGKILL at
// random points of the stream, restarts it, and repeats; in the end every
// event reached the work stream exactly once, in per-source order. Half
// the events are ApplicationAuthentication creates, resolved through
// Sources and the routing index. The broker's committed offsets must only
// grow, reach the end of every partition, and the last listener must
// resume from them, not replay from offset 0.
//
// A kill can leave a publish or an offset commit in flight that the server
// applies after the test has read the stream and the offsets, so the
// resume checks are bounds that such late writes cannot break: the last
// listener forwards no more than the events at or after the offsets read
// after the kill, and counts as a duplicate every event it forwards that
// was stored before it started.
func TestKillRestartLosesNothing(t *testing.T) {
	e := newEnv(t)
	const events, kills, apps = 2000, 6, 30
	r := rand.New(rand.NewPCG(7, 11))
	for s := 0; s < apps; s++ {
		e.sources.set(strconv.Itoa(9000+s), strconv.Itoa(s+1))
	}
	var want []string
	for i := 0; i < events; i++ {
		s := r.IntN(apps)
		if i%2 == 0 {
			want = append(want, e.produce(sourceOrg(s), "ApplicationAuthentication.create",
				fmt.Sprintf(`{"id":%d,"application_id":%d,"authentication_id":%d}`, 20000+i, 9000+s, 30000+i)))
		} else {
			want = append(want, e.produce(sourceOrg(s), "Application.pause", pause(s, i)))
		}
	}
	port := testkit.FreePorts(t, 1)[0]
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	var lastKill uint64
	committed := map[int32]int64{}
	for k := 0; k < kills; k++ {
		cmd := e.startProcess(t, port)
		at := lastKill + 1 + uint64(r.IntN(events/kills))
		if err := e.awaitCount(ctx, at); err != nil {
			_ = cmd.Process.Kill()
			t.Fatalf("kill %d: the stream never reached %d messages: %v", k, at, err)
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		lastKill = e.streamCount()
		now := e.committedOffsets()
		for p, o := range committed {
			if now[p] < o {
				t.Errorf("kill %d: partition %d's committed offset went back from %d to %d", k+1, p, o, now[p])
			}
		}
		committed = now
		t.Logf("kill %d at %d stored messages, committed %v", k+1, lastKill, committed)
	}
	if sum(committed) == 0 {
		t.Fatal("nothing was committed before the last kill: the test proves nothing about resuming")
	}
	cmd := e.startProcess(t, port)
	got := e.awaitStream(events)
	awaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", port), 200)
	ops := fmt.Sprintf("127.0.0.1:%d", port)
	checkResumed(t, ops, events, lastKill, committed)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("listener did not stop cleanly on SIGTERM: %v", err)
	}
	if n := e.streamCount(); n != events {
		t.Errorf("the stream holds %d messages, want %d", n, events)
	}
	checkExactlyOnce(t, got, want)
	checkSourceOrder(t, got)
	final, end := e.committedOffsets(), e.endOffsets()
	for p, o := range end {
		if final[p] != o {
			t.Errorf("partition %d: committed %d after the last listener stopped, want the end %d", p, final[p], o)
		}
	}
	if calls := len(e.sources.callLog()); calls > apps*(kills+1) {
		t.Errorf("%d Sources calls for %d applications: the routing index is not used", calls, apps)
	}
}

// checkResumed checks that the last listener, at ops, resumed from the
// offsets committed when the previous one was killed with stored messages
// in the work stream. Offsets below the committed ones are never forwarded
// again; every forwarded event that was stored before it started comes
// back as a duplicate: at least stored minus the events it did not
// forward, all of which were stored.
func checkResumed(t *testing.T, ops string, events int, stored uint64, committed map[int32]int64) {
	t.Helper()
	forwarded := metric(t, ops, "cloudoreg_listener_published_total")
	if most := float64(int64(events) - sum(committed)); forwarded > most {
		t.Errorf("the last listener forwarded %v events, more than the %v at or after the committed offsets %v: it did not resume from them", forwarded, most, committed)
	}
	least := float64(stored) - (float64(events) - forwarded)
	if d := metric(t, ops, "cloudoreg_listener_duplicates_total"); d < least {
		t.Errorf("the last listener counted %v duplicates, want at least %v (the events it forwarded that were stored before it started)", d, least)
	}
}

func sum(m map[int32]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// committedOffsets asks the broker for the listener group's committed
// offsets (0 where none is committed).
func (e *env) committedOffsets() map[int32]int64 {
	e.t.Helper()
	admin, err := sarama.NewClusterAdmin(e.brokers, sarama.NewConfig())
	if err != nil {
		e.t.Fatal(err)
	}
	defer admin.Close()
	resp, err := admin.ListConsumerGroupOffsets("cloudoreg-listener", map[string][]int32{topic: {0, 1, 2}})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[int32]int64{}
	for p, b := range resp.Blocks[topic] {
		out[p] = max(b.Offset, 0)
	}
	return out
}

// endOffsets are the log-end offsets of the event topic.
func (e *env) endOffsets() map[int32]int64 {
	e.t.Helper()
	c, err := sarama.NewClient(e.brokers, sarama.NewConfig())
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Close()
	out := map[int32]int64{}
	for p := int32(0); p < 3; p++ {
		if out[p], err = c.GetOffset(topic, p, sarama.OffsetNewest); err != nil {
			e.t.Fatal(err)
		}
	}
	return out
}

// awaitCount waits until the stream holds at least n messages, woken by
// the stream's own subject traffic rather than a sleep.
func (e *env) awaitCount(ctx context.Context, n uint64) error {
	sub, err := e.nc.SubscribeSync("cloudoreg.work.>")
	if err != nil {
		return err
	}
	defer func() { _ = sub.Unsubscribe() }()
	for e.streamCount() < n {
		// Every publish to the stream passes this subscription; a short
		// wait bound covers a publish that landed before we subscribed.
		if _, err := sub.NextMsg(100 * time.Millisecond); err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}
