package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/cloudoreg/cloudoreg/shared/config"
)

const testApp = "cloudoreg-test"

func newJSON(t *testing.T, level string) (*Logger, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	l, err := New(&buf, config.Log{Level: level, Format: "json"}, testApp)
	if err != nil {
		t.Fatal(err)
	}
	return l, &buf
}

// nextLine is the caller string of the line after the one that calls it.
func nextLine(t *testing.T) string {
	t.Helper()
	_, file, line, _ := runtime.Caller(1)
	return "shared/logging/" + file[strings.LastIndex(file, "/")+1:] + ":" + strconv.Itoa(line+1)
}

func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not one JSON object per line: %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

var millisUTC = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

// Every way the programs log gives the house fields, with the caller in
// the code that logs (not logrus, not this package).
func TestJSONHouseFields(t *testing.T) {
	hostname, _ := os.Hostname()
	cases := []struct {
		name  string
		log   func(l *logrus.Entry) string
		level string
		msg   string
		extra map[string]any
	}{
		{"Info", func(l *logrus.Entry) string {
			c := nextLine(t)
			l.Info("plain")
			return c
		}, "info", "plain", nil},
		{"Infof", func(l *logrus.Entry) string {
			c := nextLine(t)
			l.Infof("n=%d", 3)
			return c
		}, "info", "n=3", nil},
		{"Debug", func(l *logrus.Entry) string {
			c := nextLine(t)
			l.Debug("low")
			return c
		}, "debug", "low", nil},
		{"WithField.Warn", func(l *logrus.Entry) string {
			c := nextLine(t)
			l.WithField("source_id", "12").Warn("w")
			return c
		}, "warning", "w", map[string]any{"source_id": "12"}},
		{"WithError.Error", func(l *logrus.Entry) string {
			c := nextLine(t)
			l.WithError(errors.New("boom")).Error("e")
			return c
		}, "error", "e", map[string]any{"error": "boom"}},
		{"WithFields.Log", func(l *logrus.Entry) string {
			c := nextLine(t)
			l.WithFields(logrus.Fields{"partition": 3, "ok": true}).Log(logrus.InfoLevel, "f")
			return c
		}, "info", "f", map[string]any{"partition": float64(3), "ok": true}},
		{"Logger.Print", func(l *logrus.Entry) string {
			c := nextLine(t)
			l.Logger.Print("p")
			return c
		}, "info", "p", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, buf := newJSON(t, "debug")
			before := time.Now().UTC().Truncate(time.Millisecond)
			wantCaller := c.log(l.Entry)
			got := lines(t, buf)[0]
			ts, _ := got[FieldTimestamp].(string)
			if !millisUTC.MatchString(ts) {
				t.Errorf("@timestamp %q is not RFC 3339 UTC with milliseconds", ts)
			}
			if at, err := time.Parse(time.RFC3339, ts); err != nil || at.Before(before) || at.After(time.Now()) {
				t.Errorf("@timestamp %q: %v, not the time of the call", ts, err)
			}
			want := map[string]any{FieldLevel: c.level, FieldMessage: c.msg, FieldApp: testApp, FieldHostname: hostname, FieldCaller: wantCaller}
			for k, v := range c.extra {
				want[k] = v
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v (entry %v)", k, got[k], v, got)
				}
			}
			for _, old := range []string{"time", "msg", "program"} {
				if _, ok := got[old]; ok {
					t.Errorf("logrus' field %s is still written: %v", old, got)
				}
			}
			if len(got) != len(want)+1 { // +1: @timestamp
				t.Errorf("fields %v, want exactly %v and @timestamp", got, want)
			}
		})
	}
}

// A field named like a house field never replaces it.
func TestJSONFieldClashes(t *testing.T) {
	for _, name := range []string{FieldTimestamp, FieldLevel, FieldMessage, FieldHostname, FieldCaller} {
		t.Run(name, func(t *testing.T) {
			l, buf := newJSON(t, "info")
			l.WithField(name, "from-the-entry").Info("clash")
			got := lines(t, buf)[0]
			if got[name] == "from-the-entry" {
				t.Errorf("the entry's %s replaced the house field: %v", name, got)
			}
			if got["fields."+name] != "from-the-entry" {
				t.Errorf("the entry's %s is lost: %v", name, got)
			}
		})
	}
}

func TestTextStaysReadable(t *testing.T) {
	var buf bytes.Buffer
	l, err := New(&buf, config.Log{Level: "info", Format: "text"}, testApp)
	if err != nil {
		t.Fatal(err)
	}
	caller := nextLine(t)
	l.WithField("source_id", "7").Info("source reconciled")
	out := buf.String()
	re := regexp.MustCompile(`^time="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[^"]*" level=info msg="source reconciled" caller="` + regexp.QuoteMeta(caller) + `" app=` + testApp + ` source_id=7\n$`)
	if !re.MatchString(out) {
		t.Errorf("text line %q does not match %s", out, re)
	}
}

func TestCaller(t *testing.T) {
	for _, c := range []struct {
		fn, file string
		line     int
		want     string
	}{
		{"github.com/cloudoreg/cloudoreg/listener/app.(*Listener).Run", "/work/src/listener/app/app.go", 120, "listener/app/app.go:120"},
		{"github.com/cloudoreg/cloudoreg/listener/app.(*Listener).Run", "github.com/cloudoreg/cloudoreg/listener/app/app.go", 120, "listener/app/app.go:120"},
		{"github.com/cloudoreg/cloudoreg/processor/internal/worker.(*Worker).handle.func1", "/x/worker.go", 9, "processor/internal/worker/worker.go:9"},
		{"github.com/cloudoreg/cloudoreg/shared/natsconn.Connect.func2", "/x/natsconn.go", 5, "shared/natsconn/natsconn.go:5"},
		{"main.main", "/x/cmd/listener/main.go", 14, "main/main.go:14"},
		{"github.com/IBM/sarama.(*consumerGroup).Consume", "/mod/sarama/consumer_group.go", 1, "github.com/IBM/sarama/consumer_group.go:1"},
	} {
		if got := Caller(&runtime.Frame{Function: c.fn, File: c.file, Line: c.line}); got != c.want {
			t.Errorf("Caller(%s, %s) = %q, want %q", c.fn, c.file, got, c.want)
		}
	}
	if got := Caller(nil); got != "" {
		t.Errorf("Caller(nil) = %q", got)
	}
}

func TestConfigurationErrors(t *testing.T) {
	for name, c := range map[string]config.Log{
		"level":                 {Level: "loud", Format: "json"},
		"format":                {Level: "info", Format: "xml"},
		"cloudwatch no keys":    {Level: "info", CloudWatch: config.CloudWatch{LogGroup: "g", Region: "us-east-1"}},
		"cloudwatch no region":  {Level: "info", CloudWatch: config.CloudWatch{LogGroup: "g", AccessKeyID: "a", SecretAccessKey: "s"}},
		"cloudwatch no secret":  {Level: "info", CloudWatch: config.CloudWatch{LogGroup: "g", Region: "r", AccessKeyID: "a"}},
		"glitchtip bad dsn":     {Level: "info", Glitchtip: config.Glitchtip{DSN: "not a dsn SECRET-KEY"}},
		"glitchtip no project":  {Level: "info", Glitchtip: config.Glitchtip{DSN: "https://SECRET-KEY@glitchtip.example.com"}},
		"glitchtip bad scheme":  {Level: "info", Glitchtip: config.Glitchtip{DSN: "ftp://SECRET-KEY@glitchtip.example.com/1"}},
		"glitchtip file is bad": {Level: "info", Glitchtip: config.Glitchtip{DSN: "https://k@g.example.com/1", DSNFile: "garbage SECRET-KEY"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(&bytes.Buffer{}, c, testApp)
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), "SECRET-KEY") {
				t.Errorf("the error shows the DSN's key: %v", err)
			}
		})
	}
}
