package deploycheck

import (
	"slices"
	"testing"
)

// TestProcessorIngressIsRestricted: a NetworkPolicy of the ClowdApp template
// selects the processor pods (Clowder labels them pod=<app>-<deployment>)
// and admits the private port (the availability check) only from Sources'
// namespace and the metrics port only from the monitoring namespace, both
// template parameters; no rule admits anything else.
func TestProcessorIngressIsRestricted(t *testing.T) {
	tp := loadTemplate(t, clowdappFile)
	want := map[string]string{"private": "${SOURCES_NAMESPACE}", "metrics": "${MONITORING_NAMESPACE}"}
	got := map[string][]string{}
	selected := false
	for _, np := range tp.objects("NetworkPolicy") {
		if str(get(np, "spec", "podSelector", "matchLabels", "pod")) != "cloudoreg-processor" {
			continue
		}
		selected = true
		if types := asList(get(np, "spec", "policyTypes")); !slices.Contains(types, any("Ingress")) {
			t.Errorf("%s: the processors' NetworkPolicy does not restrict ingress (policyTypes %v)", clowdappFile, types)
		}
		for i, rule := range asList(get(np, "spec", "ingress")) {
			ports := asList(get(rule, "ports"))
			froms := asList(get(rule, "from"))
			if len(ports) == 0 || len(froms) == 0 {
				t.Errorf("%s: ingress rule %d admits every port or every peer", clowdappFile, i)
			}
			for _, from := range froms {
				ns := str(get(from, "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name"))
				if ns == "" || get(from, "podSelector") != nil || get(from, "ipBlock") != nil {
					t.Errorf("%s: ingress rule %d admits %v, not one namespace", clowdappFile, i, from)
				}
				for _, p := range ports {
					got[str(get(p, "port"))] = append(got[str(get(p, "port"))], ns)
				}
			}
		}
	}
	if !selected {
		t.Fatalf("%s: no NetworkPolicy selects the processor pods (pod: cloudoreg-processor)", clowdappFile)
	}
	for port, ns := range want {
		if !slices.Equal(got[port], []string{ns}) {
			t.Errorf("%s: port %s is admitted from %v; want only %s", clowdappFile, port, got[port], ns)
		}
	}
	for port := range got {
		if _, ok := want[port]; !ok {
			t.Errorf("%s: port %s of the processors is admitted too", clowdappFile, port)
		}
	}
}
