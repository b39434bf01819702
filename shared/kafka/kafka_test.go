package kafka_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/cloudoreg/cloudoreg/shared/config"
	"github.com/cloudoreg/cloudoreg/shared/kafka"
	"github.com/cloudoreg/cloudoreg/shared/testkit"
)

const topic = "platform.sources.event-stream"

// cluster starts a one-broker kfake cluster on 127.0.0.1, a random port.
func cluster(t *testing.T, opts ...kfake.Opt) []string {
	t.Helper()
	opts = append(opts, kfake.NumBrokers(1), kfake.SeedTopics(1, topic))
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// roundTrip produces a record with a sarama client built from k and
// consumes it back.
func roundTrip(k config.Kafka) error {
	sc, err := kafka.Config(k, "cloudoreg-test")
	if err != nil {
		return err
	}
	// Fail fast on a refused login instead of retrying for a minute.
	sc.Net.DialTimeout = 5 * time.Second
	sc.Metadata.Retry.Max = 1
	sc.Metadata.Retry.Backoff = 50 * time.Millisecond
	sc.Producer.Return.Successes = true
	if err := sc.Validate(); err != nil {
		return err
	}

	producer, err := sarama.NewSyncProducer(k.Brokers, sc)
	if err != nil {
		return fmt.Errorf("producer: %w", err)
	}
	defer producer.Close()
	value := fmt.Sprintf("hello %d", time.Now().UnixNano())
	partition, offset, err := producer.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(value)})
	if err != nil {
		return fmt.Errorf("produce: %w", err)
	}

	consumer, err := sarama.NewConsumer(k.Brokers, sc)
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(topic, partition, offset)
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	defer pc.Close()
	select {
	case m := <-pc.Messages():
		if string(m.Value) != value {
			return fmt.Errorf("consumed %q, want %q", m.Value, value)
		}
		return nil
	case err := <-pc.Errors():
		return fmt.Errorf("consume: %w", err)
	case <-time.After(15 * time.Second):
		return fmt.Errorf("no record consumed")
	}
}

func TestPlainOverSASLPlaintext(t *testing.T) {
	brokers := cluster(t, kfake.EnableSASL(), kfake.Superuser("PLAIN", "cloudoreg", "right-password"))
	k := config.Kafka{
		Brokers:          brokers,
		SecurityProtocol: "SASL_PLAINTEXT",
		SASLMechanism:    "PLAIN",
		SASLUsername:     "cloudoreg",
		SASLPassword:     "right-password",
	}
	if err := roundTrip(k); err != nil {
		t.Fatalf("right password: %v", err)
	}

	k.SASLPassword = "wrong-password"
	if err := roundTrip(k); err == nil {
		t.Error("a wrong password produced and consumed")
	} else {
		t.Logf("refused as expected: %v", err)
	}
	k.SASLPassword, k.SecurityProtocol = "right-password", "PLAINTEXT"
	if err := roundTrip(k); err == nil {
		t.Error("no SASL at all produced and consumed")
	} else {
		t.Logf("refused as expected: %v", err)
	}
}

func TestSCRAMSHA512OverSASLSSL(t *testing.T) {
	p := testkit.NewPKI(t, "kafka")
	brokers := cluster(t, kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "cloudoreg", "right-password"), kfake.TLS(p.ServerTLS()))
	k := config.Kafka{
		Brokers:          brokers,
		SecurityProtocol: "SASL_SSL",
		SASLMechanism:    "SCRAM-SHA-512",
		SASLUsername:     "cloudoreg",
		SASLPassword:     "right-password",
		CA:               p.CAPEM, // how Clowder gives it
	}
	if err := roundTrip(k); err != nil {
		t.Fatalf("right password: %v", err)
	}

	wrong := k
	wrong.SASLPassword = "wrong-password"
	if err := roundTrip(wrong); err == nil {
		t.Error("a wrong password produced and consumed")
	} else {
		t.Logf("refused as expected: %v", err)
	}
	// The password from KAFKA_SASL_PASSWORD_FILE wins over the variable.
	fromFile := wrong
	fromFile.SASLPasswordFile = "right-password\n"
	if err := roundTrip(fromFile); err != nil {
		t.Errorf("password file: %v", err)
	}
}

func TestSSLOnly(t *testing.T) {
	p := testkit.NewPKI(t, "kafka")
	brokers := cluster(t, kfake.TLS(p.ServerTLS()))
	k := config.Kafka{Brokers: brokers, SecurityProtocol: "SSL", CAFile: p.CAPEM} // KAFKA_CA_FILE's content
	if err := roundTrip(k); err != nil {
		t.Fatalf("SSL: %v", err)
	}

	other := testkit.NewPKI(t, "impostor")
	k.CAFile = other.CAPEM
	if err := roundTrip(k); err == nil {
		t.Error("a broker certificate from an untrusted CA was accepted")
	} else {
		t.Logf("refused as expected: %v", err)
	}
	k.CAFile = ""
	if err := roundTrip(k); err == nil {
		t.Error("a test CA was trusted by the system roots")
	} else {
		t.Logf("refused as expected: %v", err)
	}
}

func TestConfigRejectsUnknownSettings(t *testing.T) {
	for _, k := range []config.Kafka{
		{SecurityProtocol: "TLS"},
		{SecurityProtocol: "SASL_SSL", SASLMechanism: "GSSAPI"},
		{SecurityProtocol: "SSL", CA: "not a PEM"},
	} {
		if _, err := kafka.Config(k, "x"); err == nil {
			t.Errorf("%+v accepted", k)
		}
	}
	if c, err := kafka.Config(config.Kafka{SecurityProtocol: "plaintext"}, "x"); err != nil || c.Net.TLS.Enable || c.Net.SASL.Enable {
		t.Errorf("plaintext: TLS %v SASL %v error %v", c.Net.TLS.Enable, c.Net.SASL.Enable, err)
	}
}
