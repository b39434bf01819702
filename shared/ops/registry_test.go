package ops

import (
	"testing"

	"github.com/cloudoreg/cloudoreg/shared/buildinfo"
)

func TestRegistryExportsBuildInfo(t *testing.T) {
	defer func(v, r string) { buildinfo.Version, buildinfo.Revision = v, r }(buildinfo.Version, buildinfo.Revision)
	buildinfo.Version, buildinfo.Revision = "v9.9.9", "f00d"
	families, err := NewRegistry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
		if f.GetName() != "cloudoreg_build_info" {
			continue
		}
		m := f.GetMetric()[0]
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["version"] != "v9.9.9" || labels["revision"] != "f00d" || labels["goversion"] == "" || m.GetGauge().GetValue() != 1 {
			t.Errorf("cloudoreg_build_info = %v %v", labels, m.GetGauge().GetValue())
		}
	}
	for _, want := range []string{"cloudoreg_build_info", "go_goroutines", "process_start_time_seconds", "cloudoreg_log_entries_dropped_total"} {
		if !names[want] {
			t.Errorf("%s is not exported", want)
		}
	}
}
