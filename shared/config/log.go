package config

import (
	"errors"
	"strings"

	clowder "github.com/redhatinsights/app-common-go/pkg/api/v1"
)

// Log is how to log: the level and format of stdout, and where else log
// entries go (CloudWatch, Glitchtip) when those are configured.
type Log struct {
	Level  string `env:"LOG_LEVEL" envDefault:"info"`
	Format string `env:"LOG_FORMAT" envDefault:"json"` // json or text

	CloudWatch CloudWatch
	Glitchtip  Glitchtip
}

// CloudWatch is the log group every entry is copied to, in a stream named
// after the pod. Under Clowder its logging.cloudwatch section replaces these.
type CloudWatch struct {
	LogGroup        string `env:"CLOUDWATCH_LOG_GROUP"`
	Region          string `env:"CLOUDWATCH_REGION"`
	AccessKeyID     string `env:"CLOUDWATCH_ACCESS_KEY_ID"`
	SecretAccessKey string `env:"CLOUDWATCH_SECRET_ACCESS_KEY" secret:"true"`
	// Endpoint replaces AWS's (a test server, a VPC endpoint); empty: AWS's.
	Endpoint string `env:"CLOUDWATCH_ENDPOINT"`
}

// Enabled reports whether entries go to CloudWatch.
func (c CloudWatch) Enabled() bool { return c.LogGroup != "" }

// Validate refuses a log group without the rest: a half-configured copy
// would fail on every batch, silently for the operator reading stdout.
func (c CloudWatch) Validate() error {
	if !c.Enabled() {
		return nil
	}
	if c.Region == "" || c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return errors.New("CLOUDWATCH_LOG_GROUP is set: CLOUDWATCH_REGION, CLOUDWATCH_ACCESS_KEY_ID and CLOUDWATCH_SECRET_ACCESS_KEY are needed too")
	}
	return nil
}

// Glitchtip is where errors go (a Sentry-compatible DSN, usually mounted
// from an optional Secret) and the environment they are reported under.
type Glitchtip struct {
	DSN     string `env:"GLITCHTIP_DSN" secret:"true"`
	DSNFile string `env:"GLITCHTIP_DSN_FILE,file" secret:"true"`
	EnvName string `env:"ENV_NAME"`
}

// Key is the DSN from the variable or its file (the file wins); empty:
// errors are not reported.
func (g Glitchtip) Key() string { return Secret(g.DSN, g.DSNFile) }

// clowderCloudWatch is the logging.cloudwatch section when it is complete.
// Clowder writes the section with empty values when the environment has no
// CloudWatch (logging type "null"): then the environment's settings stay.
func clowderCloudWatch(l clowder.LoggingConfig) *CloudWatch {
	cw := l.Cloudwatch
	if cw == nil {
		return nil
	}
	c := CloudWatch{
		LogGroup:        strings.TrimSpace(cw.LogGroup),
		Region:          strings.TrimSpace(cw.Region),
		AccessKeyID:     strings.TrimSpace(cw.AccessKeyId),
		SecretAccessKey: strings.TrimSpace(cw.SecretAccessKey),
	}
	if c.LogGroup == "" || c.Region == "" || c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return nil
	}
	return &c
}

// Log returns env with Clowder's CloudWatch log group and credentials when
// Clowder provides them (the endpoint stays the environment's).
func (o *Overlay) Log(env Log) Log {
	if o == nil || o.cloudWatch == nil {
		return env
	}
	endpoint := env.CloudWatch.Endpoint
	env.CloudWatch = *o.cloudWatch
	env.CloudWatch.Endpoint = endpoint
	return env
}
