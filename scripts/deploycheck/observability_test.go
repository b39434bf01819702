package deploycheck

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	listenerapp "github.com/cloudoreg/cloudoreg/listener/app"
	processorapp "github.com/cloudoreg/cloudoreg/processor/app"
)

// externalMetrics are the metrics of others (kube-state-metrics) that the
// rules may name.
var externalMetrics = map[string]bool{"kube_pod_status_ready": true}

// The PromQL words that are not metric names.
var promQLWords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true,
}

var (
	promString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promMatchers = regexp.MustCompile(`\{[^}]*\}`)
	promRange    = regexp.MustCompile(`\[[^\]]*\]`)
	promGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
)

// metricNames extracts the metric names of a PromQL expression: what
// remains an identifier once strings, label matchers, ranges and grouping
// label lists are gone, and is neither a function (followed by "(") nor a
// keyword.
func metricNames(expr string) []string {
	e := promString.ReplaceAllString(expr, `""`)
	e = promMatchers.ReplaceAllString(e, " ")
	e = promRange.ReplaceAllString(e, " ")
	e = promGrouping.ReplaceAllString(e, " ")
	var names []string
	for _, loc := range promIdent.FindAllStringIndex(e, -1) {
		word := e[loc[0]:loc[1]]
		rest := strings.TrimLeft(e[loc[1]:], " \t\n")
		if promQLWords[strings.ToLower(word)] || strings.HasPrefix(rest, "(") || isNumberSuffix(e, loc[0]) {
			continue
		}
		names = append(names, word)
	}
	return names
}

// isNumberSuffix: the "e" of 1e3 or the letters of a duration after a digit.
func isNumberSuffix(e string, at int) bool {
	return at > 0 && e[at-1] >= '0' && e[at-1] <= '9'
}

func TestMetricNamesExtractor(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum(rate(a_total{x="b_c", y=~"d|e"}[5m])) by (le, f) > 1e3`:                 {"a_total"},
		`histogram_quantile(0.99, sum by (le, target) (rate(h_seconds_bucket[5m])))`: {"h_seconds_bucket"},
		`max(g) > 0 and on(pod) k == 0 or deriv(sum(l)[30m:1m]) > 0 unless bool m`:   {"g", "k", "l", "m"},
		`sum(increase(w_total{code="CG3000 or sum"}[1h])) offset 5m`:                 {"w_total"},
	} {
		if got := metricNames(expr); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", expr, got, want)
		}
	}
}

// programFamilies are the metric names the programs expose (a histogram
// family also as its _bucket, _sum and _count series).
func programFamilies() map[string]bool {
	out := map[string]bool{}
	for _, f := range append(listenerapp.MetricFamilies(), processorapp.MetricFamilies()...) {
		out[f] = true
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			out[f+s] = true
		}
	}
	return out
}

// readmeAnchors are the GitHub anchors of README.md's headings.
func readmeAnchors(t *testing.T) map[string]bool {
	anchors := map[string]bool{}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	for _, line := range strings.Split(readFile(t, "README.md"), "\n") {
		if h, ok := strings.CutPrefix(line, "#"); ok {
			h = strings.TrimSpace(strings.TrimLeft(h, "#"))
			anchors[strings.ReplaceAll(drop.ReplaceAllString(strings.ToLower(h), ""), " ", "-")] = true
		}
	}
	return anchors
}

// TestAlertsNameRealMetrics: every alert of deploy/prometheusrule.yaml
// names only metrics the programs expose, has a severity and a summary,
// and a runbook_url that is a section of the README.
func TestAlertsNameRealMetrics(t *testing.T) {
	have, anchors := programFamilies(), readmeAnchors(t)
	doc := loadYAML(t, "deploy/prometheusrule.yaml")
	if str(get(doc, "kind")) != "PrometheusRule" {
		t.Fatalf("deploy/prometheusrule.yaml is a %v", get(doc, "kind"))
	}
	var alerts []string
	for _, g := range asList(get(doc, "spec", "groups")) {
		for _, r := range asList(get(g, "rules")) {
			name, expr := str(get(r, "alert")), str(get(r, "expr"))
			alerts = append(alerts, name)
			checkExpr(t, "alert "+name, expr, have)
			if str(get(r, "labels", "severity")) == "" || str(get(r, "annotations", "summary")) == "" {
				t.Errorf("alert %s: no severity or summary", name)
			}
			url := str(get(r, "annotations", "runbook_url"))
			_, anchor, ok := strings.Cut(url, "README.md#")
			if !ok || !strings.HasPrefix(anchor, "runbook-") || !anchors[anchor] {
				t.Errorf("alert %s: runbook_url %q is not a runbook section of README.md", name, url)
			}
		}
	}
	// The alerts the README promises.
	for _, want := range []string{"CloudoregConsumerLagGrowing", "CloudoregDeadLettersWaiting", "CloudoregParkedRetriesOld",
		"CloudoregCG3000Reported", "CloudoregProcessorsNotReady", "CloudoregListenerNotConsuming", "CloudoregNATSDisconnected"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s", want)
		}
	}
}

func checkExpr(t *testing.T, where, expr string, have map[string]bool) {
	t.Helper()
	names := metricNames(expr)
	if len(names) == 0 {
		t.Errorf("%s: no metric in %q", where, expr)
	}
	for _, n := range names {
		if !have[n] && !externalMetrics[n] {
			t.Errorf("%s: %q names %s, which no program exposes", where, expr, n)
		}
	}
}

// TestDashboardNamesRealMetrics: the dashboard ConfigMap holds Grafana
// JSON whose every query names only metrics the programs expose, and it
// shows what the README says it shows.
func TestDashboardNamesRealMetrics(t *testing.T) {
	have := programFamilies()
	doc := loadYAML(t, "deploy/dashboard.yaml")
	if str(get(doc, "kind")) != "ConfigMap" || str(get(doc, "metadata", "labels", "grafana_dashboard")) != "true" {
		t.Fatal("deploy/dashboard.yaml is not a ConfigMap labelled grafana_dashboard")
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(str(get(doc, "data", "cloudoreg.json"))), &dash); err != nil {
		t.Fatalf("the dashboard JSON: %v", err)
	}
	var shown []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			checkExpr(t, "panel "+p.Title, q.Expr, have)
			shown = append(shown, metricNames(q.Expr)...)
		}
	}
	for _, want := range []string{"cloudoreg_listener_events_total", "cloudoreg_processor_work_total", "cloudoreg_processor_work_seconds_bucket",
		"cloudoreg_processor_external_call_errors_total", "cloudoreg_listener_consumer_lag", "cloudoreg_processor_work_pending",
		"cloudoreg_processor_dead_letters_waiting", "cloudoreg_processor_parked_retries"} {
		if !slices.Contains(shown, want) {
			t.Errorf("the dashboard does not show %s", want)
		}
	}
}
