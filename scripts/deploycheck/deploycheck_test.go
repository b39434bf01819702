// Package deploycheck checks the deployment files (docker-compose.yml,
// deploy/clowdapp.yaml, deploy/nats/template.yaml, deploy/Dockerfile.*)
// against the code: every variable they set is one the program reads (found
// by reflection over the env tags of the configuration structs), ports and
// topics match the programs' defaults or the overrides, the listener runs
// alone, probes point at /healthz and /readyz, the Dockerfiles build packages
// that exist, and no secret is inlined.
package deploycheck

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/cloudoreg/cloudoreg/shared/config"
	"github.com/cloudoreg/cloudoreg/shared/testkit"
)

const (
	clowdappFile = "deploy/clowdapp.yaml"
	natsFile     = "deploy/nats/template.yaml"
	composeFile  = "docker-compose.yml"
)

// Variables Clowder's cdappconfig.json decides (the programs overlay it when
// ACG_CONFIG is set): setting them in the ClowdApp would only mislead.
var clowderManaged = []string{
	"KAFKA_BROKERS", "KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME",
	"KAFKA_SASL_PASSWORD", "KAFKA_SASL_PASSWORD_FILE", "KAFKA_CA_PEM", "KAFKA_CA_FILE",
	"KAFKA_EVENTS_TOPIC", "KAFKA_STATUS_TOPIC", "METRICS_PORT", "METRICS_PATH", "PRIVATE_PORT",
	"CLOUDWATCH_LOG_GROUP", "CLOUDWATCH_REGION", "CLOUDWATCH_ACCESS_KEY_ID", "CLOUDWATCH_SECRET_ACCESS_KEY",
}

// The reflection must find the configuration, or every other check would
// pass on an empty set.
func TestConfigurationIsFound(t *testing.T) {
	ps := programs(t)
	want := map[string][]string{
		"listener":  {"KAFKA_BROKERS", "KAFKA_EVENTS_TOPIC", "NATS_URL", "NATS_PASSWORD", "SOURCES_PSK", "METRICS_PORT", "BIND_HOST", "KV_REPLICAS", "LOG_FORMAT"},
		"processor": {"KAFKA_STATUS_TOPIC", "WORK_REPLICAS", "WORK_PARTITIONS", "STS_ENDPOINT", "RHSM_URL", "AWS_SECRET_ACCESS_KEY_FILE", "PRIVATE_PORT", "METRICS_PORT"},
		"stack":     {"SOURCES_PORT", "RHSM_PORT", "STS_PORT", "KAFKA_EVENTS_TOPIC", "SOURCES_AVAILABILITY_CHECK_URL", "LOG_FORMAT"},
	}
	for prog, names := range want {
		for _, n := range names {
			if !ps[prog].reads(n) {
				t.Errorf("reflection over %s did not find %s: the checks of this package would be meaningless", ps[prog].Config, n)
			}
		}
	}
	secrets := secretVars(ps)
	for _, n := range []string{"SOURCES_PSK", "SOURCES_PSK_FILE", "NATS_PASSWORD", "AWS_SECRET_ACCESS_KEY", "RHSM_BEARER_TOKEN", "KAFKA_SASL_PASSWORD"} {
		if _, ok := secrets[n]; !ok {
			t.Errorf("%s is not tagged secret:\"true\" in the configuration; the secret checks rely on the tag", n)
		}
	}
	if !secrets["AWS_SECRET_ACCESS_KEY_FILE"].File {
		t.Errorf("AWS_SECRET_ACCESS_KEY_FILE is not read with the env ,file option")
	}
}

// ---------------------------------------------------------------------------
// Dockerfiles

func TestDockerfiles(t *testing.T) {
	ps := programs(t)
	goVersion, _ := workspace(t)
	minor := strings.Join(strings.SplitN(goVersion, ".", 3)[:2], ".")
	for _, name := range []string{"listener", "processor", "stack"} {
		p := ps[name]
		rel := "deploy/Dockerfile." + name
		t.Run(name, func(t *testing.T) {
			if !exists(t, rel) {
				t.Fatalf("%s does not exist", rel)
			}
			stages := parseDockerfile(t, rel)
			if len(stages) < 2 {
				t.Fatalf("%s: want a multi-stage build (UBI Go toolset build stage, UBI micro/minimal final stage), got %d stage(s)", rel, len(stages))
			}
			build, final := stages[0], stages[len(stages)-1]
			if !regexp.MustCompile(`^registry\.access\.redhat\.com/ubi9/go-toolset:` + regexp.QuoteMeta(minor) + `($|[.-])`).MatchString(build.From) {
				t.Errorf("%s: build stage FROM %s; want registry.access.redhat.com/ubi9/go-toolset:%s (go.work says go %s)", rel, build.From, minor, goVersion)
			}
			checkBuildStage(t, rel, build, p)
			checkFinalStage(t, rel, final, build, p)
		})
	}
}

// moduleOf is the workspace module that holds the ./package pkg.
func moduleOf(pkg string) string {
	first, _, _ := strings.Cut(strings.TrimPrefix(pkg, "./"), "/")
	return first
}

// replacedModules are the workspace modules that module's go.mod replaces
// with a local directory: what its own build needs besides itself.
func replacedModules(t *testing.T, module string) []string {
	t.Helper()
	var out []string
	for _, m := range regexp.MustCompile(`=>\s*\.\./([a-z]+)`).FindAllStringSubmatch(readFile(t, module+"/go.mod"), -1) {
		out = append(out, m[1])
	}
	return out
}

// checkBuildStage: the program is built from its own module alone (GOWORK
// off, only its module and the ones it replaces copied), statically, with
// the version and revision stamped.
func checkBuildStage(t *testing.T, rel string, build stage, p *program) {
	t.Helper()
	module := moduleOf(p.Cmd)
	needed := append([]string{module}, replacedModules(t, module)...)
	copied := map[string]int{} // source -> line
	firstRun, workdir, env := 0, "", ""
	var buildLine *instruction
	for i, in := range build.Instr {
		switch in.Cmd {
		case "COPY", "ADD":
			flags, srcs, _ := copyArgs(in.Args)
			if flags["from"] != "" {
				continue
			}
			for _, src := range srcs {
				copied[filepath.Clean(src)] = in.Line
				if !exists(t, src) {
					t.Errorf("%s:%d: COPY %s: no such file in the build context (the repository root)", rel, in.Line, src)
				}
			}
		case "ENV":
			env += " " + in.Args
		case "WORKDIR":
			workdir = in.Args
		case "RUN":
			if firstRun == 0 {
				firstRun = in.Line
			}
			if strings.Contains(in.Args, "go build") {
				buildLine = &build.Instr[i]
			}
		}
		if buildLine != nil {
			break // what follows the build does not matter
		}
	}
	for _, f := range []string{".", "go.work", "go.work.sum"} {
		if line, ok := copied[f]; ok {
			t.Errorf("%s:%d: COPY %s: the image must build %s's module alone, not the workspace", rel, line, f, module)
		}
	}
	for _, m := range needed {
		for _, f := range []string{"go.mod", "go.sum"} {
			if line, ok := copied[filepath.Join(m, f)]; !ok || line > firstRun {
				t.Errorf("%s: COPY %s/%s before the first RUN (the module download of %s needs %v)", rel, m, f, module, needed)
			}
		}
		if _, ok := copied[m]; !ok {
			t.Errorf("%s: %s/ is never copied (%s needs %v)", rel, m, module, needed)
		}
	}
	if buildLine == nil {
		t.Fatalf("%s: no RUN ... go build in the build stage", rel)
	}
	args := buildLine.Args
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "GOWORK=off",
		"-X github.com/cloudoreg/cloudoreg/shared/buildinfo.Version=", "-X github.com/cloudoreg/cloudoreg/shared/buildinfo.Revision="} {
		if !strings.Contains(args, want) && !strings.Contains(env, want) {
			t.Errorf("%s:%d: go build without %s (want a static, reproducible, stamped binary of one module)", rel, buildLine.Line, want)
		}
	}
	if !strings.HasSuffix(strings.TrimRight(workdir, "/"), "/"+module) {
		t.Errorf("%s:%d: go build runs in WORKDIR %q; want the module directory .../%s", rel, buildLine.Line, workdir, module)
	}
	var pkgs []string
	for _, f := range strings.Fields(args) {
		if strings.HasPrefix(f, "./") {
			pkgs = append(pkgs, "./"+module+"/"+strings.TrimPrefix(strings.TrimSuffix(f, "/"), "./"))
		}
	}
	if len(pkgs) == 0 {
		t.Errorf("%s:%d: go build names no ./package", rel, buildLine.Line)
	}
	for _, pkg := range pkgs {
		if !isMainPackage(t, pkg) {
			t.Errorf("%s:%d: go build %s: no main package there", rel, buildLine.Line, pkg)
		}
	}
	if !slices.Contains(pkgs, p.Cmd) {
		t.Errorf("%s:%d: go build %v; want the %s (%s)", rel, buildLine.Line, pkgs, p.Name, p.Cmd)
	}
}

// The programs build outside the workspace, from their own modules, as the
// images build them.
func TestProgramsBuildFromTheirOwnModule(t *testing.T) {
	for name, p := range programs(t) {
		module := moduleOf(p.Cmd)
		cmd := exec.Command("go", "build", "-o", filepath.Join(t.TempDir(), name), "./"+strings.TrimPrefix(strings.TrimPrefix(p.Cmd, "./"), module+"/"))
		cmd.Dir = filepath.Join(repoRoot(t), module)
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: GOWORK=off go build in %s/: %v\n%s", name, module, err, out)
		}
	}
}

func checkFinalStage(t *testing.T, rel string, final, build stage, p *program) {
	t.Helper()
	if !regexp.MustCompile(`^registry\.access\.redhat\.com/ubi9/ubi-(micro|minimal):[0-9]+\.[0-9]+`).MatchString(final.From) {
		t.Errorf("%s: final stage FROM %s; want registry.access.redhat.com/ubi9/ubi-micro (or ubi-minimal) at a pinned X.Y tag", rel, final.From)
	}
	user := ""
	dests := map[string]bool{}
	exposed := map[int]bool{}
	var entry string
	for _, in := range final.Instr {
		switch in.Cmd {
		case "USER":
			user = in.Args
		case "COPY", "ADD":
			flags, srcs, dst := copyArgs(in.Args)
			for _, src := range srcs {
				d := dst
				if strings.HasSuffix(dst, "/") {
					d = dst + filepath.Base(src)
				}
				dests[d] = true
				if flags["from"] == "" && !exists(t, src) {
					t.Errorf("%s:%d: COPY %s: no such file in the build context", rel, in.Line, src)
				}
				if flags["from"] != "" && flags["from"] != build.Name {
					t.Errorf("%s:%d: COPY --from=%s; the build stage is %q", rel, in.Line, flags["from"], build.Name)
				}
			}
		case "EXPOSE":
			for _, f := range strings.Fields(in.Args) {
				n, err := strconv.Atoi(strings.TrimSuffix(f, "/tcp"))
				if err != nil {
					t.Errorf("%s:%d: EXPOSE %s is not a port", rel, in.Line, f)
				}
				exposed[n] = true
			}
		case "ENV":
			for name, val := range dockerEnv(in.Args) {
				if !p.reads(name) {
					t.Errorf("%s:%d: ENV %s, which the %s does not read (no env tag in %s)", rel, in.Line, name, p.Name, p.Config)
				}
				if strings.HasPrefix(val, "/") && !dests[val] {
					t.Errorf("%s:%d: ENV %s=%s, but no COPY before it puts a file there", rel, in.Line, name, val)
				}
			}
		case "ENTRYPOINT", "CMD":
			entry = in.Args
		}
	}
	if user == "" && !strings.HasSuffix(final.From, ":nonroot") {
		t.Errorf("%s: the final stage runs as root: add USER (non-root) or use a :nonroot image", rel)
	}
	if u, _, _ := strings.Cut(user, ":"); u == "0" || u == "root" {
		t.Errorf("%s: USER %s; the final stage must not run as root", rel, user)
	}
	if entry == "" {
		t.Errorf("%s: no ENTRYPOINT in the final stage", rel)
	} else {
		binary := ""
		if f := regexp.MustCompile(`"([^"]+)"`).FindStringSubmatch(entry); f != nil {
			binary = f[1]
		} else {
			binary = strings.Fields(entry)[0]
		}
		if !dests[binary] {
			t.Errorf("%s: ENTRYPOINT runs %s, which no COPY of the final stage provides", rel, binary)
		}
	}
	want := p.ports(t, nil)
	for port := range want {
		if !exposed[port] {
			t.Errorf("%s: EXPOSE lacks %d (%s of the %s)", rel, port, want[port], p.Name)
		}
	}
	for port := range exposed {
		if _, ok := want[port]; !ok {
			t.Errorf("%s: EXPOSE %d, which is no default port of the %s (%v)", rel, port, p.Name, p.portVars())
		}
	}
}

// dockerEnv reads ENV key=value pairs (and the old ENV key value form).
func dockerEnv(args string) map[string]string {
	out := map[string]string{}
	if !strings.Contains(strings.Fields(args)[0], "=") {
		k, v, _ := strings.Cut(args, " ")
		out[k] = strings.TrimSpace(v)
		return out
	}
	for _, f := range strings.Fields(args) {
		k, v, _ := strings.Cut(f, "=")
		out[k] = strings.Trim(v, `"`)
	}
	return out
}

// ---------------------------------------------------------------------------
// docker-compose.yml

func TestComposeServices(t *testing.T) {
	ps := programs(t)
	c := loadCompose(t, ps)
	for _, s := range c.Services {
		if s.Dockerfile != "" && !exists(t, s.Dockerfile) {
			t.Errorf("%s: service %s builds %s, which does not exist", composeFile, s.Name, s.Dockerfile)
		}
		if s.Dockerfile != "" && s.Program == nil {
			t.Errorf("%s: service %s builds %s, which is none of deploy/Dockerfile.{listener,processor,stack}", composeFile, s.Name, s.Dockerfile)
		}
		deps := asMap(s.Raw["depends_on"])
		if deps == nil {
			deps = map[string]any{}
		}
		for _, d := range asList(s.Raw["depends_on"]) {
			deps[str(d)] = nil
		}
		for d, cond := range deps {
			if _, ok := c.Services[d]; !ok {
				t.Errorf("%s: service %s depends on %s, which is not a service", composeFile, s.Name, d)
			}
			if got := str(get(cond, "condition")); got == "service_healthy" && c.Services[d] != nil && c.Services[d].Raw["healthcheck"] == nil {
				t.Errorf("%s: service %s waits for %s to be healthy, but %s has no healthcheck", composeFile, s.Name, d, d)
			}
		}
	}
	for prog, want := range map[string]string{"listener": "exactly 1", "processor": "at least 2", "stack": "exactly 1"} {
		n := len(c.programServices(prog))
		ok := n == 1
		if prog == "processor" {
			ok = n >= 2
		}
		if !ok {
			t.Errorf("%s: %d service(s) built from deploy/Dockerfile.%s; want %s", composeFile, n, prog, want)
		}
	}
	// Programs stop gracefully: compose's default of 10s would kill them
	// before SHUTDOWN_GRACE is over.
	for _, prog := range []string{"listener", "processor"} {
		for _, s := range c.programServices(prog) {
			grace, err := time.ParseDuration(s.Program.value(s.Env, "SHUTDOWN_GRACE"))
			if err != nil {
				t.Fatalf("SHUTDOWN_GRACE: %v", err)
			}
			stop, err := time.ParseDuration(str(s.Raw["stop_grace_period"]))
			if err != nil || stop <= grace {
				t.Errorf("%s: service %s: stop_grace_period %q must be longer than SHUTDOWN_GRACE (%s)", composeFile, s.Name, str(s.Raw["stop_grace_period"]), grace)
			}
		}
	}
}

func TestComposeEnvironment(t *testing.T) {
	ps := programs(t)
	c := loadCompose(t, ps)
	secrets := secretVars(ps)
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		if s.Program == nil {
			continue
		}
		for _, v := range sortedKeys(s.Env) {
			switch {
			case s.Program.reads(v):
			default:
				t.Errorf("%s: service %s sets %s, which the %s does not read (no env tag in %s)", composeFile, name, v, s.Program.Name, s.Program.Config)
			}
		}
		for v := range s.EnvNil {
			t.Errorf("%s: service %s passes %s from the host's environment; set a value or leave it out", composeFile, name, v)
		}
		// No secret inline: a secret only through a *_FILE path to a compose secret.
		for _, v := range sortedKeys(s.Env) {
			spec, secret := secrets[v]
			if !secret {
				continue
			}
			if !spec.File {
				t.Errorf("%s: service %s sets the secret %s inline; use %s_FILE with a compose secret", composeFile, name, v, strings.TrimSuffix(v, "_FILE"))
				continue
			}
			secretName, ok := strings.CutPrefix(s.Env[v], "/run/secrets/")
			if !ok {
				t.Errorf("%s: service %s: %s=%q; want /run/secrets/<name> of a compose secret", composeFile, name, v, s.Env[v])
				continue
			}
			if !slices.Contains(s.Secrets, secretName) {
				t.Errorf("%s: service %s: %s points at secret %q, which the service does not mount (secrets: %v)", composeFile, name, v, secretName, s.Secrets)
			}
			def, ok := c.Secrets[secretName]
			if !ok {
				t.Errorf("%s: secret %q is not declared under the top-level secrets", composeFile, secretName)
				continue
			}
			if f := str(def["file"]); f == "" || !exists(t, f) {
				t.Errorf("%s: secret %q: file %q does not exist", composeFile, secretName, f)
			}
		}
		// The HTTP ports must be reachable from the other containers and the host.
		bind := "BIND_HOST"
		if s.Program.Name == "stack" {
			bind = "STACK_BIND_HOST"
		}
		if got := s.Env[bind]; got != "0.0.0.0" {
			t.Errorf("%s: service %s: %s=%q; want 0.0.0.0 (loopback is unreachable from outside the container)", composeFile, name, bind, got)
		}
	}
	// The stack runs the stand-ins only: Kafka and NATS are services of their own.
	for _, s := range c.programServices("stack") {
		for _, v := range []string{"STACK_EXTERNAL_KAFKA", "STACK_EXTERNAL_NATS"} {
			if s.Env[v] != "true" {
				t.Errorf("%s: service %s: %s=%q; want true (Kafka and NATS run as their own services)", composeFile, s.Name, v, s.Env[v])
			}
		}
	}
}

func TestComposeAddresses(t *testing.T) {
	ps := programs(t)
	c := loadCompose(t, ps)
	// The ports README.md documents in its "Local ports" section.
	readme := readFile(t, "README.md")
	_, section, found := strings.Cut(readme, "### Local ports")
	if !found {
		t.Fatal(`README.md has no "### Local ports" section to check the published ports against`)
	}
	if i := strings.Index(section, "\n#"); i >= 0 {
		section = section[:i]
	}
	documented := map[int]bool{}
	for _, m := range regexp.MustCompile(`\b(\d{4,5})\b`).FindAllStringSubmatch(section, -1) {
		documented[atoi(m[1])] = true
	}
	if len(documented) == 0 {
		t.Fatal(`README.md documents no ports in "Local ports"`)
	}

	// What each service listens on inside its container.
	listens := map[string]map[int]string{}
	for name, s := range c.Services {
		switch {
		case s.Program != nil:
			listens[name] = s.Program.ports(t, s.Env)
			if s.Program.Name == "stack" {
				if s.Env["STACK_EXTERNAL_KAFKA"] == "true" {
					delete(listens[name], atoi(s.Program.value(s.Env, "KAFKA_PORT")))
				}
				if s.Env["STACK_EXTERNAL_NATS"] == "true" {
					delete(listens[name], atoi(s.Program.value(s.Env, "NATS_PORT")))
				}
			}
		case strings.Contains(str(s.Raw["image"]), "apache/kafka") && s.Env["KAFKA_LISTENERS"] != "":
			listens[name] = map[int]string{}
			for _, l := range strings.Split(s.Env["KAFKA_LISTENERS"], ",") {
				// NAME://host:port; listener names are not URL schemes.
				listenerName, addr, ok := strings.Cut(strings.TrimSpace(l), "://")
				_, port, err := net.SplitHostPort(addr)
				if !ok || err != nil || atoi(port) == 0 {
					t.Errorf("%s: %s: cannot read KAFKA_LISTENERS entry %q", composeFile, name, l)
					continue
				}
				listens[name][atoi(port)] = "KAFKA_LISTENERS " + listenerName
			}
		case strings.Contains(str(s.Raw["image"]), "nats"):
			listens[name] = map[int]string{4222: "client port"}
			cmd := asList(s.Raw["command"])
			for i, a := range cmd {
				switch str(a) {
				case "-p", "--port", "-port":
					listens[name] = map[int]string{atoi(str(get(cmd, i+1))): "client port"}
				}
			}
			for i, a := range cmd {
				switch str(a) {
				case "-m", "--http_port", "-http_port":
					listens[name][atoi(str(get(cmd, i+1)))] = "monitoring port"
				}
			}
		}
	}

	hostPorts := map[int]string{}
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		for _, pm := range s.Ports {
			if pm.HostIP != "127.0.0.1" {
				t.Errorf("%s: service %s publishes %q on %q; publish on 127.0.0.1 (README.md, Local ports)", composeFile, name, pm.Raw, pm.HostIP)
			}
			if other, dup := hostPorts[pm.Host]; dup {
				t.Errorf("%s: host port %d is published by %s and %s", composeFile, pm.Host, other, name)
			}
			hostPorts[pm.Host] = name
			if !documented[pm.Host] {
				t.Errorf("%s: service %s publishes host port %d, which README.md does not document (Local ports)", composeFile, name, pm.Host)
			}
			if l, known := listens[name]; known {
				if _, ok := l[pm.Container]; !ok {
					t.Errorf("%s: service %s publishes container port %d, but it listens on %v", composeFile, name, pm.Container, l)
				}
			}
		}
	}

	// Addresses one service gives for another point at a port it listens on.
	stackPort := func(portVar string) func(*service) (int, string) {
		return func(target *service) (int, string) {
			if target.Program == nil || target.Program.Name != "stack" {
				return 0, "the stack"
			}
			return atoi(target.Program.value(target.Env, portVar)), "the stack's " + portVar
		}
	}
	urlVars := map[string]func(*service) (int, string){
		"SOURCES_URL":  stackPort("SOURCES_PORT"),
		"RHSM_URL":     stackPort("RHSM_PORT"),
		"STS_ENDPOINT": stackPort("STS_PORT"),
		"SOURCES_AVAILABILITY_CHECK_URL": func(target *service) (int, string) {
			if target.Program == nil || target.Program.Name != "processor" {
				return 0, "a processor"
			}
			return atoi(target.Program.value(target.Env, "PRIVATE_PORT")), "the processor's PRIVATE_PORT"
		},
		"NATS_URL": func(target *service) (int, string) {
			for p, what := range listens[target.Name] {
				if what == "client port" {
					return p, "the NATS client port"
				}
			}
			return 0, "NATS"
		},
	}
	// The paths must be the ones the programs use.
	wantPath := map[string]string{
		"RHSM_URL":                       pathOf(t, ps["processor"].Vars["RHSM_URL"].Default),
		"SOURCES_AVAILABILITY_CHECK_URL": pathOf(t, ps["stack"].Vars["SOURCES_AVAILABILITY_CHECK_URL"].Default),
	}
	for _, name := range sortedKeys(c.Services) {
		s := c.Services[name]
		for _, v := range sortedKeys(s.Env) {
			check, ok := urlVars[v]
			if !ok {
				continue
			}
			u, err := url.Parse(s.Env[v])
			if err != nil || u.Hostname() == "" || u.Port() == "" {
				t.Errorf("%s: service %s: %s=%q; want a URL with a host and a port", composeFile, name, v, s.Env[v])
				continue
			}
			if p, ok := wantPath[v]; ok && u.Path != p {
				t.Errorf("%s: service %s: %s path %q; want %q", composeFile, name, v, u.Path, p)
			}
			targets := c.byHost(u.Hostname())
			if len(targets) == 0 {
				t.Errorf("%s: service %s: %s=%q: no service is called %s", composeFile, name, v, s.Env[v], u.Hostname())
			}
			for _, target := range targets {
				port, what := check(target)
				if port == 0 || strconv.Itoa(port) != u.Port() {
					t.Errorf("%s: service %s: %s=%q reaches %s, which is not %s (port %d)", composeFile, name, v, s.Env[v], target.Name, what, port)
				}
			}
		}
		if brokers, ok := s.Env["KAFKA_BROKERS"]; ok {
			for _, b := range strings.Split(brokers, ",") {
				host, port, err := net.SplitHostPort(strings.TrimSpace(b))
				if err != nil {
					t.Errorf("%s: service %s: KAFKA_BROKERS %q: %v", composeFile, name, b, err)
					continue
				}
				targets := c.byHost(host)
				if len(targets) != 1 {
					t.Errorf("%s: service %s: KAFKA_BROKERS %q: no single service is called %s", composeFile, name, b, host)
					continue
				}
				adv := targets[0].Env["KAFKA_ADVERTISED_LISTENERS"]
				if !strings.Contains(adv, "://"+net.JoinHostPort(host, port)) {
					t.Errorf("%s: service %s: KAFKA_BROKERS %q is not an advertised listener of %s (%s)", composeFile, name, b, targets[0].Name, adv)
				}
			}
		}
	}
}

func TestComposeTopics(t *testing.T) {
	ps := programs(t)
	c := loadCompose(t, ps)
	want := map[string]bool{
		ps["listener"].Vars["KAFKA_EVENTS_TOPIC"].Default:  true,
		ps["processor"].Vars["KAFKA_STATUS_TOPIC"].Default: true,
	}
	for _, v := range []string{"KAFKA_EVENTS_TOPIC", "KAFKA_STATUS_TOPIC"} {
		if d := ps["stack"].Vars[v].Default; !want[d] {
			t.Errorf("the stack's %s default %q differs from the programs' (%v)", v, d, sortedKeys(want))
		}
	}
	created := map[string]bool{}
	topicFlag := regexp.MustCompile(`--topic[ =]+([A-Za-z0-9._-]+)`)
	for _, s := range c.Services {
		var cmd []string
		for _, a := range asList(s.Raw["command"]) {
			cmd = append(cmd, str(a))
		}
		if cmd == nil {
			cmd = []string{str(s.Raw["command"])}
		}
		if !strings.Contains(strings.Join(cmd, " "), "kafka-topics") {
			continue
		}
		for _, m := range topicFlag.FindAllStringSubmatch(strings.Join(cmd, " "), -1) {
			created[m[1]] = true
		}
	}
	for topic := range want {
		if !created[topic] {
			t.Errorf("%s: no kafka-topics --create for %s (the programs' default topic); auto-creation is off", composeFile, topic)
		}
	}
	for topic := range created {
		if !want[topic] {
			t.Errorf("%s: creates topic %s, which no program uses (%v)", composeFile, topic, sortedKeys(want))
		}
	}
	for _, s := range c.Services {
		for _, v := range []string{"KAFKA_EVENTS_TOPIC", "KAFKA_STATUS_TOPIC"} {
			if got, ok := s.Env[v]; ok && !created[got] {
				t.Errorf("%s: service %s: %s=%q, which is not created", composeFile, s.Name, v, got)
			}
		}
	}
}

// quantity reads a Kubernetes storage quantity (10Gi, 500M) in bytes; 0
// when it cannot.
func quantity(q string) int64 {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"", 1}} {
		if n, ok := strings.CutSuffix(q, u.suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			if err != nil {
				continue
			}
			return v * u.mult
		}
	}
	return 0
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func pathOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	return u.Path
}

// ---------------------------------------------------------------------------
// deploy/clowdapp.yaml

type clowdDeployment struct {
	Name    string
	Raw     map[string]any
	Program *program
	Env     []envVar
}

func loadClowdApp(t *testing.T, ps map[string]*program) (*template, map[string]any, map[string]*clowdDeployment) {
	t.Helper()
	tp := loadTemplate(t, clowdappFile)
	apps := tp.objects("ClowdApp")
	if len(apps) != 1 {
		t.Fatalf("%s: %d ClowdApp objects; want 1", clowdappFile, len(apps))
	}
	app := apps[0]
	if got := str(app["apiVersion"]); got != "cloud.redhat.com/v1alpha1" {
		t.Errorf("%s: ClowdApp apiVersion %q; want cloud.redhat.com/v1alpha1", clowdappFile, got)
	}
	if got := str(get(app, "metadata", "name")); got != "cloudoreg" {
		t.Errorf("%s: ClowdApp is named %q; want cloudoreg", clowdappFile, got)
	}
	deps := map[string]*clowdDeployment{}
	for i, d := range asList(get(app, "spec", "deployments")) {
		m := asMap(d)
		name := str(m["name"])
		p := ps[name]
		if p == nil || name == "stack" {
			t.Errorf("%s: deployments[%d] is %q; want listener and processor only", clowdappFile, i, name)
			continue
		}
		deps[name] = &clowdDeployment{
			Name: name, Raw: m, Program: p,
			Env: containerEnv(t, fmt.Sprintf("%s: deployment %s", clowdappFile, name), get(m, "podSpec", "env")),
		}
	}
	for _, want := range []string{"listener", "processor"} {
		if deps[want] == nil {
			t.Fatalf("%s: no deployment named %s", clowdappFile, want)
		}
	}
	return tp, app, deps
}

func TestClowdAppTemplate(t *testing.T) {
	ps := programs(t)
	tp, app, deps := loadClowdApp(t, ps)
	tp.checkParams(t)
	if got := str(get(app, "spec", "envName")); got != "${ENV_NAME}" {
		t.Errorf("%s: spec.envName is %q; want ${ENV_NAME}", clowdappFile, got)
	}
	for _, p := range []string{"IMAGE", "IMAGE_TAG"} {
		for _, d := range deps {
			if img := str(get(d.Raw, "podSpec", "image")); !strings.Contains(img, "${"+p+"}") {
				t.Errorf("%s: deployment %s: image %q does not use the parameter %s", clowdappFile, d.Name, img, p)
			}
		}
	}
	// One image per program (its ENTRYPOINT), or one image and a command.
	li, pi := str(get(deps["listener"].Raw, "podSpec", "image")), str(get(deps["processor"].Raw, "podSpec", "image"))
	if li == pi && (get(deps["listener"].Raw, "podSpec", "command") == nil || get(deps["processor"].Raw, "podSpec", "command") == nil) {
		t.Errorf("%s: listener and processor run the same image %q without a command choosing the program", clowdappFile, li)
	}
}

func TestClowdAppEnvironment(t *testing.T) {
	ps := programs(t)
	tp, _, deps := loadClowdApp(t, ps)
	secrets := secretVars(ps)
	for _, name := range []string{"listener", "processor"} {
		d := deps[name]
		where := fmt.Sprintf("%s: deployment %s", clowdappFile, name)
		set := map[string]envVar{}
		for _, v := range d.Env {
			set[v.Name] = v
			if !d.Program.reads(v.Name) {
				t.Errorf("%s sets %s, which the %s does not read (no env tag in %s)", where, v.Name, name, d.Program.Config)
			}
			if slices.Contains(clowderManaged, v.Name) {
				t.Errorf("%s sets %s, which Clowder's cdappconfig.json provides (ACG_CONFIG overlay); leave it out", where, v.Name)
			}
			if v.SecretRef != nil && (str(v.SecretRef["name"]) == "" || str(v.SecretRef["key"]) == "") {
				t.Errorf("%s: %s: secretKeyRef needs name and key", where, v.Name)
			}
			spec, secret := secrets[v.Name]
			switch {
			case !secret:
			case v.SecretRef != nil:
			case spec.File && v.HasValue:
				checkMountedSecretFile(t, where, d, v)
			default:
				t.Errorf("%s: the secret %s must come from valueFrom.secretKeyRef (or %s_FILE on a mounted Secret), never a value", where, v.Name, strings.TrimSuffix(v.Name, "_FILE"))
			}
		}
		resolved := func(n string) string { return tp.resolve(set[n].Value) }
		want := map[string]string{"BIND_HOST": "0.0.0.0", "LOG_FORMAT": "json", "KV_REPLICAS": "3"}
		if name == "processor" {
			want["WORK_REPLICAS"] = "3"
			want["STS_ENDPOINT"] = "https://sts.amazonaws.com"
		}
		for n, w := range want {
			if _, ok := set[n]; !ok {
				t.Errorf("%s does not set %s (want %s in production)", where, n, w)
			} else if got := resolved(n); got != w {
				t.Errorf("%s: %s=%q (with the parameters' defaults); want %q", where, n, got, w)
			}
		}
		// Addresses come from parameters: they differ per environment.
		urls := []string{"NATS_URL", "SOURCES_URL"}
		if name == "processor" {
			urls = append(urls, "STS_ENDPOINT", "RHSM_URL")
		}
		for _, n := range urls {
			v, ok := set[n]
			if !ok {
				t.Errorf("%s does not set %s", where, n)
				continue
			}
			if _, isParam := onlyParam(v.Value); !isParam {
				t.Errorf("%s: %s=%q; want a parameter (${...}), it differs per environment", where, n, v.Value)
			}
		}
		// Credentials every environment has.
		needs := []string{"SOURCES_PSK", "NATS_PASSWORD"}
		if name == "processor" {
			needs = append(needs, "AWS_SECRET_ACCESS_KEY")
		}
		for _, n := range needs {
			if v, ok := set[n]; !ok || v.SecretRef == nil {
				if _, file := set[n+"_FILE"]; !file {
					t.Errorf("%s: %s is not set from a Secret", where, n)
				}
			}
		}
		if name == "processor" {
			rhsm := false
			for _, n := range []string{"RHSM_BEARER_TOKEN", "RHSM_BEARER_TOKEN_FILE", "RHSM_AUTH_VALUE", "RHSM_AUTH_VALUE_FILE", "RHSM_CERT_FILE"} {
				_, ok := set[n]
				rhsm = rhsm || ok
			}
			if !rhsm {
				t.Errorf("%s: no RHSM credential (RHSM_BEARER_TOKEN, RHSM_AUTH_VALUE or RHSM_CERT_FILE)", where)
			}
		}
	}
}

// checkMountedSecretFile: a *_FILE path lies in a volume mounted from a Secret.
func checkMountedSecretFile(t *testing.T, where string, d *clowdDeployment, v envVar) {
	t.Helper()
	secretVolumes := map[string]bool{}
	for _, vol := range asList(get(d.Raw, "podSpec", "volumes")) {
		if get(vol, "secret") != nil {
			secretVolumes[str(get(vol, "name"))] = true
		}
	}
	for _, m := range asList(get(d.Raw, "podSpec", "volumeMounts")) {
		dir := strings.TrimSuffix(str(get(m, "mountPath")), "/") + "/"
		if strings.HasPrefix(v.Value, dir) && secretVolumes[str(get(m, "name"))] {
			return
		}
	}
	t.Errorf("%s: %s=%q is not inside a volume mounted from a Secret", where, v.Name, v.Value)
}

func TestClowdAppDeployments(t *testing.T) {
	ps := programs(t)
	tp, _, deps := loadClowdApp(t, ps)

	// The listener runs alone.
	l := deps["listener"].Raw
	where := clowdappFile + ": deployment listener"
	if r, ok := l["replicas"].(int); !ok || r != 1 {
		t.Errorf("%s: replicas is %v; want exactly 1 (Kafka partition order needs one consumer)", where, l["replicas"])
	}
	if mr, ok := l["minReplicas"]; ok && str(mr) != "1" {
		t.Errorf("%s: minReplicas is %v; want it absent or 1", where, mr)
	}
	for _, k := range []string{"autoScaler", "autoScalerSimple", "autoscaler"} {
		if _, ok := l[k]; ok {
			t.Errorf("%s: has %s; the listener must never scale", where, k)
		}
	}
	if got := str(get(l, "deploymentStrategy", "privateStrategy")); got != "Recreate" {
		t.Errorf("%s: deploymentStrategy.privateStrategy is %q; want Recreate (a rollout must never run two listeners)", where, got)
	}
	if get(l, "webServices", "public", "enabled") == true {
		t.Errorf("%s: public web service enabled; Clowder then ignores privateStrategy", where)
	}

	// The processors scale by a parameter and serve the availability check.
	p := deps["processor"].Raw
	where = clowdappFile + ": deployment processor"
	if got := str(p["replicas"]); got != "${{PROCESSOR_REPLICAS}}" {
		t.Errorf("%s: replicas is %q; want ${{PROCESSOR_REPLICAS}}", where, got)
	} else if n, err := strconv.Atoi(tp.Params["PROCESSOR_REPLICAS"].Value); err != nil || n < 1 {
		t.Errorf("%s: PROCESSOR_REPLICAS default %q is not a positive number", clowdappFile, tp.Params["PROCESSOR_REPLICAS"].Value)
	}
	if get(p, "webServices", "private", "enabled") != true {
		t.Errorf("%s: webServices.private.enabled is not true; Sources calls the availability check on the private port", where)
	}
	if get(p, "webServices", "public", "enabled") == true {
		t.Errorf("%s: public web service enabled; nothing public is served", where)
	}

	for _, name := range []string{"listener", "processor"} {
		d := deps[name]
		where := clowdappFile + ": deployment " + name
		pod := asMap(d.Raw["podSpec"])
		for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
			g := asMap(get(pod, probe, "httpGet"))
			if g == nil {
				t.Errorf("%s: no %s.httpGet", where, probe)
				continue
			}
			if got := str(g["path"]); got != path {
				t.Errorf("%s: %s path %q; want %s", where, probe, got, path)
			}
			// Clowder names the container port of the metrics port "metrics";
			// under ACG_CONFIG the program listens there (METRICS_PORT must
			// not be set, see TestClowdAppEnvironment).
			if got := str(g["port"]); got != "metrics" {
				t.Errorf("%s: %s port %q; want the named port metrics (Clowder's metrics port, where /healthz and /readyz are served)", where, probe, got)
			}
		}
		for _, kind := range []string{"requests", "limits"} {
			for _, res := range []string{"cpu", "memory"} {
				v := str(get(pod, "resources", kind, res))
				if _, ok := onlyParam(v); !ok {
					t.Errorf("%s: resources.%s.%s is %q; want a parameter", where, kind, res, v)
				}
			}
		}
		grace, err := time.ParseDuration(d.Program.value(envMap(d.Env), "SHUTDOWN_GRACE"))
		if err != nil {
			t.Fatalf("SHUTDOWN_GRACE: %v", err)
		}
		term := 30 * time.Second // Kubernetes' default
		if v, ok := pod["terminationGracePeriodSeconds"]; ok {
			term = time.Duration(atoi(str(v))) * time.Second
		}
		if term <= grace {
			t.Errorf("%s: terminationGracePeriodSeconds (%s) must be longer than SHUTDOWN_GRACE (%s)", where, term, grace)
		}
	}
}

func TestClowdAppKafkaTopics(t *testing.T) {
	ps := programs(t)
	_, app, _ := loadClowdApp(t, ps)
	want := map[string]string{
		ps["listener"].Vars["KAFKA_EVENTS_TOPIC"].Default:  "the listener's KAFKA_EVENTS_TOPIC",
		ps["processor"].Vars["KAFKA_STATUS_TOPIC"].Default: "the processor's KAFKA_STATUS_TOPIC",
	}
	got := map[string]bool{}
	for i, tt := range asList(get(app, "spec", "kafkaTopics")) {
		name := str(get(tt, "topicName"))
		got[name] = true
		if _, ok := want[name]; !ok {
			t.Errorf("%s: kafkaTopics[%d] %q is not a topic the programs use (%v)", clowdappFile, i, name, sortedKeys(want))
		}
		for _, k := range []string{"partitions", "replicas"} {
			if n, ok := get(tt, k).(int); !ok || n < 1 {
				t.Errorf("%s: kafkaTopics[%d] %s: %s is %v; want a positive number", clowdappFile, i, name, k, get(tt, k))
			}
		}
	}
	for name, what := range want {
		if !got[name] {
			t.Errorf("%s: kafkaTopics lacks %s (%s); Clowder maps only the topics listed", clowdappFile, name, what)
		}
	}
}

// Clowder gives the endpoint of a ClowdApp only to apps that depend on it:
// without the dependency the programs fall back to SOURCES_URL silently.
func TestClowdAppDependsOnSources(t *testing.T) {
	_, app, _ := loadClowdApp(t, programs(t))
	var deps []string
	for _, key := range []string{"dependencies", "optionalDependencies"} {
		for _, d := range asList(get(app, "spec", key)) {
			deps = append(deps, str(d))
		}
	}
	if !slices.Contains(deps, config.SourcesApp) {
		t.Errorf("%s: spec.dependencies %v lacks %s, whose endpoint gives the programs the Sources URL", clowdappFile, deps, config.SourcesApp)
	}
}

// ---------------------------------------------------------------------------
// deploy/nats/template.yaml

func TestNATSTemplate(t *testing.T) {
	ps := programs(t)
	tp := loadTemplate(t, natsFile)
	tp.checkParams(t)

	sets := tp.objects("StatefulSet")
	if len(sets) != 1 {
		t.Fatalf("%s: %d StatefulSets; want 1", natsFile, len(sets))
	}
	sts := sets[0]
	stsName := str(get(sts, "metadata", "name"))
	replicas, ok := get(sts, "spec", "replicas").(int)
	if !ok || replicas != 3 {
		t.Errorf("%s: StatefulSet replicas %v; want 3 (a JetStream cluster keeping R3 streams through one failure)", natsFile, get(sts, "spec", "replicas"))
	}
	podLabels := asMap(get(sts, "spec", "template", "metadata", "labels"))
	matches := func(sel map[string]any) bool {
		if len(sel) == 0 {
			return false
		}
		for k, v := range sel {
			if str(podLabels[k]) != str(v) {
				return false
			}
		}
		return true
	}
	if !matches(asMap(get(sts, "spec", "selector", "matchLabels"))) {
		t.Errorf("%s: the StatefulSet selector does not match its pod labels %v", natsFile, podLabels)
	}

	// Services: a headless one for the routes, a client one for Cloudoreg.
	services := map[string]map[string]any{}
	for _, s := range tp.objects("Service") {
		services[str(get(s, "metadata", "name"))] = s
		if !matches(asMap(get(s, "spec", "selector"))) {
			t.Errorf("%s: Service %s selects %v, not the NATS pods (%v)", natsFile, str(get(s, "metadata", "name")), get(s, "spec", "selector"), podLabels)
		}
	}
	headlessName := str(get(sts, "spec", "serviceName"))
	headless := services[headlessName]
	if headless == nil {
		t.Fatalf("%s: the StatefulSet's serviceName %q is not a Service of the template", natsFile, headlessName)
	}
	if str(get(headless, "spec", "clusterIP")) != "None" {
		t.Errorf("%s: Service %s is not headless (clusterIP: None)", natsFile, headlessName)
	}
	if get(headless, "spec", "publishNotReadyAddresses") != true {
		t.Errorf("%s: Service %s must publish not-ready addresses: servers become ready only after the routes connect", natsFile, headlessName)
	}
	for _, kind := range []string{"PodDisruptionBudget", "NetworkPolicy"} {
		for _, o := range tp.objects(kind) {
			sel := asMap(get(o, "spec", "selector", "matchLabels"))
			if kind == "NetworkPolicy" {
				sel = asMap(get(o, "spec", "podSelector", "matchLabels"))
			}
			if !matches(sel) {
				t.Errorf("%s: %s %s does not select the NATS pods", natsFile, kind, str(get(o, "metadata", "name")))
			}
		}
	}
	if len(tp.objects("PodDisruptionBudget")) == 0 {
		t.Errorf("%s: no PodDisruptionBudget (a drain must not take two servers at once)", natsFile)
	}

	// The containers: nats-server and the metrics exporter.
	ctrs := map[string]map[string]any{}
	for _, c := range asList(get(sts, "spec", "template", "spec", "containers")) {
		ctrs[str(get(c, "name"))] = asMap(c)
	}
	ctr, exporter := ctrs["nats"], ctrs["exporter"]
	if ctr == nil || exporter == nil || len(ctrs) != 2 {
		t.Fatalf("%s: containers %v; want nats and exporter", natsFile, sortedKeys(ctrs))
	}
	checkNATSImages(t, tp, ctr, exporter)
	ports := map[string]int{}
	for _, p := range asList(ctr["ports"]) {
		ports[str(get(p, "name"))] = atoi(str(get(p, "containerPort")))
	}
	for _, n := range []string{"client", "cluster", "monitor"} {
		if ports[n] == 0 {
			t.Errorf("%s: the NATS container has no port named %s", natsFile, n)
		}
	}
	claims := map[string]int64{}
	for _, c := range asList(get(sts, "spec", "volumeClaimTemplates")) {
		size := tp.resolve(str(get(c, "spec", "resources", "requests", "storage")))
		claims[str(get(c, "metadata", "name"))] = quantity(size)
		if quantity(size) <= 0 {
			t.Errorf("%s: volumeClaimTemplate %s requests no storage (%q)", natsFile, str(get(c, "metadata", "name")), size)
		}
	}
	if len(claims) == 0 {
		t.Errorf("%s: no volumeClaimTemplates: JetStream's file store would not survive a restart", natsFile)
	}
	volumes := map[string]map[string]any{}
	for _, v := range asList(get(sts, "spec", "template", "spec", "volumes")) {
		volumes[str(get(v, "name"))] = asMap(v)
	}
	dataDir, confDir, confMap := "", "", ""
	var dataSize int64
	for _, m := range asList(ctr["volumeMounts"]) {
		name, path := str(get(m, "name")), str(get(m, "mountPath"))
		if _, ok := claims[name]; ok {
			dataDir, dataSize = path, claims[name]
		}
		if cm := str(get(volumes[name], "configMap", "name")); cm != "" {
			confDir, confMap = path, cm
		}
	}
	if dataDir == "" {
		t.Fatalf("%s: no volume claim is mounted in the NATS container", natsFile)
	}
	var conf string
	for _, cm := range tp.objects("ConfigMap") {
		if str(get(cm, "metadata", "name")) == confMap {
			conf = str(get(cm, "data", "nats.conf"))
		}
	}
	if conf == "" {
		t.Fatalf("%s: no ConfigMap %q with nats.conf mounted in the NATS container", natsFile, confMap)
	}
	var args []string
	for _, a := range append(asList(ctr["command"]), asList(ctr["args"])...) {
		args = append(args, str(a))
	}
	if i := slices.IndexFunc(args, func(a string) bool { return a == "--config" || a == "-c" || a == "-config" }); i < 0 || i+1 >= len(args) || args[i+1] != confDir+"/nats.conf" {
		t.Errorf("%s: the NATS container does not run with --config %s/nats.conf (command %v)", natsFile, confDir, args)
	}
	for _, probe := range []string{"livenessProbe", "readinessProbe", "startupProbe"} {
		g := get(ctr, probe, "httpGet")
		if g == nil {
			t.Errorf("%s: the NATS container has no %s.httpGet", natsFile, probe)
			continue
		}
		if p := str(get(g, "port")); p != "monitor" && atoi(p) != ports["monitor"] {
			t.Errorf("%s: %s on port %s; want the monitor port", natsFile, probe, p)
		}
		if !strings.HasPrefix(str(get(g, "path")), "/healthz") {
			t.Errorf("%s: %s path %q; want /healthz", natsFile, probe, str(get(g, "path")))
		}
	}
	// Started only when healthy in full (streams and consumers current), so a
	// rolling upgrade waits for a server to catch up before taking the next.
	if p := str(get(ctr, "startupProbe", "httpGet", "path")); p != "/healthz" {
		t.Errorf("%s: startupProbe path %q; want the full /healthz", natsFile, p)
	}

	// nats.conf as the server reads it, with the pod's environment and
	// throwaway certificates in the Secret volumes.
	pki := testkit.NewPKI(t, "cloudoreg-nats")
	tlsSecrets := map[string]string{} // mount path -> Secret
	for _, m := range asList(ctr["volumeMounts"]) {
		if sec := str(get(volumes[str(get(m, "name"))], "secret", "secretName")); sec != "" {
			tlsSecrets[str(get(m, "mountPath"))] = tp.resolve(sec)
		}
	}
	opts, secretOf := parseNATSConf(t, tp, ctr, withCertFiles(t, conf, tlsSecrets, pki), stsName+"-0")
	checkNATSTLS(t, opts)
	checkExporter(t, tp, exporter, podLabels, ports["monitor"])
	if !opts.JetStream {
		t.Errorf("%s: nats.conf does not enable JetStream", natsFile)
	}
	if !strings.HasPrefix(opts.StoreDir, strings.TrimSuffix(dataDir, "/")+"/") && opts.StoreDir != dataDir {
		t.Errorf("%s: JetStream store_dir %q is not on the persistent volume (%s)", natsFile, opts.StoreDir, dataDir)
	}
	if opts.JetStreamMaxStore <= 0 || opts.JetStreamMaxStore > dataSize {
		t.Errorf("%s: JetStream max_file_store (%d bytes) must be set and fit the persistent volume (%d bytes)", natsFile, opts.JetStreamMaxStore, dataSize)
	}
	if opts.ServerName != stsName+"-0" {
		t.Errorf("%s: server_name is %q for pod %s-0; want the pod name (unique per server)", natsFile, opts.ServerName, stsName)
	}
	if opts.Port != ports["client"] {
		t.Errorf("%s: nats.conf listens for clients on %d, the container port client is %d", natsFile, opts.Port, ports["client"])
	}
	if opts.Cluster.Port != ports["cluster"] {
		t.Errorf("%s: nats.conf listens for routes on %d, the container port cluster is %d", natsFile, opts.Cluster.Port, ports["cluster"])
	}
	if opts.HTTPPort != ports["monitor"] {
		t.Errorf("%s: nats.conf monitors on %d, the container port monitor is %d", natsFile, opts.HTTPPort, ports["monitor"])
	}
	if opts.Cluster.Name == "" {
		t.Errorf("%s: nats.conf names no cluster", natsFile)
	}
	if len(opts.Routes) != replicas {
		t.Errorf("%s: nats.conf lists %d routes for %d servers", natsFile, len(opts.Routes), replicas)
	}
	for i, r := range opts.Routes {
		want := fmt.Sprintf("%s-%d.%s", stsName, i, headlessName)
		if r.Hostname() != want || r.Port() != strconv.Itoa(ports["cluster"]) {
			t.Errorf("%s: route %d goes to %s; want %s:%d (pod %d through the headless Service)", natsFile, i, r.Host, want, ports["cluster"], i)
		}
		if pw, _ := r.User.Password(); r.User.Username() != opts.Cluster.Username || pw != opts.Cluster.Password {
			t.Errorf("%s: route %d does not carry the cluster's route credentials", natsFile, i)
		}
	}
	if opts.Cluster.Username == "" || opts.Cluster.Password == "" {
		t.Errorf("%s: cluster routes are not authenticated", natsFile)
	}
	if opts.SystemAccount == "" {
		t.Errorf("%s: nats.conf has no system_account", natsFile)
	}
	// The headless and client Services expose the container's ports.
	svcPort := func(svc map[string]any, name string) (int, bool) {
		for _, p := range asList(get(svc, "spec", "ports")) {
			if str(get(p, "name")) == name {
				tgt := str(get(p, "targetPort"))
				if tgt != name && atoi(tgt) != ports[name] {
					t.Errorf("%s: Service %s port %s targets %s, not the container port %s", natsFile, str(get(svc, "metadata", "name")), name, tgt, name)
				}
				return atoi(str(get(p, "port"))), true
			}
		}
		return 0, false
	}
	if p, ok := svcPort(headless, "cluster"); !ok || p != ports["cluster"] {
		t.Errorf("%s: headless Service %s does not expose the cluster port %d", natsFile, headlessName, ports["cluster"])
	}

	// Cloudoreg (deploy/clowdapp.yaml) reaches this cluster with the default
	// parameters: the URL, the user, the password from the same Secret key.
	ca, _, deps := loadClowdApp(t, ps)
	for _, name := range []string{"listener", "processor"} {
		where := fmt.Sprintf("%s: deployment %s", clowdappFile, name)
		env := map[string]envVar{}
		for _, v := range deps[name].Env {
			env[v.Name] = v
		}
		u, err := url.Parse(ca.resolve(env["NATS_URL"].Value))
		if err != nil {
			t.Errorf("%s: NATS_URL: %v", where, err)
			continue
		}
		if u.Scheme != "tls" {
			t.Errorf("%s: NATS_URL %s; want tls:// (the servers require TLS)", where, u)
		}
		checkNATSCA(t, ca, deps[name], env["NATS_CA_FILE"], tlsSecrets)
		client := services[u.Hostname()]
		if client == nil {
			t.Errorf("%s: NATS_URL %s: %s is not a Service of %s", where, u, u.Hostname(), natsFile)
		} else if p, ok := svcPort(client, "client"); !ok || strconv.Itoa(p) != u.Port() {
			t.Errorf("%s: NATS_URL %s: Service %s has no client port %s", where, u, u.Hostname(), u.Port())
		}
		user := ca.resolve(env["NATS_USER"].Value)
		ref := env["NATS_PASSWORD"].SecretRef
		wantSecret := ca.resolve(str(ref["name"])) + "/" + ca.resolve(str(ref["key"]))
		found := false
		for _, u := range opts.Users {
			if u.Username != user {
				continue
			}
			found = true
			if got := secretOf[u.Password]; got != wantSecret {
				t.Errorf("%s: NATS_PASSWORD comes from Secret key %s, but the NATS user %s's password comes from %q", where, wantSecret, user, got)
			}
			if u.Account == nil || u.Account.Name == opts.SystemAccount || u.Account.Name == "$G" {
				t.Errorf("%s: NATS user %s must belong to an account of its own (not the global or system account)", where, user)
			}
		}
		if !found {
			t.Errorf("%s: NATS_USER %q is no user of nats.conf", where, user)
		}
		if r := atoi(ca.resolve(env["KV_REPLICAS"].Value)); r > replicas {
			t.Errorf("%s: KV_REPLICAS %d is more than the %d NATS servers", where, r, replicas)
		}
	}

	// Finally the server itself: one server started from this nats.conf
	// (alone, on free ports) lets Cloudoreg's user in and gives it JetStream.
	checkNATSLogin(t, opts, ca.resolve(envMap(deps["processor"].Env)["NATS_USER"]), secretOf, pki)
}

// checkNATSImages: the server is exactly the nats-server version Cloudoreg
// is tested with (the library's), the exporter at a pinned release.
func checkNATSImages(t *testing.T, tp *template, nats, exporter map[string]any) {
	t.Helper()
	img := tp.resolve(str(nats["image"]))
	_, tag, _ := strings.Cut(img[strings.LastIndex(img, "/")+1:], ":")
	if tag != server.VERSION && !strings.HasPrefix(tag, server.VERSION+"-") {
		t.Errorf("%s: NATS image %s; want the tag %s (the nats-server of the go.mod files), optionally with a variant suffix", natsFile, img, server.VERSION)
	}
	img = tp.resolve(str(exporter["image"]))
	if !regexp.MustCompile(`prometheus-nats-exporter:[0-9]+\.[0-9]+\.[0-9]+$`).MatchString(img) {
		t.Errorf("%s: exporter image %s; want prometheus-nats-exporter at a pinned X.Y.Z tag", natsFile, img)
	}
}

// withCertFiles writes a throwaway certificate, key and CA under the keys a
// TLS Secret has (tls.crt, tls.key, ca.crt) for each Secret mount, and points
// nats.conf's paths there.
func withCertFiles(t *testing.T, conf string, mounts map[string]string, pki testkit.PKI) string {
	t.Helper()
	cert, key := pki.ServerPEM(t)
	for mount := range mounts {
		dir := t.TempDir()
		for name, content := range map[string]string{"tls.crt": cert, "tls.key": key, "ca.crt": pki.CAPEM} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		conf = strings.ReplaceAll(conf, strings.TrimSuffix(mount, "/")+"/", dir+"/")
	}
	return conf
}

// checkNATSTLS: clients and routes use TLS (routes mutual), and the cluster
// does not advertise the pods' addresses to clients.
func checkNATSTLS(t *testing.T, opts *server.Options) {
	t.Helper()
	if opts.TLSConfig == nil {
		t.Errorf("%s: nats.conf has no tls block for clients", natsFile)
	}
	if opts.Cluster.TLSConfig == nil {
		t.Errorf("%s: nats.conf has no tls block in cluster: routes would carry streams and passwords in clear", natsFile)
	} else if opts.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert {
		t.Errorf("%s: routes do not verify the peer's certificate", natsFile)
	}
	if !opts.Cluster.NoAdvertise {
		t.Errorf("%s: cluster without no_advertise: true; clients would learn pod addresses behind the Service", natsFile)
	}
	for i, r := range opts.Routes {
		if r.Scheme != "tls" {
			t.Errorf("%s: route %d is %s://; want tls://", natsFile, i, r.Scheme)
		}
	}
}

// checkNATSCA: NATS_CA_FILE is the ca.crt of the NATS servers' TLS Secret,
// mounted without the Secret's other keys (the servers' private key).
func checkNATSCA(t *testing.T, ca *template, d *clowdDeployment, v envVar, natsSecrets map[string]string) {
	t.Helper()
	where := fmt.Sprintf("%s: deployment %s", clowdappFile, d.Name)
	path := ca.resolve(v.Value)
	if path == "" {
		t.Errorf("%s: NATS_CA_FILE is not set; the NATS servers' certificate is signed by the TLS Secret's CA", where)
		return
	}
	vols := map[string]map[string]any{}
	for _, vol := range asList(get(d.Raw, "podSpec", "volumes")) {
		vols[str(get(vol, "name"))] = asMap(vol)
	}
	for _, m := range asList(get(d.Raw, "podSpec", "volumeMounts")) {
		dir := strings.TrimSuffix(str(get(m, "mountPath")), "/") + "/"
		file, ok := strings.CutPrefix(path, dir)
		if !ok {
			continue
		}
		sec := asMap(get(vols[str(get(m, "name"))], "secret"))
		if !slices.Contains(sortedValues(natsSecrets), ca.resolve(str(sec["secretName"]))) {
			t.Errorf("%s: NATS_CA_FILE %s is not in a volume of the NATS TLS Secret %v", where, path, sortedValues(natsSecrets))
		}
		items := asList(sec["items"])
		if len(items) != 1 || str(get(items[0], "key")) != "ca.crt" || str(get(items[0], "path")) != file {
			t.Errorf("%s: the NATS TLS Secret volume must project only ca.crt (as %s), not the private key: items %v", where, file, items)
		}
		return
	}
	t.Errorf("%s: NATS_CA_FILE %s is in no mounted volume", where, path)
}

func sortedValues(m map[string]string) []string {
	var out []string
	for _, k := range sortedKeys(m) {
		out = append(out, m[k])
	}
	return out
}

// checkExporter: the exporter reads the server's monitor port in the pod,
// a PodMonitor scrapes it, and the NetworkPolicy lets the monitoring
// namespace in on its port.
func checkExporter(t *testing.T, tp *template, exporter, podLabels map[string]any, monitor int) {
	t.Helper()
	port := 0
	for _, p := range asList(exporter["ports"]) {
		if str(get(p, "name")) == "metrics" {
			port = atoi(str(get(p, "containerPort")))
		}
	}
	if port == 0 {
		t.Fatalf("%s: the exporter has no port named metrics", natsFile)
	}
	args := strings.Join(func() []string {
		var a []string
		for _, x := range asList(exporter["args"]) {
			a = append(a, str(x))
		}
		return a
	}(), " ")
	if !strings.Contains(args, fmt.Sprintf("-port=%d", port)) || !strings.Contains(args, fmt.Sprintf("http://localhost:%d", monitor)) || !strings.Contains(args, "-jsz") {
		t.Errorf("%s: exporter args %q; want -port=%d, -jsz and the monitor URL http://localhost:%d", natsFile, args, port, monitor)
	}
	selects := func(sel map[string]any) bool {
		for k, v := range sel {
			if str(podLabels[k]) != str(v) {
				return false
			}
		}
		return len(sel) > 0
	}
	mons := tp.objects("PodMonitor")
	if len(mons) != 1 {
		t.Fatalf("%s: %d PodMonitors; want 1 for the exporter", natsFile, len(mons))
	}
	if !selects(asMap(get(mons[0], "spec", "selector", "matchLabels"))) {
		t.Errorf("%s: the PodMonitor does not select the NATS pods", natsFile)
	}
	eps := asList(get(mons[0], "spec", "podMetricsEndpoints"))
	if len(eps) != 1 || str(get(eps[0], "port")) != "metrics" {
		t.Errorf("%s: PodMonitor endpoints %v; want the port metrics", natsFile, eps)
	}
	admitted := false
	for _, np := range tp.objects("NetworkPolicy") {
		for _, rule := range asList(get(np, "spec", "ingress")) {
			fromMonitoring := false
			for _, f := range asList(get(rule, "from")) {
				ns := tp.resolve(str(get(f, "namespaceSelector", "matchLabels", "kubernetes.io/metadata.name")))
				fromMonitoring = fromMonitoring || ns != ""
			}
			for _, p := range asList(get(rule, "ports")) {
				admitted = admitted || (fromMonitoring && atoi(str(get(p, "port"))) == port)
			}
		}
	}
	if !admitted {
		t.Errorf("%s: no NetworkPolicy rule admits the monitoring namespace on the exporter port %d", natsFile, port)
	}
}

// parseNATSConf parses nats.conf with the environment the container would
// have: secrets are replaced by recognisable test values (secretOf maps a
// value back to its "secret/key"), fieldRef metadata.name by the pod name,
// and $(VAR) references are expanded like Kubernetes does.
func parseNATSConf(t *testing.T, tp *template, ctr map[string]any, conf, podName string) (*server.Options, map[string]string) {
	t.Helper()
	secretOf := map[string]string{}
	values := map[string]string{}
	expand := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	for _, v := range containerEnv(t, natsFile+": NATS container", ctr["env"]) {
		var val string
		switch {
		case v.SecretRef != nil:
			ref := tp.resolve(str(v.SecretRef["name"])) + "/" + tp.resolve(str(v.SecretRef["key"]))
			val = "test" + strings.NewReplacer("/", "", "-", "", ".", "").Replace(ref)
			secretOf[val] = ref
		case v.FieldRef != nil && str(v.FieldRef["fieldPath"]) == "metadata.name":
			val = podName
		case v.HasValue:
			val = expand.ReplaceAllStringFunc(tp.resolve(v.Value), func(m string) string {
				return values[expand.FindStringSubmatch(m)[1]]
			})
		default:
			t.Errorf("%s: NATS container env %s: unsupported source %v", natsFile, v.Name, v.ValueFrom)
		}
		values[v.Name] = val
	}
	// Every $VARIABLE of nats.conf must be defined by the container.
	for _, m := range regexp.MustCompile(`\$([A-Za-z_][A-Za-z0-9_]*)`).FindAllStringSubmatch(conf, -1) {
		if _, ok := values[m[1]]; !ok {
			t.Errorf("%s: nats.conf uses $%s, which the NATS container's env does not define", natsFile, m[1])
		}
	}
	for k, v := range values {
		t.Setenv(k, v)
	}
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(tp.resolve(conf)), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("%s: nats.conf does not load in nats-server: %v", natsFile, err)
	}
	return opts, secretOf
}

// checkNATSLogin starts one server from opts, alone and on free ports, and
// connects as user: the account must have JetStream.
func checkNATSLogin(t *testing.T, opts *server.Options, user string, secretOf map[string]string, pki testkit.PKI) {
	t.Helper()
	o := opts.Clone()
	o.Host, o.Port = "127.0.0.1", server.RANDOM_PORT
	o.HTTPHost, o.HTTPPort = "", 0
	o.Cluster = server.ClusterOpts{}
	o.Routes = nil
	o.StoreDir = t.TempDir()
	o.PidFile = ""
	o.NoSigs, o.NoLog = true, true
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatalf("%s: nats-server refuses the options of nats.conf: %v", natsFile, err)
	}
	s.Start()
	defer func() {
		s.Shutdown()
		s.WaitForShutdown()
	}()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatalf("%s: a server from nats.conf did not start", natsFile)
	}
	password := ""
	for _, u := range o.Users {
		if u.Username == user {
			password = u.Password
		}
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(pki.CAPEM))
	nc, err := nats.Connect(s.ClientURL(), nats.UserInfo(user, password), nats.Timeout(5*time.Second),
		nats.Secure(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}))
	if err != nil {
		t.Fatalf("%s: user %s (password from %s) cannot log in: %v", natsFile, user, secretOf[password], err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AccountInfo(); err != nil {
		t.Errorf("%s: user %s has no JetStream: %v", natsFile, user, err)
	}
}

// ---------------------------------------------------------------------------
// deploy/README.md names every Secret the templates reference.

func TestDeployREADMENamesTheSecrets(t *testing.T) {
	ps := programs(t)
	readme := readFile(t, "deploy/README.md")
	ca, _, deps := loadClowdApp(t, ps)
	nt := loadTemplate(t, natsFile)
	check := func(tp *template, where string, env []envVar) {
		for _, v := range env {
			if v.SecretRef == nil {
				continue
			}
			name, key := tp.resolve(str(v.SecretRef["name"])), tp.resolve(str(v.SecretRef["key"]))
			if !strings.Contains(readme, name) || !strings.Contains(readme, key) {
				t.Errorf("deploy/README.md does not explain Secret %s key %s (%s, %s)", name, key, where, v.Name)
			}
		}
	}
	for _, name := range []string{"listener", "processor"} {
		check(ca, clowdappFile+" "+name, deps[name].Env)
	}
	for _, sts := range nt.objects("StatefulSet") {
		for _, c := range asList(get(sts, "spec", "template", "spec", "containers")) {
			check(nt, natsFile, containerEnv(t, natsFile, get(c, "env")))
		}
	}
	for _, name := range []string{"STACK_EXTERNAL_KAFKA", "STACK_EXTERNAL_NATS", "STACK_BIND_HOST"} {
		if !strings.Contains(readme, name) {
			t.Errorf("deploy/README.md does not describe the stack variable %s that docker-compose.yml uses", name)
		}
	}
}
