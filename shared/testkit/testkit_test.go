package testkit

import (
	"net"
	"strconv"
	"testing"
)

// TestPortRuns: every run is consecutive, no two runs share a port, and
// every port is free when PortRuns returns.
func TestPortRuns(t *testing.T) {
	sizes := []int{1, 3, 3, 1, 5}
	for round := 0; round < 20; round++ {
		firsts, err := PortRuns(sizes...)
		if err != nil {
			t.Fatal(err)
		}
		if len(firsts) != len(sizes) {
			t.Fatalf("%d runs, want %d", len(firsts), len(sizes))
		}
		seen := map[int]bool{}
		var lns []net.Listener
		for i, first := range firsts {
			for p := first; p < first+sizes[i]; p++ {
				if seen[p] || p < 20000 || p > 32767 {
					t.Fatalf("port %d of run %d: taken twice or outside 20000-32767 (%v)", p, i, firsts)
				}
				seen[p] = true
				ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
				if err != nil {
					t.Fatalf("port %d of run %d is not free: %v", p, i, err)
				}
				lns = append(lns, ln)
			}
		}
		for _, ln := range lns {
			_ = ln.Close()
		}
	}
}
