// Command stack runs the local stack (Kafka, NATS, Sources, RHSM and STS
// stand-ins) in the foreground until interrupted. See the README for ports.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/caarlos0/env/v11"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/scripts/internal/stack"
)

func main() {
	var cfg stack.Config
	if err := env.Parse(&cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	log := logrus.New()
	log.SetOutput(os.Stdout)
	if os.Getenv("LOG_FORMAT") == "json" {
		log.SetFormatter(&logrus.JSONFormatter{})
	} else {
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, DisableColors: true})
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	s, err := stack.Start(ctx, cfg, log)
	if err != nil {
		log.WithError(err).Fatal("local stack cannot start")
	}
	log.WithFields(logrus.Fields{
		"kafka": s.KafkaAddr, "nats": s.NATSURL, "sources": s.SourcesURL, "rhsm": s.RHSMURL, "sts": s.STSURL,
	}).Info("local stack ready")
	<-ctx.Done()
	log.Info("local stack stopping")
	s.Close()
}
