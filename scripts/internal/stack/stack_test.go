package stack

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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

// TestNATSCluster: with STACK_NATS_CLUSTER=3 the stack runs three clustered
// JetStream servers, all in one process or (STACK_NATS_NODE) one per
// process, and lists them all in its client URL; a stream at R3 keeps every
// acknowledged message and takes new ones when a server stops, its leader
// or not.
func TestNATSCluster(t *testing.T) {
	for _, c := range []struct {
		name        string
		perProcess  bool
		stopsLeader bool
	}{
		{"one process, a follower stops", false, false},
		{"one process, the leader stops", false, true},
		{"a process per server, the leader stops", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			servers, url := startCluster(t, c.perProcess)
			if n := len(strings.Split(url, ",")); n != 3 {
				t.Fatalf("client URL %q lists %d servers, want 3", url, n)
			}
			nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3, Storage: jetstream.FileStorage})
			if err != nil {
				t.Fatal(err)
			}
			publish(ctx, t, js, 0, 20)
			info, err := st.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
				t.Fatalf("stream cluster %+v: want a leader and two replicas", info.Cluster)
			}
			stop := otherThan(t, servers, info.Cluster.Leader)
			if c.stopsLeader {
				stop = byName(t, servers, info.Cluster.Leader)
			}
			stop.Shutdown()
			stop.WaitForShutdown()
			publish(ctx, t, js, 20, 40)
			testkit.Await(t, 30*time.Second, "the stream to count the stopped server offline", func() bool {
				info, err = st.Info(ctx)
				if err != nil || info.Cluster.Leader == "" || info.Cluster.Leader == stop.Name() {
					return false
				}
				for _, p := range info.Cluster.Replicas {
					if p.Name == stop.Name() {
						return p.Offline
					}
				}
				return false
			})
			if info.State.Msgs != 40 || info.State.FirstSeq != 1 || info.State.LastSeq != 40 {
				t.Errorf("after %s stopped: %d messages (seq %d to %d), want all 40", stop.Name(), info.State.Msgs, info.State.FirstSeq, info.State.LastSeq)
			}
			for seq := uint64(1); seq <= 40; seq++ {
				m, err := st.GetMsg(ctx, seq)
				if err != nil || string(m.Data) != strconv.Itoa(int(seq-1)) {
					t.Fatalf("message %d: %v %q", seq, err, m.Data)
				}
			}
		})
	}
}

// startCluster starts a three-server cluster on free loopback ports, in one
// Stack or in three (each with STACK_NATS_NODE), and returns the servers
// and the client URL.
func startCluster(t *testing.T, perProcess bool) ([]*server.Server, string) {
	t.Helper()
	cfg := Config{NATSCluster: 3, ExternalKafka: true, SkipStandIns: true}
	nodes := []int{0}
	if perProcess {
		p, err := testkit.PortRuns(3, 3)
		if err != nil {
			t.Fatal(err)
		}
		cfg.NATSPort, cfg.NATSRoutePort = p[0], p[1]
		nodes = []int{1, 2, 3}
	}
	var servers []*server.Server
	var url string
	for _, node := range nodes {
		cfg := cfg
		cfg.NATSNode = node
		s, err := Start(context.Background(), cfg, quiet())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		servers = append(servers, s.NATSServers()...)
		if url != "" && s.NATSURL != url {
			t.Errorf("server %d lists %q, the others %q", node, s.NATSURL, url)
		}
		url = s.NATSURL
	}
	if len(servers) != 3 {
		t.Fatalf("%d servers run, want 3", len(servers))
	}
	if perProcess {
		// Start waits for the cluster only when it runs it all.
		if err := awaitJetStreamCluster(context.Background(), servers, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return servers, url
}

// publish stores the messages "from" to "to"-1, retrying each until the
// stream acknowledges it: a new leader may be being elected, and a publish
// in flight to a server that stops is lost (the message id keeps a retry
// from storing it twice).
func publish(ctx context.Context, t *testing.T, js jetstream.JetStream, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		id := strconv.Itoa(i)
		testkit.Await(t, 30*time.Second, "message "+id+" stored", func() bool {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err := js.Publish(ctx, "r3."+id, []byte(id), jetstream.WithMsgID(id))
			return err == nil
		})
	}
}

func byName(t *testing.T, servers []*server.Server, name string) *server.Server {
	for _, s := range servers {
		if s.Name() == name {
			return s
		}
	}
	t.Fatalf("no server is called %q", name)
	return nil
}

func otherThan(t *testing.T, servers []*server.Server, name string) *server.Server {
	for _, s := range servers {
		if s.Name() != name {
			return s
		}
	}
	t.Fatalf("every server is called %q", name)
	return nil
}

// TestNATSClusterPortInUse: whichever server of a cluster cannot bind its
// client or route port, Start names that port's error and stops the
// servers it started (their ports are free again).
func TestNATSClusterPortInUse(t *testing.T) {
	for _, c := range []struct {
		name string
		port func(client, route int) int
		want string
	}{
		{"client port of server 2", func(client, _ int) int { return client + 1 }, "nats: "},
		{"route port of server 3", func(_, route int) int { return route + 2 }, "nats route: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := testkit.PortRuns(3, 3)
			if err != nil {
				t.Fatal(err)
			}
			client, route := p[0], p[1]
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port(client, route))))
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			s, err := Start(context.Background(), Config{NATSCluster: 3, NATSPort: client, NATSRoutePort: route, ExternalKafka: true, SkipStandIns: true}, quiet())
			if err == nil {
				s.Close()
				t.Fatal("started with a port taken")
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "address already in use") {
				t.Errorf("error %q: want %q and the bind error", err, c.want)
			}
			for _, port := range []int{client, route} {
				if err := bindable("127.0.0.1", port); err != nil {
					t.Errorf("port %d of the first server still held: %v", port, err)
				}
			}
		})
	}
	t.Run("a server alone needs fixed ports", func(t *testing.T) {
		s, err := Start(context.Background(), Config{NATSCluster: 3, NATSNode: 2, ExternalKafka: true, SkipStandIns: true}, quiet())
		if err == nil {
			s.Close()
			t.Fatal("started server 2 of 3 on port 0")
		}
	})
}
