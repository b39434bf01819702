// Package natsconn connects to NATS with the credentials and TLS settings of
// config.NATS, and reconnects for ever: a NATS outage stalls Cloudoreg, it
// never stops it.
package natsconn

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/shared/config"
	"github.com/cloudoreg/cloudoreg/shared/ops"
	"github.com/prometheus/client_golang/prometheus"
)

// Options turns c into nats.go options. name identifies the client to the server.
func Options(c config.NATS, name string, log *logrus.Entry) ([]nats.Option, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		// nats.go closes the connection for good after the same auth error
		// twice; keep trying instead (readiness shows it), so a server that
		// briefly refuses (an account not yet loaded, credentials being
		// rotated) does not leave the program with a dead connection.
		nats.IgnoreAuthErrorAbort(),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err == nil {
				return // closed on purpose
			}
			log.WithError(err).Warn("disconnected from NATS")
		}),
		// Without it a refused login (with RetryOnFailedConnect) or a
		// server that keeps refusing the connection is never logged: the
		// program only waits. nats.go's errors name no credential.
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			log.WithError(err).Warn("connecting to NATS failed, retrying")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.WithField("nats_server", nc.ConnectedServerId()).Info("reconnected to NATS")
		}),
	}
	switch {
	case c.CredsFile != "":
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	case c.NKeySeedFile != "":
		o, err := nats.NkeyOptionFromSeed(c.NKeySeedFile)
		if err != nil {
			return nil, fmt.Errorf("NATS_NKEY_SEED_FILE: %w", err)
		}
		opts = append(opts, o)
	case config.Secret(c.Token, c.TokenFile) != "":
		opts = append(opts, nats.Token(config.Secret(c.Token, c.TokenFile)))
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, config.Secret(c.Password, c.PasswordFile)))
	}
	if c.CAFile != "" {
		opts = append(opts, nats.RootCAs(c.CAFile))
	}
	return opts, nil
}

// Connect connects to c.URL. With RetryOnFailedConnect the first connection
// is retried in the background, so start-up does not depend on NATS being up
// first; readiness reports the connection state.
func Connect(c config.NATS, name string, log *logrus.Entry) (*nats.Conn, error) {
	opts, err := Options(c, name, log)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(c.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	return nc, nil
}

// Watch reports the connection state to report every second until ctx ends
// (readiness follows it: a program without NATS cannot make progress).
func Watch(ctx context.Context, nc *nats.Conn, report func(connected bool)) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		report(nc.IsConnected())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ConnectWatched is Connect, then keeps the program's NATS readiness check
// and its connected gauge (1 or 0) current until ctx ends.
func ConnectWatched(ctx context.Context, c config.NATS, name string, log *logrus.Entry, ready *ops.Readiness, connected prometheus.Gauge) (*nats.Conn, error) {
	nc, err := Connect(c, name, log)
	if err != nil {
		return nil, err
	}
	go Watch(ctx, nc, func(ok bool) {
		ready.Set(ops.CheckNATS, ok, "not connected to NATS")
		if ok {
			connected.Set(1)
		} else {
			connected.Set(0)
		}
	})
	return nc, nil
}
