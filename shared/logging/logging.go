// Package logging builds the logrus logger both programs use: JSON to stdout
// in production, readable text for the local stack.
package logging

import (
	"fmt"
	"io"
	"os"

	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/shared/config"
)

// New returns a logger writing to stdout.
func New(c config.Log, program string) (*logrus.Entry, error) {
	return NewTo(os.Stdout, c, program)
}

// NewTo returns a logger writing to w (tests capture it).
func NewTo(w io.Writer, c config.Log, program string) (*logrus.Entry, error) {
	l := logrus.New()
	l.SetOutput(w)
	level, err := logrus.ParseLevel(c.Level)
	if err != nil {
		return nil, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	l.SetLevel(level)
	switch c.Format {
	case "json", "":
		l.SetFormatter(&logrus.JSONFormatter{})
	case "text":
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, DisableColors: true})
	default:
		return nil, fmt.Errorf("LOG_FORMAT must be json or text, not %q", c.Format)
	}
	return l.WithField("program", program), nil
}
