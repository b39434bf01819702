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

// secretWords mark an environment variable that holds a secret (or the
// content of a secret file). Paths to files (NATS_CREDS_FILE, RHSM_KEY_FILE)
// and identifiers (AWS_ACCESS_KEY_ID) are not secrets.
var secretWords = []string{"PASSWORD", "TOKEN", "PSK", "SECRET", "AUTH_VALUE"}

// UntaggedSecrets lists the environment variables of cfg that look like
// secrets but are not tagged secret:"true", so Summary would log their
// values. Tests of each program's Config expect it to be empty.
func UntaggedSecrets(cfg any) []string {
	var out []string
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
			if name == "" {
				walk(f.Type)
				continue
			}
			for _, w := range secretWords {
				if strings.Contains(name, w) && f.Tag.Get("secret") != "true" {
					out = append(out, name)
					break
				}
			}
		}
	}
	walk(reflect.TypeOf(cfg))
	return out
}
