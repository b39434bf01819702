// Command processor verifies and registers the AWS accounts of Sources
// sources, taking work from the Cloudoreg work stream. Run any number.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/cloudoreg/cloudoreg/processor/app"
	"github.com/cloudoreg/cloudoreg/shared/logging"
)

func main() {
	cfg, err := app.LoadConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log, err := logging.New(cfg.Log, "processor")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	p, err := app.New(cfg, log)
	if err != nil {
		log.WithError(err).Fatal("processor cannot start")
	}
	if err := p.Run(ctx); err != nil && ctx.Err() == nil {
		log.WithError(err).Fatal("processor failed")
	}
}
