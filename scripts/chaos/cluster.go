package chaos

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/cloudoreg/cloudoreg/scripts/internal/stack"
	"github.com/cloudoreg/cloudoreg/shared/work"
)

func injectNATSNodeKills(ctx context.Context, f *fault) error {
	return f.spread(ctx, max(1, f.scale.Repeats/2), func(int) error {
		leader, err := f.wholeCluster(ctx)
		if err != nil {
			return err
		}
		i := (leader + 1 + f.r.IntN(natsCluster-1)) % natsCluster
		return f.killNATSServer(ctx, i, "a follower of the work stream")
	})
}

func injectNATSLeaderKills(ctx context.Context, f *fault) error {
	return f.spread(ctx, max(1, f.scale.Repeats/2), func(int) error {
		leader, err := f.wholeCluster(ctx)
		if err != nil {
			return err
		}
		return f.killNATSServer(ctx, leader, "the work stream's leader")
	})
}

// wholeCluster waits until every stream has a leader and all its replicas
// current, so that a kill takes one server from a cluster that has all
// three (a server that is still catching up does not count towards a
// quorum), and returns the server that leads the work stream.
func (f *fault) wholeCluster(ctx context.Context) (int, error) {
	in := f.sys.inspector()
	leader := -1
	why := waitFor(ctx, f.scale.Settle, func(ctx context.Context) string {
		nc, js, err := in.connectNATS()
		if err != nil {
			return "NATS: " + err.Error()
		}
		defer nc.Close()
		var behind string
		leader, behind, err = clusterState(ctx, js)
		switch {
		case err != nil:
			return err.Error()
		case behind == "" && leader < 0:
			return "the work stream's leader is none of the servers"
		}
		return behind
	})
	if why != "" {
		return 0, fmt.Errorf("the NATS cluster was not whole within %s: %s", f.scale.Settle, why)
	}
	return leader, nil
}

// killNATSServer kills -9 server i and starts it again, on its store, after
// a while.
func (f *fault) killNATSServer(ctx context.Context, i int, role string) error {
	pid := f.sys.kill(natsProc(i))
	f.logf("kill -9 nats-%d, %s (pid %d)", i+1, role, pid)
	if err := sleep(ctx, f.jitter(f.scale.Outage/3, f.scale.Outage)); err != nil {
		return err
	}
	if err := f.sys.relaunch(natsProc(i)); err != nil {
		return err
	}
	f.logf("nats-%d restarted on its store", i+1)
	return nil
}

// clusterState returns the index of the NATS server that leads the work
// stream (-1 on a single server) and what keeps the cluster from being
// whole: a stream without a leader, a replica offline or behind ("" when
// none; a single server is always whole).
func clusterState(ctx context.Context, js jetstream.JetStream) (int, string, error) {
	leader, behind := -1, ""
	lister := js.ListStreams(ctx)
	for info := range lister.Info() {
		c := info.Cluster
		if c == nil || info.Config.Replicas <= 1 {
			continue
		}
		if c.Leader == "" {
			behind = fmt.Sprintf("stream %s has no leader", info.Config.Name)
		}
		if info.Config.Name == work.StreamName {
			leader = serverIndex(c.Leader)
		}
		if len(c.Replicas) < info.Config.Replicas-1 {
			behind = fmt.Sprintf("stream %s has %d of its %d replicas", info.Config.Name, len(c.Replicas)+1, info.Config.Replicas)
		}
		for _, p := range c.Replicas {
			if p.Offline || !p.Current {
				behind = fmt.Sprintf("stream %s: replica %s %s", info.Config.Name, p.Name, replicaState(p))
			}
		}
	}
	if err := lister.Err(); err != nil {
		return -1, "", err
	}
	return leader, behind, nil
}

func replicaState(p *jetstream.PeerInfo) string {
	if p.Offline {
		return "offline"
	}
	return fmt.Sprintf("%d operations behind, last active %s ago", p.Lag, p.Active.Round(time.Millisecond))
}

// serverIndex is the index of the local cluster's server called name, or -1.
func serverIndex(name string) int {
	for i := 0; i < natsCluster; i++ {
		if stack.NATSServerName(i) == name {
			return i
		}
	}
	return -1
}
