package app_test

import (
	"testing"

	"github.com/cloudoreg/cloudoreg/listener/app"
	"github.com/cloudoreg/cloudoreg/shared/config"
)

// TestLoadConfigUnderClowder: with ACG_CONFIG set, the listener takes
// Kafka, its topic's real name, its ports and the Sources URL from cdappconfig.json, and its
// secrets are all tagged so the start-up summary hides them.
func TestLoadConfigUnderClowder(t *testing.T) {
	t.Setenv("ACG_CONFIG", "../../shared/config/testdata/cdappconfig.json")
	c, err := app.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.EventsTopic != "platform.sources.event-stream-env-cloudoreg-stage-cloudoreg-stage" {
		t.Errorf("events topic %q, want Clowder's name for it", c.EventsTopic)
	}
	if c.MetricsPort != 9000 || c.BindHost != config.PodBindHost {
		t.Errorf("metrics on %s:%d, want %s:9000", c.BindHost, c.MetricsPort, config.PodBindHost)
	}
	if len(c.Kafka.Brokers) != 2 || c.Kafka.SASLMechanism != "SCRAM-SHA-512" || c.Kafka.CAPEM() == "" {
		t.Errorf("kafka %v %s, CA set: %v", c.Kafka.Brokers, c.Kafka.SASLMechanism, c.Kafka.CAPEM() != "")
	}
	if c.Sources.URL != "https://sources-api-svc.sources-stage.svc:8800" {
		t.Errorf("Sources URL %q, want Clowder's sources-api endpoint", c.Sources.URL)
	}
	if u := config.UntaggedSecrets(c); len(u) > 0 {
		t.Errorf("secrets not tagged secret:\"true\": %v", u)
	}
}
