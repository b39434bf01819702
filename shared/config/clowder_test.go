package config_test

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/cloudoreg/cloudoreg/shared/config"
	"github.com/cloudoreg/cloudoreg/shared/kafka"
)

const cdappconfig = "testdata/cdappconfig.json"

// programConfig is the part of a program's configuration the overlay
// touches (the programs' own LoadConfig tests check the real wiring).
type programConfig struct {
	Kafka       config.Kafka
	NATS        config.NATS
	Sources     config.Sources
	StatusTopic string `env:"KAFKA_STATUS_TOPIC" envDefault:"platform.sources.status"`
	BindHost    string `env:"BIND_HOST" envDefault:"127.0.0.1"`
	MetricsPort int    `env:"METRICS_PORT" envDefault:"9101"`
	MetricsPath string `env:"METRICS_PATH" envDefault:"/metrics"`
	PrivatePort int    `env:"PRIVATE_PORT" envDefault:"10000"`
}

// overlay applies o the way the processor's LoadConfig does.
func overlay(c programConfig, o *config.Overlay) programConfig {
	c.Kafka = o.Kafka(c.Kafka)
	c.StatusTopic = o.Topic(c.StatusTopic)
	c.Sources = o.Sources(c.Sources)
	c.BindHost = o.BindHost(c.BindHost)
	c.MetricsPort = o.MetricsPort(c.MetricsPort)
	c.MetricsPath = o.MetricsPath(c.MetricsPath)
	c.PrivatePort = o.PrivatePort(c.PrivatePort)
	return c
}

func TestClowderOverlaysTheEnvironment(t *testing.T) {
	clearEnv(t)
	dir := t.TempDir()
	// A local-stack environment with file secrets that Clowder must replace,
	// and settings Clowder does not provide, which must stay.
	t.Setenv("KAFKA_BROKERS", "127.0.0.1:9092")
	t.Setenv("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
	t.Setenv("KAFKA_SASL_MECHANISM", "PLAIN")
	t.Setenv("KAFKA_SASL_USERNAME", "local")
	t.Setenv("KAFKA_SASL_PASSWORD_FILE", writeFile(t, dir, "kafka-password", "local-password\n"))
	t.Setenv("KAFKA_CA_FILE", writeFile(t, dir, "kafka-ca", "not the Clowder CA"))
	t.Setenv("NATS_URL", "nats://nats.cloudoreg-stage.svc:4222")
	t.Setenv("METRICS_PORT", "9999")
	t.Setenv("SOURCES_URL", "http://127.0.0.1:8000")
	t.Setenv("SOURCES_TIMEOUT", "3s")

	var env programConfig
	if err := config.Parse(&env); err != nil {
		t.Fatal(err)
	}
	o, err := config.Clowder(cdappconfig)
	if err != nil {
		t.Fatal(err)
	}
	c := overlay(env, o)

	wantBrokers := []string{
		"b-1.platform-mq.abcd12.c3.kafka.us-east-1.amazonaws.com:9096",
		"b-2.platform-mq.abcd12.c3.kafka.us-east-1.amazonaws.com:9096",
	}
	if !slices.Equal(c.Kafka.Brokers, wantBrokers) {
		t.Errorf("brokers %v, want %v", c.Kafka.Brokers, wantBrokers)
	}
	if c.Kafka.Password() != "s3cr3t-from-clowder" {
		t.Errorf("SASL password from the file, not Clowder: %q", c.Kafka.Password())
	}

	sc, err := kafka.Config(c.Kafka, "cloudoreg-processor")
	if err != nil {
		t.Fatal(err)
	}
	if !sc.Net.TLS.Enable || sc.Net.TLS.Config == nil {
		t.Fatal("TLS is not enabled for SASL_SSL")
	}
	ca := testdataCA(t)
	if _, err := ca.Verify(x509.VerifyOptions{Roots: sc.Net.TLS.Config.RootCAs}); err != nil {
		t.Errorf("Clowder's CA is not in RootCAs: %v", err)
	}
	if !sc.Net.SASL.Enable || sc.Net.SASL.Mechanism != sarama.SASLTypeSCRAMSHA512 {
		t.Errorf("SASL enabled %v mechanism %q, want SCRAM-SHA-512", sc.Net.SASL.Enable, sc.Net.SASL.Mechanism)
	}
	if sc.Net.SASL.User != "cloudoreg-svc" || sc.Net.SASL.Password != "s3cr3t-from-clowder" {
		t.Errorf("SASL user %q password %q", sc.Net.SASL.User, sc.Net.SASL.Password)
	}
	if sc.Net.SASL.SCRAMClientGeneratorFunc == nil {
		t.Error("no SCRAM client")
	}
	if err := sc.Validate(); err != nil {
		t.Errorf("sarama rejects the config: %v", err)
	}

	if c.StatusTopic != "platform.sources.status-env-cloudoreg-stage-cloudoreg-stage" {
		t.Errorf("status topic %q", c.StatusTopic)
	}
	if got := o.Topic("platform.sources.event-stream"); got != "platform.sources.event-stream-env-cloudoreg-stage-cloudoreg-stage" {
		t.Errorf("events topic %q", got)
	}
	if got := o.Topic("platform.notifications.ingress"); got != "platform.notifications.ingress" {
		t.Errorf("an unmapped topic changed to %q", got)
	}
	if c.BindHost != "0.0.0.0" || c.MetricsPort != 9000 || c.MetricsPath != "/metrics" || c.PrivatePort != 10000 {
		t.Errorf("bind %q metrics %d %q private %d, want 0.0.0.0 9000 /metrics 10000",
			c.BindHost, c.MetricsPort, c.MetricsPath, c.PrivatePort)
	}
	if c.Sources.URL != "https://sources-api-svc.sources-stage.svc:8800" || c.Sources.Timeout != 3*time.Second {
		t.Errorf("Sources %q (timeout %s), want the sources-api endpoint's TLS port and the environment's timeout", c.Sources.URL, c.Sources.Timeout)
	}
	if c.NATS.URL != "nats://nats.cloudoreg-stage.svc:4222" {
		t.Errorf("NATS URL %q: Clowder has no NATS, the environment must stay", c.NATS.URL)
	}

	// The summary of the overlaid config still shows no secret.
	for k, v := range config.Summary(c) {
		if s, _ := v.(string); strings.Contains(s, "s3cr3t") || strings.Contains(s, "local-password") {
			t.Errorf("summary shows a secret in %s", k)
		}
	}
}

func TestWithoutClowderNothingChanges(t *testing.T) {
	clearEnv(t)
	var env programConfig
	if err := config.Parse(&env); err != nil {
		t.Fatal(err)
	}
	o, err := config.ClowderFromEnv()
	if err != nil || o != nil {
		t.Fatalf("ACG_CONFIG unset: overlay %v, error %v", o, err)
	}
	if c := overlay(env, o); !same(t, c, env) {
		t.Errorf("a nil overlay changed the config:\n%+v\n%+v", c, env)
	}
}

func TestClowderFromEnv(t *testing.T) {
	t.Setenv("ACG_CONFIG", cdappconfig)
	o, err := config.ClowderFromEnv()
	if err != nil || o == nil {
		t.Fatalf("overlay %v, error %v", o, err)
	}
	if o.MetricsPort(1) != 9000 {
		t.Errorf("metrics port %d", o.MetricsPort(1))
	}

	t.Setenv("ACG_CONFIG", filepath.Join(t.TempDir(), "missing.json"))
	if _, err := config.ClowderFromEnv(); err == nil {
		t.Error("a missing cdappconfig.json is not an error")
	}
	t.Setenv("ACG_CONFIG", writeFile(t, t.TempDir(), "bad.json", `{"metricsPort": 9000}`))
	if _, err := config.ClowderFromEnv(); err == nil {
		t.Error("a cdappconfig.json without metricsPath and logging is not an error")
	}
}

// Clowder's other Kafka shapes: Strimzi in ephemeral environments (no auth,
// sometimes a TLS listener), PLAIN on managed Kafka with only the deprecated
// sasl.securityProtocol, and no Kafka at all.
func TestClowderKafkaShapes(t *testing.T) {
	env := config.Kafka{
		Brokers: []string{"127.0.0.1:9092"}, SecurityProtocol: "SASL_SSL", SASLMechanism: "SCRAM-SHA-512",
		SASLUsername: "env-user", SASLPassword: "env-password", CA: "env-ca",
	}
	for _, tc := range []struct {
		name, kafka string
		want        config.Kafka
	}{{
		name:  "strimzi plain",
		kafka: `{"brokers": [{"hostname": "env-ephemeral-kafka-bootstrap.ns.svc", "port": 9092}], "topics": []}`,
		want: config.Kafka{Brokers: []string{"env-ephemeral-kafka-bootstrap.ns.svc:9092"}, SecurityProtocol: "PLAINTEXT",
			SASLMechanism: "SCRAM-SHA-512", SASLUsername: "env-user", SASLPassword: "env-password", CA: "env-ca"},
	}, {
		name:  "strimzi tls",
		kafka: `{"brokers": [{"hostname": "kafka.ns.svc", "port": 9093, "cacert": "clowder-ca"}], "topics": []}`,
		want: config.Kafka{Brokers: []string{"kafka.ns.svc:9093"}, SecurityProtocol: "SSL",
			SASLMechanism: "SCRAM-SHA-512", SASLUsername: "env-user", SASLPassword: "env-password", CA: "clowder-ca"},
	}, {
		name: "managed plain, deprecated protocol field",
		kafka: `{"brokers": [{"hostname": "mq.example.com", "port": 443, "authtype": "sasl",
			"sasl": {"username": "u", "password": "p", "saslMechanism": "PLAIN", "securityProtocol": "SASL_SSL"}}], "topics": []}`,
		want: config.Kafka{Brokers: []string{"mq.example.com:443"}, SecurityProtocol: "SASL_SSL",
			SASLMechanism: "PLAIN", SASLUsername: "u", SASLPassword: "p", CA: "env-ca"},
	}, {
		name:  "no kafka",
		kafka: ``,
		want:  env,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			doc := `{"metricsPort": 9000, "metricsPath": "/metrics", "logging": {"type": "null"}`
			if tc.kafka != "" {
				doc += `, "kafka": ` + tc.kafka
			}
			o, err := config.Clowder(writeFile(t, t.TempDir(), "cdappconfig.json", doc+"}"))
			if err != nil {
				t.Fatal(err)
			}
			if got := o.Kafka(env); !same(t, got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// The Sources URL comes from the sources-api dependency endpoint: its TLS
// port with https when it has one, else its port with http; SOURCES_URL
// when the ClowdApp does not depend on sources-api.
func TestClowderSourcesEndpoint(t *testing.T) {
	const env = "http://sources.example:8000"
	for _, tc := range []struct {
		name, endpoints, want string
	}{
		{"tls port preferred", `[{"app": "sources-api", "name": "svc", "hostname": "sources-api-svc.ns.svc", "port": 8000, "tlsPort": 8800, "apiPath": "sources"}]`,
			"https://sources-api-svc.ns.svc:8800"},
		{"plain port", `[{"app": "sources-api", "name": "svc", "hostname": "sources-api-svc.ns.svc", "port": 8000, "apiPath": "sources"}]`,
			"http://sources-api-svc.ns.svc:8000"},
		{"tls port 0 is none", `[{"app": "sources-api", "name": "svc", "hostname": "sources-api-svc.ns.svc", "port": 8000, "tlsPort": 0, "apiPath": "sources"}]`,
			"http://sources-api-svc.ns.svc:8000"},
		{"another app only", `[{"app": "rbac", "name": "service", "hostname": "rbac-service.ns.svc", "port": 8000, "apiPath": "rbac"}]`,
			env},
		{"no port", `[{"app": "sources-api", "name": "svc", "hostname": "sources-api-svc.ns.svc", "port": 0, "apiPath": "sources"}]`,
			env},
		{"no endpoints", `[]`, env},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc := `{"metricsPort": 9000, "metricsPath": "/metrics", "logging": {"type": "null"}, "endpoints": ` + tc.endpoints + `}`
			o, err := config.Clowder(writeFile(t, t.TempDir(), "cdappconfig.json", doc))
			if err != nil {
				t.Fatal(err)
			}
			base := config.Sources{URL: env, PSK: "psk", Timeout: time.Second}
			got := o.Sources(base)
			want := base
			want.URL = tc.want
			if !same(t, got, want) {
				t.Errorf("got %+v, want %+v", got, want)
			}
		})
	}
	var none *config.Overlay
	if got := none.Sources(config.Sources{URL: env}); got.URL != env {
		t.Errorf("no Clowder: %q", got.URL)
	}
}

func TestClowderBrokerWithoutPort(t *testing.T) {
	doc := `{"metricsPort": 9000, "metricsPath": "/metrics", "logging": {"type": "null"},
		"kafka": {"brokers": [{"hostname": "kafka"}], "topics": []}}`
	if _, err := config.Clowder(writeFile(t, t.TempDir(), "cdappconfig.json", doc)); err == nil {
		t.Error("a broker without a port is not an error")
	}
}

func testdataCA(t *testing.T) *x509.Certificate {
	t.Helper()
	o, err := config.Clowder(cdappconfig)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(o.Kafka(config.Kafka{}).CA))
	if block == nil {
		t.Fatal("no PEM CA in testdata")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// clearEnv unsets, for the test, every variable the overlay test reads.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		for _, prefix := range []string{"ACG_CONFIG", "KAFKA_", "NATS_", "METRICS_", "PRIVATE_PORT", "BIND_HOST", "SOURCES_"} {
			if strings.HasPrefix(name, prefix) {
				t.Setenv(name, "") // restored after the test
				if err := os.Unsetenv(name); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

func same(t *testing.T, a, b any) bool {
	t.Helper()
	return reflect.DeepEqual(a, b)
}
