package deploycheck

import (
	"os/exec"
	"strings"
	"testing"
)

// corePackages are the domain: events, tenants, statuses and their texts, the
// failure taxonomy, the work message, Sources' values, the ARN, the routing
// verdict and the reconcile rules with their ports. README.md, "Layout",
// names them; everything else is an adapter around them.
var corePackages = []string{
	"./shared/event",
	"./shared/status",
	"./shared/failure",
	"./shared/work",
	"./shared/sources",
	"./processor/internal/arn",
	"./processor/internal/reconcile",
	"./listener/internal/route",
}

// identityLibrary is the one library the core may use besides the standard
// library: it decodes x-rh-identity. (It imports net/http for its
// middleware, which the core never calls.)
const identityLibrary = "github.com/redhatinsights/platform-go-middlewares/v2/identity"

// transports may be reached by no core package, directly or not, but for
// net/http through the identity library.
var transports = []string{"github.com/IBM/sarama", "github.com/nats-io/", "github.com/aws/", "net/http"}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = repoRoot(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, out)
	}
	return strings.Fields(string(out))
}

// TestCoreImportsNoTransport: the core's dependencies are the standard
// library, the identity library (and what it needs) and other core
// packages, and no core package imports a transport itself (net/http is
// reached only through the identity library).
func TestCoreImportsNoTransport(t *testing.T) {
	allowed := map[string]bool{}
	for _, d := range goList(t, "-deps", identityLibrary) {
		allowed[d] = true
	}
	core := map[string]bool{}
	for _, p := range goList(t, corePackages...) {
		core[p] = true
	}
	for _, pkg := range corePackages {
		for _, imp := range goList(t, "-f", `{{join .Imports " "}}`, pkg) {
			for _, tr := range transports {
				if strings.HasPrefix(imp, tr) {
					t.Errorf("core package %s imports %s", pkg, imp)
				}
			}
		}
		std := map[string]bool{}
		for _, line := range goList(t, "-deps", "-f", `{{if .Standard}}{{.ImportPath}}{{end}}`, pkg) {
			std[line] = true
		}
		for _, dep := range goList(t, "-deps", pkg) {
			switch {
			case std[dep], allowed[dep], core[dep]:
			case strings.HasPrefix(dep, "github.com/cloudoreg/"):
				t.Errorf("core package %s depends on %s, which is not core (an adapter)", pkg, dep)
			default:
				t.Errorf("core package %s depends on %s: the core uses only the standard library and %s", pkg, dep, identityLibrary)
			}
		}
	}
}
