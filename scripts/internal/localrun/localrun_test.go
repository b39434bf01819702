package localrun

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestPortsFromEnv: without variables the ports are the README's; each
// variable of PortVars moves its port (a processor's by its index); a value
// that is no port is refused, naming the variable.
func TestPortsFromEnv(t *testing.T) {
	none := func(string) string { return "" }
	p, err := PortsFromEnv(2, none)
	if err != nil {
		t.Fatal(err)
	}
	want := Ports{Kafka: 9092, NATS: 4222, NATSRoute: 6222, Sources: 8000, RHSM: 8001, STS: 8002, ListenerMetrics: 9100,
		ProcessorMetrics: []int{9101, 9102}, ProcessorPrivate: []int{10000, 10001}}
	if !equalPorts(p, want) {
		t.Fatalf("default ports %+v, want the README's %+v", p, want)
	}
	for i, pv := range PortVars {
		moved := 20000 + i*10
		env := func(k string) string {
			if k == pv.Name {
				return strconv.Itoa(moved)
			}
			return ""
		}
		got, err := PortsFromEnv(2, env)
		if err != nil {
			t.Fatalf("%s=%d: %v", pv.Name, moved, err)
		}
		found := false
		for _, u := range got.used(2) {
			if u.knob == pv.Name && u.port == moved {
				found = true
			}
			if u.knob != pv.Name && u.port == moved {
				t.Errorf("%s=%d moved %s instead", pv.Name, moved, u.what)
			}
		}
		if !found {
			t.Errorf("%s=%d moved nothing: %+v", pv.Name, moved, got)
		}
	}
	for _, bad := range []string{"x", "0", "-1", "65536", "80a", " 80"} {
		_, err := PortsFromEnv(1, func(k string) string {
			if k == "SOURCES_PORT" {
				return bad
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), "SOURCES_PORT") {
			t.Errorf("SOURCES_PORT=%q: error %v, want one naming the variable", bad, err)
		}
	}
}

// TestStartRefusesBusyOrSharedPorts: whichever part's port is taken (by
// another program) or given twice, Start fails before it starts anything,
// naming the port, the part and the variable that moves it. (Before, the
// part that could not bind looked ready while the other program answered on
// its port, and `make run` printed its banner.)
func TestStartRefusesBusyOrSharedPorts(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	taken := busy.Addr().(*net.TCPAddr).Port
	free, err := FreePorts(2, 1)
	if err != nil {
		t.Fatal(err)
	}
	// No binaries: starting any process would fail with another error.
	bin := filepath.Join(t.TempDir(), "no-binaries")
	for _, u := range free.used(1) {
		p := clonePorts(free)
		setPort(&p, u, taken)
		sys, err := Start(context.Background(), Options{BinDir: bin, Processors: 2, Ports: &p})
		want := "port " + strconv.Itoa(taken) + ", for " + u.what + ", is in use (" + u.knob + " moves it)"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s on a busy port: error %v, want %q", u.what, err, want)
		}
		if sys.Stack != nil || sys.Listener != nil || len(sys.Processors) > 0 {
			t.Errorf("%s on a busy port: a process was started", u.what)
		}
	}
	p := clonePorts(free)
	p.RHSM = p.Sources
	_, err = Start(context.Background(), Options{BinDir: bin, Processors: 2, Ports: &p})
	if err == nil || !strings.Contains(err.Error(), "is given to both the Sources stand-in (SOURCES_PORT) and the RHSM stand-in (RHSM_PORT)") {
		t.Errorf("one port for two parts: error %v", err)
	}
}

func equalPorts(a, b Ports) bool {
	return a.Kafka == b.Kafka && a.NATS == b.NATS && a.NATSRoute == b.NATSRoute && a.Sources == b.Sources &&
		a.RHSM == b.RHSM && a.STS == b.STS && a.ListenerMetrics == b.ListenerMetrics &&
		equalInts(a.ProcessorMetrics, b.ProcessorMetrics) && equalInts(a.ProcessorPrivate, b.ProcessorPrivate)
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func clonePorts(p Ports) Ports {
	p.ProcessorMetrics = append([]int(nil), p.ProcessorMetrics...)
	p.ProcessorPrivate = append([]int(nil), p.ProcessorPrivate...)
	return p
}

// setPort gives the part u names the port.
func setPort(p *Ports, u usedPort, port int) {
	fields := []*int{&p.Kafka, &p.NATS, &p.NATSRoute, &p.Sources, &p.RHSM, &p.STS, &p.ListenerMetrics}
	for i := range p.ProcessorMetrics {
		fields = append(fields, &p.ProcessorMetrics[i], &p.ProcessorPrivate[i])
	}
	for _, f := range fields {
		if *f == u.port {
			*f = port
		}
	}
}
