package config

import (
	"fmt"
	"reflect"
	"strings"
)

// Summary flattens a config struct into loggable fields keyed by their
// environment variable. A field tagged secret:"true" shows only whether it is
// set, and the user information of every URL (nats://user:password@host) is
// masked, so the summary can be logged at start without leaking anything.
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
		out[name] = maskURLs(name, v.Field(i))
	}
}

// Userinfo is what the summary shows instead of the user and password of a
// URL.
const Userinfo = "(userinfo)"

// maskURLs hides the user information of each URL in a setting's value:
// every element of a list, every comma-separated part of a string (NATS_URL
// may list several URLs). A value is a URL when it has a scheme or its
// setting is named *_URL or *_ENDPOINT (nats.go takes user:password@host
// without a scheme). Everything before the last "@" of the URL goes: a
// password may hold any character, even unescaped, and no host holds "@".
func maskURLs(name string, v reflect.Value) string {
	urlSetting := strings.HasSuffix(name, "_URL") || strings.HasSuffix(name, "_ENDPOINT")
	mask := func(s string) string {
		if !urlSetting && !strings.Contains(s, "://") {
			return s
		}
		parts := strings.Split(s, ",")
		for i, p := range parts {
			parts[i] = maskUserinfo(p)
		}
		return strings.Join(parts, ",")
	}
	switch {
	case v.Kind() == reflect.String:
		return mask(v.String())
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		out := make([]string, v.Len())
		for i := range out {
			out[i] = mask(v.Index(i).String())
		}
		return fmt.Sprint(out)
	default:
		return fmt.Sprint(v.Interface())
	}
}

func maskUserinfo(u string) string {
	start := 0
	if i := strings.Index(u, "://"); i >= 0 {
		start = i + len("://")
	}
	at := strings.LastIndex(u, "@")
	if at < start {
		return u
	}
	return u[:start] + Userinfo + u[at:]
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
