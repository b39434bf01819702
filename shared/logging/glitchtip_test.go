package logging

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloudoreg/cloudoreg/shared/buildinfo"
	"github.com/cloudoreg/cloudoreg/shared/config"
	"github.com/cloudoreg/cloudoreg/shared/testkit"
)

// An error entry reaches Glitchtip as an event with the entry's message,
// fields, caller and error, under the environment and release; entries
// below error level stay out. The DSN may come from its file.
func TestGlitchtipReceivesErrors(t *testing.T) {
	defer func(v string) { buildinfo.Version = v }(buildinfo.Version)
	buildinfo.Version = "v1.2.3"
	sentry := testkit.NewSentry(t)
	for name, env := range map[string]map[string]string{
		"GLITCHTIP_DSN":      {"GLITCHTIP_DSN": sentry.DSN("public")},
		"GLITCHTIP_DSN_FILE": {"GLITCHTIP_DSN": "https://ignored@glitchtip.invalid/9", "GLITCHTIP_DSN_FILE": dsnFile(t, sentry.DSN("public"))},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("ENV_NAME", "stage")
			for k, v := range env {
				t.Setenv(k, v)
			}
			var c config.Log
			if err := config.Parse(&c); err != nil {
				t.Fatal(err)
			}
			c.Level = "debug"
			before := len(sentry.Events())
			l, err := New(&bytes.Buffer{}, c, testApp)
			if err != nil {
				t.Fatal(err)
			}
			l.Info("not an error")
			l.Warn("not an error either")
			caller := nextLine(t)
			l.WithError(errors.New("connection refused")).WithField("source_id", "42").Error("work message dead-lettered")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			l.Close(ctx)

			evs := sentry.AwaitEvents(t, before+1, 5*time.Second)[before:]
			if len(evs) != 1 {
				t.Fatalf("%d events, want the error only: %v", len(evs), evs)
			}
			ev := evs[0]
			hostname, _ := os.Hostname()
			for k, want := range map[string]any{
				"level": "error", "message": "work message dead-lettered", "environment": "stage",
				"release": "v1.2.3", "server_name": hostname, "logger": testApp,
			} {
				if ev[k] != want {
					t.Errorf("event %s = %v, want %v", k, ev[k], want)
				}
			}
			if tags, _ := ev["tags"].(map[string]any); tags[FieldApp] != testApp {
				t.Errorf("event tags %v, want app=%s", ev["tags"], testApp)
			}
			fields, _ := ev["contexts"].(map[string]any)[sentryContext].(map[string]any)
			if fields["source_id"] != "42" || fields["error"] != "connection refused" || fields[FieldCaller] != caller {
				t.Errorf("event fields %v, want source_id, error and caller %s", fields, caller)
			}
			if exc, _ := ev["exception"].([]any); len(exc) != 1 || exc[0].(map[string]any)["value"] != "connection refused" {
				t.Errorf("exception %v, want the entry's error", ev["exception"])
			}
		})
	}
}

func dsnFile(t *testing.T, dsn string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(p, []byte(dsn+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
