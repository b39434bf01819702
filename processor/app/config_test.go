package app

import (
	"testing"

	"github.com/cloudoreg/cloudoreg/shared/config"
)

// TestLoadConfigUnderClowder: with ACG_CONFIG set, the processor takes
// Kafka, the status topic's real name, its ports and the Sources URL from
// cdappconfig.json,
// and its secrets are all tagged so the start-up summary hides them.
func TestLoadConfigUnderClowder(t *testing.T) {
	t.Setenv("ACG_CONFIG", "../../shared/config/testdata/cdappconfig.json")
	c, err := LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.StatusTopic != "platform.sources.status-env-cloudoreg-stage-cloudoreg-stage" {
		t.Errorf("status topic %q, want Clowder's name for it", c.StatusTopic)
	}
	if c.MetricsPort != 9000 || c.PrivatePort != 10000 || c.BindHost != config.PodBindHost {
		t.Errorf("ports %s:%d/%d, want %s:9000/10000", c.BindHost, c.MetricsPort, c.PrivatePort, config.PodBindHost)
	}
	if len(c.Kafka.Brokers) != 2 || c.Kafka.SecurityProtocol != "SASL_SSL" {
		t.Errorf("kafka %v %s", c.Kafka.Brokers, c.Kafka.SecurityProtocol)
	}
	if c.Sources.URL != "https://sources-api-svc.sources-stage.svc:8800" {
		t.Errorf("Sources URL %q, want Clowder's sources-api endpoint", c.Sources.URL)
	}
	if u := config.UntaggedSecrets(c); len(u) > 0 {
		t.Errorf("secrets not tagged secret:\"true\": %v", u)
	}
}
