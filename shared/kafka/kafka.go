// Package kafka builds the sarama configuration both programs use, with the
// security settings (TLS, SASL) from config.Kafka.
package kafka

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"

	"github.com/cloudoreg/cloudoreg/shared/config"
)

// Version is the Kafka protocol version Cloudoreg speaks: new enough for
// idempotent producers and consumer-group offset commits, old enough for any
// broker the platform runs.
var Version = sarama.V2_8_0_0

// Config returns a sarama config for clientID with the security settings of k.
func Config(k config.Kafka, clientID string) (*sarama.Config, error) {
	c := sarama.NewConfig()
	c.ClientID = clientID
	c.Version = Version
	proto := strings.ToUpper(strings.TrimSpace(k.SecurityProtocol))
	switch proto {
	case "", "PLAINTEXT":
	case "SSL", "SASL_SSL":
		tc, err := tlsConfig(k.CAPEM())
		if err != nil {
			return nil, err
		}
		c.Net.TLS.Enable = true
		c.Net.TLS.Config = tc
	case "SASL_PLAINTEXT":
	default:
		return nil, fmt.Errorf("KAFKA_SECURITY_PROTOCOL %q is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", k.SecurityProtocol)
	}
	if strings.HasPrefix(proto, "SASL_") {
		if err := setSASL(c, k); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func tlsConfig(caPEM string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if strings.TrimSpace(caPEM) == "" {
		return tc, nil // system roots
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(caPEM)) {
		return nil, errors.New("kafka CA: no PEM certificate found")
	}
	tc.RootCAs = pool
	return tc, nil
}

func setSASL(c *sarama.Config, k config.Kafka) error {
	c.Net.SASL.Enable = true
	c.Net.SASL.Handshake = true
	c.Net.SASL.User = k.SASLUsername
	c.Net.SASL.Password = k.Password()
	switch strings.ToUpper(k.SASLMechanism) {
	case "", "PLAIN":
		c.Net.SASL.Mechanism = sarama.SASLTypePlaintext
	case "SCRAM-SHA-512":
		c.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA512
		c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.HashGeneratorFcn(sha512.New)} }
	case "SCRAM-SHA-256":
		c.Net.SASL.Mechanism = sarama.SASLTypeSCRAMSHA256
		c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &scramClient{hash: scram.HashGeneratorFcn(sha256.New)} }
	default:
		return fmt.Errorf("KAFKA_SASL_MECHANISM %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", k.SASLMechanism)
	}
	return nil
}

// scramClient adapts xdg-go/scram (what sarama's own examples use) to sarama.
type scramClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

func (s *scramClient) Begin(user, pass, authzID string) error {
	c, err := s.hash.NewClient(user, pass, authzID)
	if err != nil {
		return err
	}
	s.conv = c.NewConversation()
	return nil
}

func (s *scramClient) Step(challenge string) (string, error) { return s.conv.Step(challenge) }
func (s *scramClient) Done() bool                            { return s.conv.Done() }
