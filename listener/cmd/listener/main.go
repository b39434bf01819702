// Command listener forwards the Sources event stream from Kafka to the
// Cloudoreg work stream in JetStream. Run exactly one.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cloudoreg/cloudoreg/listener/app"
	"github.com/cloudoreg/cloudoreg/shared/logging"
)

func main() {
	cfg, err := app.LoadConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log, err := logging.New(cfg.Log, "listener")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	l, err := app.New(cfg, log)
	if err != nil {
		log.WithError(err).Fatal("listener cannot start")
	}
	if err := l.Run(ctx); err != nil && ctx.Err() == nil {
		log.WithError(err).Fatal("listener failed")
	}
}
