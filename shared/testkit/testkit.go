// Package testkit holds the few helpers every test harness of Cloudoreg
// needs: free loopback ports, a log buffer safe for many writers, reading
// metrics, and waiting for a condition or an HTTP endpoint's status.
package testkit

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Ports picks n loopback ports that are free now, for programs that must
// know their ports before they start. They are drawn from 20000-32767,
// below Linux's ephemeral range (32768-60999), so no port-0 listener or
// outgoing connection of another test can be given one between the pick
// and the program's bind, nor while a killed program is away from it.
func Ports(n int) ([]int, error) {
	sizes := make([]int, n)
	for i := range sizes {
		sizes[i] = 1
	}
	return PortRuns(sizes...)
}

// PortRuns is Ports for runs of consecutive ports (the servers of a local
// cluster, each on base+i): it returns the first port of a run of each size.
func PortRuns(sizes ...int) ([]int, error) {
	const lo, hi = 20000, 32768
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	// run holds size consecutive free ports open, or none.
	run := func(p, size int) bool {
		for q := p; q < p+size; q++ {
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(q)))
			if err != nil { // taken (also by one picked already, which is held open)
				for _, held := range lns[len(lns)-(q-p):] {
					_ = held.Close()
				}
				lns = lns[:len(lns)-(q-p)]
				return false
			}
			lns = append(lns, ln)
		}
		return true
	}
	firsts := make([]int, 0, len(sizes))
	for tries := 0; len(firsts) < len(sizes); tries++ {
		if tries > 2000 {
			return nil, fmt.Errorf("no free ports for runs of %v found in %d-%d", sizes, lo, hi-1)
		}
		size := sizes[len(firsts)]
		if p := lo + rand.IntN(hi-lo-size+1); run(p, size) {
			firsts = append(firsts, p)
		}
	}
	return firsts, nil
}

// FreePorts is Ports for a test.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := Ports(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// SyncBuffer collects logs from many goroutines and processes.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Metric reads one sample (name with its labels, as exposed) from
// http://addr/metrics; 0 when absent.
func Metric(t testing.TB, addr, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte(series+" ")); ok {
			f, _ := strconv.ParseFloat(string(v), 64)
			return f
		}
	}
	return 0
}

// SumMetric sums the samples named name at http://addr/metrics whose
// labels include label (e.g. `kind="x"`; empty: every sample), for
// harnesses that read a running program (no testing.TB at hand).
func SumMetric(addr, name, label string) (float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		series, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || (series != name && !strings.HasPrefix(series, name+"{")) || !strings.Contains(series, label) {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return 0, err
		}
		sum += v
	}
	return sum, sc.Err()
}

// AwaitHTTP polls url until it answers want; readiness changes have no
// event to wait on. It fails the test after limit.
func AwaitHTTP(t testing.TB, url string, want int, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for range tick.C {
		if resp, err := http.Get(url); err == nil { //nolint:gosec // G107: a test waits on the URL it started
			_ = resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered %d", url, want)
		}
	}
}

// Await polls cond until it holds, for state that has no event to wait on.
// It fails the test after limit.
func Await(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}
