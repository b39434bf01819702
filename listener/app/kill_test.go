package app_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
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
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building the listener: %v", buildErr)
	}
	return binary
}

// startProcess runs the listener binary against env.
func (e *env) startProcess(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(listenerBinary(t))
	cmd.Env = append(os.Environ(),
		"KAFKA_BROKERS="+e.brokers[0],
		fmt.Sprintf("NATS_URL=nats://127.0.0.1:%d", e.natsPort),
		"SOURCES_URL="+e.sources.URL, "SOURCES_PSK=test-psk",
		"METRICS_PORT=0", "BIND_HOST=127.0.0.1",
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
// event reached the work stream exactly once, in per-source order.
func TestKillRestartLosesNothing(t *testing.T) {
	e := newEnv(t)
	const events, kills = 2000, 6
	r := rand.New(rand.NewPCG(7, 11))
	var want []string
	for i := 0; i < events; i++ {
		s := r.IntN(30)
		want = append(want, e.produce(sourceOrg(s), "Application.pause", pause(s, i)))
	}
	// Kill points: random stream sizes, increasing, each past the last.
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	var lastKill uint64
	for k := 0; k < kills; k++ {
		cmd := e.startProcess(t)
		at := lastKill + 1 + uint64(r.IntN(events/kills))
		if err := e.awaitCount(ctx, at); err != nil {
			_ = cmd.Process.Kill()
			t.Fatalf("kill %d: the stream never reached %d messages: %v", k, at, err)
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		lastKill = e.streamCount()
		t.Logf("kill %d at %d stored messages", k+1, lastKill)
	}
	cmd := e.startProcess(t)
	got := e.awaitStream(events)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("listener did not stop cleanly on SIGTERM: %v", err)
	}
	if n := e.streamCount(); n != events {
		t.Errorf("the stream holds %d messages, want %d", n, events)
	}
	checkExactlyOnce(t, got, want)
	checkSourceOrder(t, got)
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
