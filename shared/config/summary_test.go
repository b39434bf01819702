package config_test

import (
	"strings"
	"testing"

	"github.com/cloudoreg/cloudoreg/shared/config"
)

// urlSettings has a setting of every shape a URL comes in.
type urlSettings struct {
	NATS     config.NATS
	Sources  config.Sources
	Kafka    config.Kafka
	RHSM     string   `env:"RHSM_URL"`
	STS      string   `env:"STS_ENDPOINT"`
	Callback string   `env:"CALLBACK"`
	Mirrors  []string `env:"MIRRORS"`
}

// TestSummaryMasksURLUserinfo: no user or password inside a URL reaches
// the summary, whatever the scheme, the characters of the password or the
// number of URLs in the setting; hosts, ports and paths stay readable.
func TestSummaryMasksURLUserinfo(t *testing.T) {
	const secret = "pw-SECRET-9a7c"
	passwords := []string{secret, secret + "%40x", secret + "@with@ats", secret + "/sl#ash?q", secret + ":colon", secret + " space"}
	for _, pw := range passwords {
		c := urlSettings{
			NATS:     config.NATS{URL: "nats://cloudoreg:" + pw + "@nats-0:4222,nats://cloudoreg:" + pw + "@nats-1:4222, tls://" + pw + "@nats-2:4222"},
			Sources:  config.Sources{URL: "http://sources:" + pw + "@sources-api:8000/api"},
			Kafka:    config.Kafka{Brokers: []string{"broker-0:9092", "broker-1:9092"}},
			RHSM:     "https://svc:" + pw + "@rhsm.example.com/management/v1",
			STS:      "user:" + pw + "@sts.local:8002",
			Callback: "https://u:" + pw + "@hooks.example.com/cb",
			Mirrors:  []string{"http://a:" + pw + "@m1", "http://m2"},
		}
		sum := config.Summary(c)
		for k, v := range sum {
			if s := v.(string); strings.Contains(s, secret) || strings.Contains(s, "cloudoreg:") || strings.Contains(s, "svc:") {
				t.Errorf("password %q: %s shows %q", pw, k, s)
			}
		}
		want := map[string]string{
			"NATS_URL":      "nats://(userinfo)@nats-0:4222,nats://(userinfo)@nats-1:4222, tls://(userinfo)@nats-2:4222",
			"SOURCES_URL":   "http://(userinfo)@sources-api:8000/api",
			"KAFKA_BROKERS": "[broker-0:9092 broker-1:9092]",
			"RHSM_URL":      "https://(userinfo)@rhsm.example.com/management/v1",
			"STS_ENDPOINT":  "(userinfo)@sts.local:8002",
			"CALLBACK":      "https://(userinfo)@hooks.example.com/cb",
			"MIRRORS":       "[http://(userinfo)@m1 http://m2]",
		}
		for k, w := range want {
			if sum[k] != w {
				t.Errorf("password %q: %s = %q, want %q", pw, k, sum[k], w)
			}
		}
	}
}

// URLs without user information, and values that are no URL, are shown as
// they are.
func TestSummaryKeepsOtherValues(t *testing.T) {
	c := urlSettings{
		NATS:     config.NATS{URL: "nats://127.0.0.1:4222", User: "cloudoreg"},
		Sources:  config.Sources{URL: "http://sources-api:8000"},
		Kafka:    config.Kafka{SASLUsername: "svc@realm", Brokers: []string{"b:9092"}},
		Callback: "not a url @ all",
	}
	sum := config.Summary(c)
	for k, w := range map[string]string{
		"NATS_URL": "nats://127.0.0.1:4222", "NATS_USER": "cloudoreg", "SOURCES_URL": "http://sources-api:8000",
		"KAFKA_SASL_USERNAME": "svc@realm", "CALLBACK": "not a url @ all",
	} {
		if sum[k] != w {
			t.Errorf("%s = %q, want %q", k, sum[k], w)
		}
	}
}
