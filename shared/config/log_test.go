package config_test

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/cloudoreg/cloudoreg/shared/config"
)

// Clowder's logging.cloudwatch replaces the environment's CloudWatch
// settings only when it is complete: Clowder writes the section with empty
// values where the environment has no CloudWatch.
func TestClowderCloudWatch(t *testing.T) {
	env := config.Log{Level: "info", CloudWatch: config.CloudWatch{LogGroup: "from-env", Region: "eu-west-1", AccessKeyID: "ENVKEY", SecretAccessKey: "env-secret", Endpoint: "http://127.0.0.1:4566"}}
	full := map[string]string{"accessKeyId": "AKIACLOWDER", "secretAccessKey": "clowder-secret", "region": "us-east-1", "logGroup": "cloudoreg-stage"}
	for name, c := range map[string]struct {
		section map[string]string
		want    config.CloudWatch
	}{
		"complete":          {full, config.CloudWatch{LogGroup: "cloudoreg-stage", Region: "us-east-1", AccessKeyID: "AKIACLOWDER", SecretAccessKey: "clowder-secret", Endpoint: "http://127.0.0.1:4566"}},
		"empty (type null)": {map[string]string{"accessKeyId": "", "secretAccessKey": "", "region": "", "logGroup": ""}, env.CloudWatch},
		"no secret key":     {without(full, "secretAccessKey"), env.CloudWatch},
		"no log group":      {without(full, "logGroup"), env.CloudWatch},
		"no region":         {without(full, "region"), env.CloudWatch},
		"no access key":     {without(full, "accessKeyId"), env.CloudWatch},
	} {
		t.Run(name, func(t *testing.T) {
			o, err := config.Clowder(cdappconfigWith(t, map[string]any{"type": "cloudwatch", "cloudwatch": c.section}))
			if err != nil {
				t.Fatal(err)
			}
			if got := o.Log(env).CloudWatch; got != c.want {
				t.Errorf("got %+v, want %+v", got, c.want)
			}
		})
	}
	var none *config.Overlay
	if got := none.Log(env); got != env {
		t.Errorf("without Clowder: %+v", got)
	}
}

// without is m with key empty (the schema requires every key).
func without(m map[string]string, key string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	out[key] = ""
	return out
}

// cdappconfigWith is testdata/cdappconfig.json with another logging section.
func cdappconfigWith(t *testing.T, logging map[string]any) string {
	t.Helper()
	b, err := os.ReadFile(cdappconfig)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	doc["logging"] = logging
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, t.TempDir(), "cdappconfig.json", string(out))
}
