package config

import (
	"fmt"
	"reflect"
	"strings"
)

// Summary flattens a config struct into loggable fields keyed by their
// environment variable. A field tagged secret:"true" shows only whether it is
// set, so the summary can be logged at start without leaking anything.
func Summary(cfg any) map[string]any {
	out := map[string]any{}
	summarize(reflect.ValueOf(cfg), out)
	return out
}

func summarize(v reflect.Value, out map[string]any) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return
	}
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name == "" {
			summarize(v.Field(i), out)
			continue
		}
		if f.Tag.Get("secret") == "true" {
			out[name] = redacted(v.Field(i))
			continue
		}
		out[name] = fmt.Sprint(v.Field(i).Interface())
	}
}

func redacted(v reflect.Value) string {
	if v.IsZero() {
		return "(unset)"
	}
	return "(set)"
}
