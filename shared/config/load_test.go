package config

import (
	"strings"
	"testing"
)

// loaded is a program configuration as both programs write theirs: nested
// settings, Clowder-managed fields tagged, others left alone.
type loaded struct {
	Kafka   Kafka
	Sources Sources
	Log     Log
	Nested  struct {
		Topic string `env:"LOAD_TEST_NESTED_TOPIC" envDefault:"platform.sources.status" clowder:"topic"`
	}
	Topic       string `env:"LOAD_TEST_TOPIC" envDefault:"platform.sources.event-stream" clowder:"topic"`
	Unmapped    string `env:"LOAD_TEST_UNMAPPED" envDefault:"not.a.clowder.topic" clowder:"topic"`
	BindHost    string `env:"LOAD_TEST_BIND" envDefault:"127.0.0.1" clowder:"bindHost"`
	MetricsPort int    `env:"LOAD_TEST_METRICS_PORT" envDefault:"9100" clowder:"metricsPort"`
	MetricsPath string `env:"LOAD_TEST_METRICS_PATH" envDefault:"/m" clowder:"metricsPath"`
	PrivatePort int    `env:"LOAD_TEST_PRIVATE_PORT" envDefault:"1" clowder:"privatePort"`
	Untouched   string `env:"LOAD_TEST_UNTOUCHED" envDefault:"as-is"`
}

func TestLoadOverlaysWhatTheStructTags(t *testing.T) {
	t.Setenv("ACG_CONFIG", "testdata/cdappconfig.json")
	var c loaded
	if err := Load(&c); err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]any{
		"topic":        c.Topic == "platform.sources.event-stream-env-cloudoreg-stage-cloudoreg-stage",
		"nested topic": strings.HasPrefix(c.Nested.Topic, "platform.sources.status-"),
		"unmapped":     c.Unmapped == "not.a.clowder.topic",
		"bind host":    c.BindHost == PodBindHost,
		"metrics port": c.MetricsPort == 9000,
		"metrics path": c.MetricsPath == "/metrics",
		"private port": c.PrivatePort == 10000,
		"kafka":        len(c.Kafka.Brokers) == 2 && c.Kafka.SASLMechanism == "SCRAM-SHA-512",
		"sources":      c.Sources.URL == "https://sources-api-svc.sources-stage.svc:8800" && c.Sources.CAFile == "/cdapp/certs/service-ca.crt",
		"untouched":    c.Untouched == "as-is",
	} {
		if got != true {
			t.Errorf("%s not overlaid as Clowder says: %+v", name, c)
		}
	}
}

func TestLoadWithoutClowderKeepsTheEnvironment(t *testing.T) {
	t.Setenv("ACG_CONFIG", "")
	var c loaded
	if err := Load(&c); err != nil {
		t.Fatal(err)
	}
	if c.Topic != "platform.sources.event-stream" || c.BindHost != "127.0.0.1" || c.MetricsPort != 9100 || c.PrivatePort != 1 {
		t.Errorf("%+v", c)
	}
}

func TestLoadRefusesAMisplacedTag(t *testing.T) {
	t.Setenv("ACG_CONFIG", "testdata/cdappconfig.json")
	var c struct {
		Port string `env:"LOAD_TEST_PORT" clowder:"metricsPort"`
	}
	if err := Load(&c); err == nil || !strings.Contains(err.Error(), "metricsPort") {
		t.Fatalf("Load = %v, want an error naming the tag", err)
	}
}
