package logging

import (
	"context"
	"fmt"
	"time"

	"github.com/getsentry/sentry-go"
	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/shared/buildinfo"
)

// glitchtip is a logrus hook sending entries at error level and above to
// Glitchtip (Sentry's protocol). The event holds what the log entry holds
// and nothing else: its message, fields and caller, the app, host, release
// and environment. Sentry's transport queues and sends in the background
// (dropping when its queue is full), so Fire never waits for the network.
type glitchtip struct {
	client *sentry.Client
	app    string
}

func newGlitchtip(dsn, env, app, hostname string) (*glitchtip, error) {
	c, err := sentry.NewClient(sentry.ClientOptions{
		Dsn:         dsn,
		Environment: env,
		Release:     buildinfo.Get().Version,
		ServerName:  hostname,
		// No request data, user or IP: Cloudoreg's requests carry tenants'
		// identities.
		SendDefaultPII: false,
	})
	if err != nil {
		// The error names the DSN's problem, never its key.
		return nil, fmt.Errorf("GLITCHTIP_DSN: %w", err)
	}
	return &glitchtip{client: c, app: app}, nil
}

// Levels implements logrus.Hook.
func (h *glitchtip) Levels() []logrus.Level {
	return []logrus.Level{logrus.ErrorLevel, logrus.FatalLevel, logrus.PanicLevel}
}

// Fire implements logrus.Hook.
func (h *glitchtip) Fire(e *logrus.Entry) error {
	ev := sentry.NewEvent()
	ev.Level = sentryLevel(e.Level)
	ev.Message = e.Message
	ev.Timestamp = e.Time
	ev.Logger = h.app
	ev.Tags = map[string]string{FieldApp: h.app}
	// One issue per log message: the fields (ids, errors) vary, the message
	// says what went wrong.
	ev.Fingerprint = []string{h.app, e.Message}
	fields := make(sentry.Context, len(e.Data)+1)
	for k, v := range e.Data {
		if k != FieldApp {
			fields[k] = fieldValue(v)
		}
	}
	if c := Caller(e.Caller); c != "" {
		fields[FieldCaller] = c
	}
	ev.Contexts[sentryContext] = fields
	if err, ok := e.Data[logrus.ErrorKey].(error); ok {
		ev.Exception = []sentry.Exception{{Type: e.Message, Value: err.Error()}}
	}
	h.client.CaptureEvent(ev, nil, nil)
	return nil
}

// Close sends the events still queued, within the deadline of ctx.
func (h *glitchtip) Close(ctx context.Context) {
	timeout := FlushTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	h.client.Flush(timeout)
}

// sentryContext is the event context that holds the log entry's fields.
const sentryContext = "log"

// fieldValue keeps what JSON encodes as itself and makes the rest text, so
// no field can make the event unencodable.
func fieldValue(v any) any {
	switch v := v.(type) {
	case string, bool, int, int32, int64, uint, uint32, uint64, float32, float64:
		return v
	case error:
		return v.Error()
	default:
		return fmt.Sprint(v)
	}
}

func sentryLevel(l logrus.Level) sentry.Level {
	if l == logrus.ErrorLevel {
		return sentry.LevelError
	}
	return sentry.LevelFatal
}
