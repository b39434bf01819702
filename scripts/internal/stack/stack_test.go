package stack

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/shared/testkit"
)

func quiet() *logrus.Logger {
	l := logrus.New()
	l.SetOutput(&testkit.SyncBuffer{})
	return l
}

// free is a Config of free ports for every part.
func free(t *testing.T) Config {
	p := testkit.FreePorts(t, 5)
	return Config{KafkaPort: p[0], NATSPort: p[1], SourcesPort: p[2], RHSMPort: p[3], STSPort: p[4], Partitions: 1,
		EventsTopic: "events", StatusTopic: "status", PSK: "psk"}
}

// TestPortInUseIsTheError: whichever part cannot bind its port, Start
// stops what it started and returns that part's error, naming the cause
// (it used to panic in its cleanup, hiding it).
func TestPortInUseIsTheError(t *testing.T) {
	for _, part := range []string{"kafka", "nats", "sts", "rhsm", "sources"} {
		t.Run(part, func(t *testing.T) {
			cfg := free(t)
			port := map[string]*int{"kafka": &cfg.KafkaPort, "nats": &cfg.NATSPort, "sts": &cfg.STSPort, "rhsm": &cfg.RHSMPort, "sources": &cfg.SourcesPort}[part]
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			*port = ln.Addr().(*net.TCPAddr).Port
			s, err := Start(context.Background(), cfg, quiet())
			if err == nil {
				s.Close()
				t.Fatalf("started with the %s port taken", part)
			}
			if s != nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(strings.ToLower(err.Error()), part) {
				t.Errorf("error %q (stack %v): want the %s part's bind error", err, s, part)
			}
		})
	}
}

// TestBuiltInTrustTable: started from a directory that is not the
// repository, the STS stand-in still has the shipped trust table.
func TestBuiltInTrustTable(t *testing.T) {
	t.Chdir(t.TempDir())
	cfg := free(t)
	s, err := Start(context.Background(), cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if len(s.STS.Trust().Roles) == 0 {
		t.Error("the STS stand-in trusts no role")
	}
}
