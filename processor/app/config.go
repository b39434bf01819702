package app

import (
	"errors"
	"net"
	"net/url"
	"time"

	"github.com/cloudoreg/cloudoreg/shared/config"
	"github.com/cloudoreg/cloudoreg/shared/workstream"
)

// Config is the processor's configuration (environment variables).
type Config struct {
	Kafka   config.Kafka
	NATS    config.NATS
	Sources config.Sources
	Log     config.Log
	Work    workstream.StreamSettings

	StatusTopic string `env:"KAFKA_STATUS_TOPIC" envDefault:"platform.sources.status" clowder:"topic"`
	// BindHost is the interface the HTTP ports listen on: loopback for the
	// local stack, 0.0.0.0 in a pod (the deployment template sets it).
	BindHost    string `env:"BIND_HOST" envDefault:"127.0.0.1" clowder:"bindHost"`
	MetricsPort int    `env:"METRICS_PORT" envDefault:"9101" clowder:"metricsPort"`
	MetricsPath string `env:"METRICS_PATH" envDefault:"/metrics" clowder:"metricsPath"`
	PrivatePort int    `env:"PRIVATE_PORT" envDefault:"10000" clowder:"privatePort"`
	// CheckWindow coalesces availability checks of one source.
	CheckWindow time.Duration `env:"AVAILABILITY_CHECK_WINDOW" envDefault:"1m"`

	// STS: an empty endpoint means AWS's own. Credentials empty: the SDK's
	// default chain (web identity, instance role), except against a loopback
	// stand-in, which accepts anything.
	STSEndpoint            string        `env:"STS_ENDPOINT" envDefault:"http://127.0.0.1:8002"`
	AWSRegion              string        `env:"AWS_REGION" envDefault:"us-east-1"`
	AWSAccessKeyID         string        `env:"AWS_ACCESS_KEY_ID"`
	AWSSecretAccessKey     string        `env:"AWS_SECRET_ACCESS_KEY" secret:"true"`
	AWSSecretAccessKeyFile string        `env:"AWS_SECRET_ACCESS_KEY_FILE,file" secret:"true"`
	STSTimeout             time.Duration `env:"STS_TIMEOUT" envDefault:"10s"`

	RHSMURL             string        `env:"RHSM_URL" envDefault:"http://127.0.0.1:8001/management/v1"`
	RHSMAuthHeader      string        `env:"RHSM_AUTH_HEADER"`
	RHSMAuthValue       string        `env:"RHSM_AUTH_VALUE" secret:"true"`
	RHSMAuthValueFile   string        `env:"RHSM_AUTH_VALUE_FILE,file" secret:"true"`
	RHSMBearerToken     string        `env:"RHSM_BEARER_TOKEN" secret:"true"`
	RHSMBearerTokenFile string        `env:"RHSM_BEARER_TOKEN_FILE,file" secret:"true"`
	RHSMCertFile        string        `env:"RHSM_CERT_FILE"`
	RHSMKeyFile         string        `env:"RHSM_KEY_FILE"`
	RHSMCAFile          string        `env:"RHSM_CA_FILE"`
	RHSMTimeout         time.Duration `env:"RHSM_TIMEOUT" envDefault:"10s"`

	AckWait      time.Duration `env:"WORK_ACK_WAIT" envDefault:"30s"`
	MaxDeliver   int           `env:"WORK_MAX_DELIVER" envDefault:"10"`
	RetryInPlace time.Duration `env:"RETRY_IN_PLACE" envDefault:"60s"`
	RetryBase    time.Duration `env:"RETRY_BASE" envDefault:"500ms"`
	RetryMax     time.Duration `env:"RETRY_MAX" envDefault:"15s"`
	RetryBudget  time.Duration `env:"RETRY_BUDGET" envDefault:"1h"`
	ParkBase     time.Duration `env:"RETRY_PARK_BASE" envDefault:"30s"`
	ParkMax      time.Duration `env:"RETRY_PARK_MAX" envDefault:"10m"`
	SweepEvery   time.Duration `env:"RETRY_SWEEP_INTERVAL" envDefault:"5s"`

	// ReconcileEvery: every source holding an account claim is reconciled
	// again at least this often (0: never).
	ReconcileEvery time.Duration `env:"RECONCILE_EVERY" envDefault:"24h"`
	// AdminToken lets operators use every route of the status API
	// (Authorization: Bearer). Empty: admin access is off.
	AdminToken     string `env:"CLOUDOREG_ADMIN_TOKEN" secret:"true"`
	AdminTokenFile string `env:"CLOUDOREG_ADMIN_TOKEN_FILE,file" secret:"true"`
	// BacklogEvery is how often the backlog gauges are refreshed (one
	// JetStream request each, whatever the scrape rate).
	BacklogEvery time.Duration `env:"BACKLOG_INTERVAL" envDefault:"15s"`

	KVReplicas    int           `env:"KV_REPLICAS" envDefault:"1"`
	OutcomeTTL    time.Duration `env:"OUTCOME_TTL" envDefault:"2160h"`
	ShutdownGrace time.Duration `env:"SHUTDOWN_GRACE" envDefault:"20s"`
}

// LoadConfig reads the configuration from the environment, overlaid by
// Clowder's cdappconfig.json when ACG_CONFIG is set (the clowder tags above).
func LoadConfig() (Config, error) {
	var c Config
	err := config.Load(&c)
	return c, err
}

func (c Config) validate() error {
	switch {
	case c.Work.Partitions < 1:
		return errors.New("WORK_PARTITIONS must be at least 1")
	case c.AckWait < time.Second:
		return errors.New("WORK_ACK_WAIT must be at least 1s")
	case c.RetryInPlace <= 0 || c.RetryBudget <= 0:
		return errors.New("RETRY_IN_PLACE and RETRY_BUDGET must be positive")
	case c.SweepEvery <= 0:
		return errors.New("RETRY_SWEEP_INTERVAL must be positive")
	case c.ReconcileEvery < 0:
		return errors.New("RECONCILE_EVERY must not be negative (0 disables it)")
	case c.BacklogEvery <= 0:
		return errors.New("BACKLOG_INTERVAL must be positive")
	}
	return nil
}

// loopback reports whether rawURL points at this machine (the local stack).
func loopback(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	if u.Hostname() == "localhost" {
		return true
	}
	ip := net.ParseIP(u.Hostname())
	return ip != nil && ip.IsLoopback()
}
