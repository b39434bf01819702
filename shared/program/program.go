// Package program is what both of Cloudoreg's commands do around their
// work: build the logger, stop on SIGTERM or Ctrl-C, and exit with a code an
// operator can read (2: bad configuration, 1: failure, 0: stopped).
package program

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/shared/config"
	"github.com/cloudoreg/cloudoreg/shared/logging"
)

// Runner is a program that works until its context ends.
type Runner interface {
	Run(ctx context.Context) error
}

// Main runs the program named name and exits. loadErr is the error of
// loading the configuration; start builds the program from its logger. The
// logger's copies (CloudWatch, Glitchtip) are flushed before every exit, so
// the error that stops a program reaches them too.
func Main(name string, logCfg config.Log, loadErr error, start func(*logrus.Entry) (Runner, error)) {
	if loadErr != nil {
		fmt.Fprintln(os.Stderr, loadErr)
		os.Exit(2)
	}
	log, err := logging.New(os.Stdout, logCfg, "cloudoreg-"+name)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(run(name, log, start))
}

func run(name string, log *logging.Logger, start func(*logrus.Entry) (Runner, error)) int {
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), logging.FlushTimeout)
		defer cancel()
		log.Close(ctx)
	}()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	r, err := start(log.Entry)
	if err != nil {
		log.WithError(err).Error(name + " cannot start")
		return 2
	}
	if err := r.Run(ctx); err != nil && ctx.Err() == nil {
		log.WithError(err).Error(name + " failed")
		return 1
	}
	return 0
}
