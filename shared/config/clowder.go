package config

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	clowder "github.com/redhatinsights/app-common-go/pkg/api/v1"
)

// PodBindHost is the interface the HTTP ports listen on in a pod.
const PodBindHost = "0.0.0.0"

// Overlay is what Clowder's cdappconfig.json decides for the pod, as far as
// Cloudoreg uses it: the Kafka cluster and its credentials, the real topic
// names, the HTTP ports and the Sources API's address. The environment
// configuration stays the base: each method takes the value from the
// environment and returns Clowder's when Clowder provides one. A nil
// *Overlay (no Clowder) changes nothing.
type Overlay struct {
	kafka       *Kafka // nil: no kafka section
	topics      map[string]string
	metricsPort int
	metricsPath string
	privatePort int
	cloudWatch  *CloudWatch // nil: no usable logging.cloudwatch section
	sourcesURL  string      // "": Clowder names no sources-api dependency
	tlsCAPath   string      // Clowder's CA of the cluster's TLS service ports
}

// SourcesApp is the ClowdApp whose endpoint is the Sources API.
const SourcesApp = "sources-api"

// ClowderFromEnv loads the cdappconfig.json named by ACG_CONFIG, or returns
// nil when ACG_CONFIG is unset or empty (the local stack). A set but
// unreadable file is an error: a pod must not start on the local defaults.
//
// Note: importing app-common-go runs its package init, which reads ACG_CONFIG
// on its own into package variables (printing an error to stdout if it
// cannot, and panicking on a broker without a port). Cloudoreg ignores those
// variables and reads the file here, explicitly, with errors it can report.
func ClowderFromEnv() (*Overlay, error) {
	path := strings.TrimSpace(os.Getenv("ACG_CONFIG"))
	if path == "" {
		return nil, nil
	}
	return Clowder(path)
}

// Clowder reads the cdappconfig.json at path.
func Clowder(path string) (*Overlay, error) {
	app, err := clowder.LoadConfig(path)
	if err != nil {
		return nil, fmt.Errorf("ACG_CONFIG %s: %w", path, err)
	}
	o := &Overlay{
		topics:      map[string]string{},
		metricsPort: app.MetricsPort,
		metricsPath: app.MetricsPath,
	}
	if app.PrivatePort != nil {
		o.privatePort = *app.PrivatePort
	}
	o.cloudWatch = clowderCloudWatch(app.Logging)
	o.sourcesURL = endpointURL(app.Endpoints, SourcesApp)
	if app.TlsCAPath != nil {
		o.tlsCAPath = strings.TrimSpace(*app.TlsCAPath)
	}
	if app.Kafka != nil {
		for _, t := range app.Kafka.Topics {
			if t.RequestedName != "" && t.Name != "" {
				o.topics[t.RequestedName] = t.Name
			}
		}
		if len(app.Kafka.Brokers) > 0 {
			k, err := clowderKafka(app.Kafka.Brokers)
			if err != nil {
				return nil, fmt.Errorf("ACG_CONFIG %s: %w", path, err)
			}
			o.kafka = &k
		}
	}
	return o, nil
}

// endpointURL is the base URL of the ClowdApp app among Clowder's
// dependency endpoints: https on its TLS port when it has one, else http on
// its port; "" when app is not a dependency (or has no usable port). The
// API path stays the client's: Clowder's apiPath is only the app's name.
func endpointURL(endpoints []clowder.DependencyEndpoint, app string) string {
	for _, e := range endpoints {
		if e.App != app || e.Hostname == "" {
			continue
		}
		switch {
		case e.TlsPort != nil && *e.TlsPort > 0:
			return "https://" + net.JoinHostPort(e.Hostname, strconv.Itoa(*e.TlsPort))
		case e.Port > 0:
			return "http://" + net.JoinHostPort(e.Hostname, strconv.Itoa(e.Port))
		}
	}
	return ""
}

// clowderKafka turns Clowder's brokers into connection settings. Clowder
// repeats the security settings on every broker; the first one that has a
// setting gives it.
func clowderKafka(brokers []clowder.BrokerConfig) (Kafka, error) {
	var k Kafka
	sasl := false
	for _, b := range brokers {
		if b.Port == nil {
			return Kafka{}, fmt.Errorf("kafka broker %q has no port", b.Hostname)
		}
		k.Brokers = append(k.Brokers, net.JoinHostPort(b.Hostname, strconv.Itoa(*b.Port)))
		if b.Authtype != nil && *b.Authtype == clowder.BrokerConfigAuthtypeSasl {
			sasl = true
		}
		first(&k.SecurityProtocol, b.SecurityProtocol)
		first(&k.CA, b.Cacert)
		if b.Sasl != nil {
			first(&k.SecurityProtocol, b.Sasl.SecurityProtocol) // deprecated place
			first(&k.SASLMechanism, b.Sasl.SaslMechanism)
			first(&k.SASLUsername, b.Sasl.Username)
			first(&k.SASLPassword, b.Sasl.Password)
		}
	}
	if k.SecurityProtocol == "" {
		// Clowder always names the protocol with SASL; without it, a CA
		// means TLS and nothing means a plain in-cluster Kafka (Strimzi).
		switch {
		case sasl:
			k.SecurityProtocol = "SASL_SSL"
		case k.CA != "":
			k.SecurityProtocol = "SSL"
		default:
			k.SecurityProtocol = "PLAINTEXT"
		}
	}
	return k, nil
}

func first(dst *string, v *string) {
	if *dst == "" && v != nil {
		*dst = strings.TrimSpace(*v)
	}
}

// Kafka returns env with Clowder's cluster: its brokers and security
// protocol, and the SASL settings and CA it provides (these also replace
// KAFKA_SASL_PASSWORD_FILE and KAFKA_CA_FILE, which would otherwise win).
// What Clowder leaves out (a CA it does not give) stays from the environment.
func (o *Overlay) Kafka(env Kafka) Kafka {
	if o == nil || o.kafka == nil {
		return env
	}
	c := *o.kafka
	env.Brokers = append([]string(nil), c.Brokers...)
	env.SecurityProtocol = c.SecurityProtocol
	if c.SASLMechanism != "" {
		env.SASLMechanism = c.SASLMechanism
	}
	if c.SASLUsername != "" {
		env.SASLUsername = c.SASLUsername
	}
	if c.SASLPassword != "" {
		env.SASLPassword, env.SASLPasswordFile = c.SASLPassword, ""
	}
	if c.CA != "" {
		env.CA, env.CAFile = c.CA, ""
	}
	return env
}

// Topic returns the real name of the topic requested as requested (the
// ClowdApp's kafkaTopics topicName), or requested itself when Clowder does
// not map it.
func (o *Overlay) Topic(requested string) string {
	if o != nil {
		if name, ok := o.topics[requested]; ok {
			return name
		}
	}
	return requested
}

// BindHost returns 0.0.0.0 under Clowder (the ports must be reachable from
// the pod network), else env.
func (o *Overlay) BindHost(env string) string {
	if o == nil {
		return env
	}
	return PodBindHost
}

// MetricsPort returns Clowder's metricsPort, else env.
func (o *Overlay) MetricsPort(env int) int {
	if o == nil || o.metricsPort <= 0 {
		return env
	}
	return o.metricsPort
}

// MetricsPath returns Clowder's metricsPath, else env.
func (o *Overlay) MetricsPath(env string) string {
	if o == nil || o.metricsPath == "" {
		return env
	}
	return o.metricsPath
}

// Sources returns env with the URL of Clowder's sources-api dependency
// endpoint, when the ClowdApp declares that dependency; SOURCES_URL stays
// the fallback.
func (o *Overlay) Sources(env Sources) Sources {
	if o != nil && o.sourcesURL != "" {
		env.URL = o.sourcesURL
		// Clowder's TLS ports carry certificates of the cluster's service
		// CA, which the image's system roots do not hold.
		if strings.HasPrefix(o.sourcesURL, "https://") && o.tlsCAPath != "" {
			env.CAFile = o.tlsCAPath
		}
	}
	return env
}

// PrivatePort returns Clowder's privatePort (the ClowdApp's private web
// service), else env.
func (o *Overlay) PrivatePort(env int) int {
	if o == nil || o.privatePort <= 0 {
		return env
	}
	return o.privatePort
}
