// Package logging builds the logrus logger both programs use: JSON to stdout
// in the platform's house style (the fields sources-api-go writes), readable
// text for the local stack, and copies to CloudWatch and Glitchtip when they
// are configured.
package logging

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/shared/config"
)

// Logger is a program's logger and the hooks that must be flushed before
// the process exits.
type Logger struct {
	*logrus.Entry
	flushers []func(context.Context)
}

// New returns the logger of the program app (cloudoreg-listener,
// cloudoreg-processor) writing to w, with the CloudWatch and Glitchtip hooks
// that c enables.
func New(w io.Writer, c config.Log, app string) (*Logger, error) {
	level, err := logrus.ParseLevel(c.Level)
	if err != nil {
		return nil, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	if err := c.CloudWatch.Validate(); err != nil {
		return nil, err
	}
	hostname, _ := os.Hostname()
	house := &Formatter{Hostname: hostname}
	l := logrus.New()
	l.SetOutput(w)
	l.SetLevel(level)
	l.SetReportCaller(true)
	switch c.Format {
	case "json", "":
		l.SetFormatter(house)
	case "text":
		l.SetFormatter(textFormatter())
	default:
		return nil, fmt.Errorf("LOG_FORMAT must be json or text, not %q", c.Format)
	}
	l.AddHook(appHook(app))
	out := &Logger{Entry: logrus.NewEntry(l)}
	if c.CloudWatch.Enabled() {
		cw := newCloudWatch(c.CloudWatch, hostname, house)
		l.AddHook(cw)
		out.flushers = append(out.flushers, cw.Close)
	}
	if dsn := c.Glitchtip.Key(); dsn != "" {
		gt, err := newGlitchtip(dsn, c.Glitchtip.EnvName, app, hostname)
		if err != nil {
			return nil, err
		}
		l.AddHook(gt)
		out.flushers = append(out.flushers, gt.Close)
	}
	return out, nil
}

// Close sends what the hooks still hold, each within the deadline of ctx.
func (l *Logger) Close(ctx context.Context) {
	for _, f := range l.flushers {
		f(ctx)
	}
}

// FlushTimeout is how long a program waits at exit for its logs and errors
// to leave: a few seconds of the termination grace period.
const FlushTimeout = 5 * time.Second

// appHook names the app in every entry, however it was logged, before the
// other hooks see it.
type appHook string

func (appHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h appHook) Fire(e *logrus.Entry) error {
	e.Data[FieldApp] = string(h)
	return nil
}

func textFormatter() logrus.Formatter {
	return &logrus.TextFormatter{
		FullTimestamp:    true,
		TimestampFormat:  timestampFormat,
		DisableColors:    true,
		CallerPrettyfier: func(f *runtime.Frame) (string, string) { return "", Caller(f) },
		FieldMap:         logrus.FieldMap{logrus.FieldKeyFile: FieldCaller},
	}
}
