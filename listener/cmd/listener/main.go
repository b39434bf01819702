// Command listener forwards the Sources event stream from Kafka to the
// Cloudoreg work stream in JetStream. Run exactly one.
package main

import (
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/listener/app"
	"github.com/cloudoreg/cloudoreg/shared/program"
)

func main() {
	cfg, err := app.LoadConfig()
	program.Main("listener", cfg.Log, err, func(log *logrus.Entry) (program.Runner, error) {
		return app.New(cfg, log)
	})
}
