package deploycheck

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	lapp "github.com/cloudoreg/cloudoreg/listener/app"
	papp "github.com/cloudoreg/cloudoreg/processor/app"
	"github.com/cloudoreg/cloudoreg/shared/config"
)

// field is one env-tagged field of a config struct.
type field struct {
	env    string
	file   bool // ,file: the variable names a file whose content is the value
	secret bool
	value  reflect.Value
}

func fields(cfg any) []field {
	var out []field
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		for v.Kind() == reflect.Pointer {
			v = v.Elem()
		}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			tag := t.Field(i).Tag
			name, opts, _ := strings.Cut(tag.Get("env"), ",")
			if name == "" {
				if t.Field(i).Type.Kind() == reflect.Struct {
					walk(v.Field(i))
				}
				continue
			}
			out = append(out, field{env: name, file: strings.Contains(opts, "file"), secret: tag.Get("secret") == "true", value: v.Field(i)})
		}
	}
	walk(reflect.ValueOf(cfg))
	return out
}

// clearEnv unsets every variable the configs read, for the test, so the
// developer's environment does not leak in.
func clearEnv(t *testing.T) {
	t.Helper()
	names := []string{"ACG_CONFIG"}
	for _, cfg := range []any{&lapp.Config{}, &papp.Config{}} {
		for _, f := range fields(cfg) {
			names = append(names, f.env)
		}
	}
	for _, n := range names {
		t.Setenv(n, "") // restored after the test
		if err := os.Unsetenv(n); err != nil {
			t.Fatal(err)
		}
	}
}

// Every X_FILE secret wins over X, and X alone still works.
func TestFileSecretsWin(t *testing.T) {
	for _, cfg := range []any{&lapp.Config{}, &papp.Config{}} {
		t.Run(reflect.TypeOf(cfg).Elem().Name(), func(t *testing.T) {
			clearEnv(t)
			dir := t.TempDir()
			pairs := map[string]string{} // X -> X_FILE
			for _, f := range fields(cfg) {
				if f.file && f.secret {
					base := strings.TrimSuffix(f.env, "_FILE")
					pairs[base] = f.env
					t.Setenv(base, "from-env-"+base)
					t.Setenv(f.env, writeFile(t, dir, f.env, "from-file-"+base+"\n"))
				}
			}
			if len(pairs) == 0 {
				t.Fatal("no file secrets found")
			}
			if err := config.Parse(cfg); err != nil {
				t.Fatal(err)
			}
			values := map[string]string{}
			for _, f := range fields(cfg) {
				values[f.env] = f.value.String()
			}
			for base, file := range pairs {
				if got := config.Secret(values[base], values[file]); got != "from-file-"+base {
					t.Errorf("%s: got %q, want the file's content", base, got)
				}
				if got := config.Secret(values[base], ""); got != "from-env-"+base {
					t.Errorf("%s without a file: got %q", base, got)
				}
			}
		})
	}
}

// The accessors of the shared types use the file too.
func TestSharedAccessorsPreferFiles(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	t.Setenv("KAFKA_SASL_PASSWORD", "env-kafka")
	t.Setenv("KAFKA_SASL_PASSWORD_FILE", writeFile(t, dir, "k", "file-kafka\n"))
	t.Setenv("KAFKA_CA_PEM", "env-ca")
	t.Setenv("KAFKA_CA_FILE", writeFile(t, dir, "ca", "file-ca"))
	t.Setenv("SOURCES_PSK", "env-psk")
	t.Setenv("SOURCES_PSK_FILE", writeFile(t, dir, "psk", "file-psk\n"))
	var c lapp.Config
	if err := config.Parse(&c); err != nil {
		t.Fatal(err)
	}
	if c.Kafka.Password() != "file-kafka" || c.Kafka.CAPEM() != "file-ca" || c.Sources.Key() != "file-psk" {
		t.Errorf("password %q CA %q PSK %q", c.Kafka.Password(), c.Kafka.CAPEM(), c.Sources.Key())
	}
}

func TestSummaryNeverShowsASecret(t *testing.T) {
	for _, cfg := range []any{&lapp.Config{}, &papp.Config{}} {
		t.Run(reflect.TypeOf(cfg).Elem().Name(), func(t *testing.T) {
			if u := config.UntaggedSecrets(cfg); len(u) > 0 {
				t.Errorf("secret-looking variables without secret:\"true\": %v", u)
			}
			clearEnv(t)
			dir := t.TempDir()
			var markers []string
			for _, f := range fields(cfg) {
				if !f.secret {
					continue
				}
				m := "MARKER-" + f.env
				markers = append(markers, m)
				if f.file {
					t.Setenv(f.env, writeFile(t, dir, f.env, m))
				} else {
					t.Setenv(f.env, m)
				}
			}
			if err := config.Parse(cfg); err != nil {
				t.Fatal(err)
			}
			summary := config.Summary(cfg)
			for _, f := range fields(cfg) {
				v, ok := summary[f.env]
				if !ok {
					t.Errorf("%s missing from the summary", f.env)
					continue
				}
				if f.secret && v != "(set)" {
					t.Errorf("%s = %v, want (set)", f.env, v)
				}
				for _, m := range markers {
					if strings.Contains(v.(string), m) {
						t.Errorf("%s shows a secret: %v", f.env, v)
					}
				}
			}
		})
	}
}

func TestSummaryShowsUnsetSecrets(t *testing.T) {
	c := papp.Config{Sources: config.Sources{PSK: "x"}}
	s := config.Summary(c)
	if s["SOURCES_PSK"] != "(set)" || s["AWS_SECRET_ACCESS_KEY"] != "(unset)" || s["NATS_TOKEN_FILE"] != "(unset)" {
		t.Errorf("PSK %v AWS %v NATS token file %v", s["SOURCES_PSK"], s["AWS_SECRET_ACCESS_KEY"], s["NATS_TOKEN_FILE"])
	}
}

func TestUntaggedSecretsFindsOne(t *testing.T) {
	var c struct {
		config.NATS
		Leaky string `env:"RHSM_AUTH_VALUE"`
		Inner struct {
			Pw string `env:"X_PASSWORD_FILE,file"`
		}
		KeyID  string `env:"AWS_ACCESS_KEY_ID"`
		CAPath string `env:"RHSM_CA_FILE"`
	}
	got := config.UntaggedSecrets(&c)
	if want := []string{"RHSM_AUTH_VALUE", "X_PASSWORD_FILE"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
