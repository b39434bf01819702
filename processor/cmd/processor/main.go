// Command processor verifies and registers the AWS accounts of Sources
// sources, taking work from the Cloudoreg work stream. Run any number.
package main

import (
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/processor/app"
	"github.com/cloudoreg/cloudoreg/shared/program"
)

func main() {
	cfg, err := app.LoadConfig()
	program.Main("processor", cfg.Log, err, func(log *logrus.Entry) (program.Runner, error) {
		return app.New(cfg, log)
	})
}
