// Package config holds the settings both programs share (Kafka, NATS,
// Sources, logging, the ops port) and the rules every setting follows:
// environment variables with local-stack defaults, secrets also from files,
// and a summary that never shows a secret.
package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Kafka is how to reach the Kafka cluster.
type Kafka struct {
	Brokers []string `env:"KAFKA_BROKERS" envSeparator:"," envDefault:"127.0.0.1:9092"`
	// SecurityProtocol is PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
	SecurityProtocol string `env:"KAFKA_SECURITY_PROTOCOL" envDefault:"PLAINTEXT"`
	// SASLMechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	SASLMechanism    string `env:"KAFKA_SASL_MECHANISM"`
	SASLUsername     string `env:"KAFKA_SASL_USERNAME"`
	SASLPassword     string `env:"KAFKA_SASL_PASSWORD" secret:"true"`
	SASLPasswordFile string `env:"KAFKA_SASL_PASSWORD_FILE,file" secret:"true"`
	// CA is a PEM bundle to trust for TLS, held in memory (Clowder gives it inline).
	CA     string `env:"KAFKA_CA_PEM"`
	CAFile string `env:"KAFKA_CA_FILE,file"`
}

// Password is the SASL password from the variable or its file.
func (k Kafka) Password() string { return Secret(k.SASLPassword, k.SASLPasswordFile) }

// CAPEM is the CA bundle from the variable or its file.
func (k Kafka) CAPEM() string { return Secret(k.CA, k.CAFile) }

// NATS is how to reach the NATS server. At most one credential kind is used,
// in this order: creds file, nkey seed file, token, user and password.
type NATS struct {
	URL          string `env:"NATS_URL" envDefault:"nats://127.0.0.1:4222"`
	User         string `env:"NATS_USER"`
	Password     string `env:"NATS_PASSWORD" secret:"true"`
	PasswordFile string `env:"NATS_PASSWORD_FILE,file" secret:"true"`
	Token        string `env:"NATS_TOKEN" secret:"true"`
	TokenFile    string `env:"NATS_TOKEN_FILE,file" secret:"true"`
	NKeySeedFile string `env:"NATS_NKEY_SEED_FILE"`
	CredsFile    string `env:"NATS_CREDS_FILE"`
	CAFile       string `env:"NATS_CA_FILE"`
}

// Sources is how to reach the Sources REST API.
type Sources struct {
	URL     string        `env:"SOURCES_URL" envDefault:"http://127.0.0.1:8000"`
	PSK     string        `env:"SOURCES_PSK" envDefault:"cloudoreg-local-psk" secret:"true"`
	PSKFile string        `env:"SOURCES_PSK_FILE,file" secret:"true"`
	Timeout time.Duration `env:"SOURCES_TIMEOUT" envDefault:"10s"`
	// CAFile is a PEM bundle trusted besides the system roots for an https
	// SOURCES_URL (under Clowder: its tlsCAPath, the cluster's service CA).
	CAFile string `env:"SOURCES_CA_FILE"`
}

// Key is the PSK from the variable or its file (the file wins).
func (s Sources) Key() string { return Secret(s.PSK, s.PSKFile) }

// Secret returns the file's content when a file was given, else the value.
// Files win because mounted secrets are how OpenShift hands them over.
func Secret(value, fileContent string) string {
	if f := strings.TrimSpace(fileContent); f != "" {
		return f
	}
	return value
}

// Parse fills cfg (a pointer to a struct of env-tagged fields) from the
// environment.
func Parse(cfg any) error {
	if err := env.Parse(cfg); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	return nil
}
