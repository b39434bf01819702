package chaos

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/scripts/internal/stack"
	"github.com/cloudoreg/cloudoreg/shared/testkit"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

// TestClusterState: on the local stack's cluster, the harness finds the
// server that leads the work stream, and sees the cluster whole until a
// server stops, then not (naming the stream and the offline replica).
func TestClusterState(t *testing.T) {
	log := logrus.New()
	log.SetOutput(&testkit.SyncBuffer{})
	st, err := stack.Start(context.Background(), stack.Config{NATSCluster: natsCluster, ExternalKafka: true, SkipStandIns: true}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	nc, err := nats.Connect(st.NATSURL, nats.MaxReconnects(-1))
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
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: work.StreamName, Subjects: []string{"w.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	// Each look has its own deadline, as the harness's: a request in flight
	// to a server that stops gets no answer.
	look := func() (int, string, error) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return clusterState(ctx, js)
	}
	var leader int
	var behind string
	testkit.Await(t, 30*time.Second, "a whole cluster with a known leader", func() bool {
		leader, behind, err = look()
		return err == nil && behind == "" && leader >= 0
	})
	servers := st.NATSServers()
	if servers[leader].Name() != stack.NATSServerName(leader) {
		t.Fatalf("leader index %d, but that server is %s", leader, servers[leader].Name())
	}
	follower := servers[(leader+1)%natsCluster]
	follower.Shutdown()
	follower.WaitForShutdown()
	testkit.Await(t, 30*time.Second, "the stopped server reported", func() bool {
		_, behind, err = look()
		return err == nil && strings.Contains(behind, work.StreamName) && strings.Contains(behind, follower.Name()+" offline")
	})
}
