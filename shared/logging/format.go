package logging

import (
	"encoding/json"
	"fmt"
	"path"
	"runtime"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
)

// The fields of every JSON entry, named as sources-api-go and the other
// console.redhat.com services name them, so one Kibana or CloudWatch query
// works across them.
const (
	FieldTimestamp = "@timestamp"
	FieldLevel     = "level"
	FieldMessage   = "message"
	FieldApp       = "app"
	FieldHostname  = "hostname"
	FieldCaller    = "caller"
)

// timestampFormat is RFC 3339 with milliseconds, always three digits, so
// entries of one pod sort as text.
const timestampFormat = "2006-01-02T15:04:05.000Z07:00"

// modulePrefix is left out of callers: every Cloudoreg package has it.
const modulePrefix = "github.com/cloudoreg/cloudoreg/"

// Formatter writes one JSON object per entry: the house fields, then the
// entry's own fields. A field of the entry that would overwrite a house
// field is kept as fields.<name>.
type Formatter struct {
	Hostname string
}

// Format implements logrus.Formatter.
func (f *Formatter) Format(e *logrus.Entry) ([]byte, error) {
	data := make(map[string]any, len(e.Data)+5)
	for k, v := range e.Data {
		if err, ok := v.(error); ok {
			v = err.Error()
		}
		data[k] = v
	}
	house := map[string]any{
		FieldTimestamp: e.Time.UTC().Format(timestampFormat),
		FieldLevel:     e.Level.String(),
		FieldMessage:   e.Message,
		FieldHostname:  f.Hostname,
		FieldCaller:    Caller(e.Caller),
	}
	for k, v := range house {
		if old, clash := data[k]; clash {
			data["fields."+k] = old
		}
		data[k] = v
	}
	b, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("log entry %q: %w", e.Message, err)
	}
	return append(b, '\n'), nil
}

// Caller is the file and line of the log call, as
// <package path in the module>/<file>:<line> (listener/app/app.go:120), the
// same with and without -trimpath; empty when logrus found no caller.
func Caller(f *runtime.Frame) string {
	if f == nil {
		return ""
	}
	return strings.TrimPrefix(packageOf(f.Function), modulePrefix) + "/" + path.Base(f.File) + ":" + strconv.Itoa(f.Line)
}

// packageOf cuts a function name (example.com/a/b.(*T).M) to its package
// path (example.com/a/b).
func packageOf(function string) string {
	slash := strings.LastIndex(function, "/")
	if dot := strings.Index(function[slash+1:], "."); dot >= 0 {
		return function[:slash+1+dot]
	}
	return function
}
