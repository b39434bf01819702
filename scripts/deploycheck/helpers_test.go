package deploycheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	listenerapp "github.com/cloudoreg/cloudoreg/listener/app"
	processorapp "github.com/cloudoreg/cloudoreg/processor/app"
	"github.com/cloudoreg/cloudoreg/scripts/internal/stack"
)

// ---------------------------------------------------------------------------
// The repository

// repoRoot is the directory holding go.work (the Docker build context).
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.work above the working directory: run the tests inside the repository")
		}
		dir = parent
	}
}

func readFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return string(b)
}

func exists(t *testing.T, rel string) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(repoRoot(t), filepath.FromSlash(rel)))
	return err == nil
}

// workspace is what go.work says: the Go version and the module folders.
func workspace(t *testing.T) (goVersion string, modules []string) {
	t.Helper()
	text := readFile(t, "go.work")
	inUse := false
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if i := strings.Index(line, "//"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		switch {
		case line == "":
		case strings.HasPrefix(line, "go "):
			goVersion = strings.TrimSpace(strings.TrimPrefix(line, "go "))
		case line == "use (":
			inUse = true
		case inUse && line == ")":
			inUse = false
		case inUse:
			modules = append(modules, strings.TrimPrefix(line, "./"))
		case strings.HasPrefix(line, "use "):
			modules = append(modules, strings.TrimPrefix(strings.TrimSpace(strings.TrimPrefix(line, "use ")), "./"))
		}
	}
	if goVersion == "" || len(modules) == 0 {
		t.Fatalf("go.work: could not read the go version and the used modules")
	}
	return goVersion, modules
}

// ---------------------------------------------------------------------------
// The programs and the variables they read

// envSpec is one environment variable a program reads.
type envSpec struct {
	Name       string
	Secret     bool // secret:"true": never inline its value
	File       bool // ",file": the variable holds a path; the file holds the value
	Default    string
	HasDefault bool
	Where      string // the Go type and field, for messages
}

// program is one of the three binaries deployed by the files under test.
type program struct {
	Name   string // listener, processor, stack
	Cmd    string // the package built by its Dockerfile
	Config string // the configuration type, for messages
	Vars   map[string]envSpec
}

func (p *program) reads(name string) bool { _, ok := p.Vars[name]; return ok }

// value is what the program would use for name given the variables env
// sets: env's value, else the default.
func (p *program) value(env map[string]string, name string) string {
	if v, ok := env[name]; ok {
		return v
	}
	return p.Vars[name].Default
}

// portVars are the variables naming a TCP port the program listens on.
func (p *program) portVars() []string {
	var out []string
	for name, s := range p.Vars {
		if strings.HasSuffix(name, "_PORT") {
			if _, err := strconv.Atoi(s.Default); err == nil {
				out = append(out, name)
			}
		}
	}
	sort.Strings(out)
	return out
}

// ports are the ports the program listens on given env.
func (p *program) ports(t *testing.T, env map[string]string) map[int]string {
	t.Helper()
	out := map[int]string{}
	for _, name := range p.portVars() {
		n, err := strconv.Atoi(p.value(env, name))
		if err != nil {
			t.Errorf("%s: %s=%q is not a port number", p.Name, name, p.value(env, name))
			continue
		}
		out[n] = name
	}
	return out
}

// programs derives, by reflection over the env tags of the configuration
// structs (nested structs included), the variables each program reads, plus
// the ones its main package reads with os.Getenv.
func programs(t *testing.T) map[string]*program {
	t.Helper()
	root := repoRoot(t)
	ps := map[string]*program{
		"listener":  {Name: "listener", Cmd: "./listener/cmd/listener", Config: "listener/app.Config", Vars: envSpecs(t, reflect.TypeOf(listenerapp.Config{}))},
		"processor": {Name: "processor", Cmd: "./processor/cmd/processor", Config: "processor/app.Config", Vars: envSpecs(t, reflect.TypeOf(processorapp.Config{}))},
		"stack":     {Name: "stack", Cmd: "./scripts/cmd/stack", Config: "scripts/internal/stack.Config", Vars: envSpecs(t, reflect.TypeOf(stack.Config{}))},
	}
	for _, p := range ps {
		for _, name := range getenvCalls(t, filepath.Join(root, filepath.FromSlash(p.Cmd))) {
			if _, ok := p.Vars[name]; !ok {
				p.Vars[name] = envSpec{Name: name, Where: p.Cmd + " (os.Getenv)"}
			}
		}
	}
	return ps
}

// secretVars are the variables any of the programs marks secret.
func secretVars(ps map[string]*program) map[string]envSpec {
	out := map[string]envSpec{}
	for _, p := range ps {
		for name, s := range p.Vars {
			if s.Secret {
				out[name] = s
			}
		}
	}
	return out
}

func envSpecs(t *testing.T, typ reflect.Type) map[string]envSpec {
	t.Helper()
	out := map[string]envSpec{}
	walkEnv(t, typ, "", typ.String(), out)
	if len(out) == 0 {
		t.Fatalf("%s has no env tags", typ)
	}
	return out
}

func walkEnv(t *testing.T, typ reflect.Type, prefix, where string, out map[string]envSpec) {
	t.Helper()
	for i := range typ.NumField() {
		f := typ.Field(i)
		tag, tagged := f.Tag.Lookup("env")
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if !tagged || tag == "" {
			if ft.Kind() == reflect.Struct {
				walkEnv(t, ft, prefix+f.Tag.Get("envPrefix"), where+"."+f.Name, out)
			}
			continue
		}
		parts := strings.Split(tag, ",")
		s := envSpec{
			Name:   prefix + parts[0],
			Secret: f.Tag.Get("secret") == "true",
			File:   slices.Contains(parts[1:], "file"),
			Where:  where + "." + f.Name,
		}
		s.Default, s.HasDefault = f.Tag.Lookup("envDefault")
		if prev, dup := out[s.Name]; dup && prev.Default != s.Default {
			t.Errorf("%s and %s both read %s with different defaults", prev.Where, s.Where, s.Name)
		}
		out[s.Name] = s
	}
}

// getenvCalls lists the string literals passed to os.Getenv or os.LookupEnv
// in the non-test Go files of dir.
func getenvCalls(t *testing.T, dir string) []string {
	t.Helper()
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "os" || (sel.Sel.Name != "Getenv" && sel.Sel.Name != "LookupEnv") {
				return true
			}
			if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					names = append(names, s)
				}
			}
			return true
		})
	}
	return names
}

// isMainPackage reports whether rel (a ./path) is a directory holding a Go
// main package.
func isMainPackage(t *testing.T, rel string) bool {
	t.Helper()
	dir := filepath.Join(repoRoot(t), filepath.FromSlash(strings.TrimPrefix(rel, "./")))
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	fset := token.NewFileSet()
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.PackageClauseOnly)
		if err == nil && f.Name.Name == "main" {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------------
// YAML

func loadYAML(t *testing.T, rel string) map[string]any {
	t.Helper()
	var doc map[string]any
	if err := yaml.Unmarshal([]byte(readFile(t, rel)), &doc); err != nil {
		t.Fatalf("%s: not valid YAML: %v", rel, err)
	}
	if doc == nil {
		t.Fatalf("%s is empty", rel)
	}
	return doc
}

// get walks v by map keys (string) and list indexes (int); nil when absent.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }
func asList(v any) []any         { l, _ := v.([]any); return l }

// str is a scalar as the string a program would read from the environment.
func str(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	default:
		return fmt.Sprint(x)
	}
}

// ---------------------------------------------------------------------------
// OpenShift templates

type param struct {
	Name     string
	Value    string
	HasValue bool
	Required bool
}

type template struct {
	File    string
	Doc     map[string]any
	Params  map[string]param
	Objects []map[string]any
}

var paramRef = regexp.MustCompile(`\$\{\{([A-Za-z_][A-Za-z0-9_]*)\}\}|\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

func loadTemplate(t *testing.T, rel string) *template {
	t.Helper()
	doc := loadYAML(t, rel)
	tp := &template{File: rel, Doc: doc, Params: map[string]param{}}
	if got := str(doc["apiVersion"]); got != "template.openshift.io/v1" {
		t.Errorf("%s: apiVersion is %q, want template.openshift.io/v1", rel, got)
	}
	if got := str(doc["kind"]); got != "Template" {
		t.Errorf("%s: kind is %q, want Template", rel, got)
	}
	for i, o := range asList(doc["objects"]) {
		m := asMap(o)
		if m == nil {
			t.Errorf("%s: objects[%d] is not a mapping", rel, i)
			continue
		}
		tp.Objects = append(tp.Objects, m)
	}
	for i, p := range asList(doc["parameters"]) {
		m := asMap(p)
		name := str(m["name"])
		if name == "" {
			t.Errorf("%s: parameters[%d] has no name", rel, i)
			continue
		}
		if _, dup := tp.Params[name]; dup {
			t.Errorf("%s: parameter %s is declared twice", rel, name)
		}
		v, has := m["value"]
		req, _ := m["required"].(bool)
		tp.Params[name] = param{Name: name, Value: str(v), HasValue: has, Required: req}
	}
	return tp
}

// refs lists the parameters the objects use (${NAME} and ${{NAME}}).
func (tp *template) refs() map[string]bool {
	out := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				walk(k)
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case string:
			for _, m := range paramRef.FindAllStringSubmatch(x, -1) {
				out[m[1]+m[2]] = true
			}
		}
	}
	for _, o := range tp.Objects {
		walk(o)
	}
	return out
}

// resolve replaces the parameters in s by their values (what `oc process`
// does without overrides).
func (tp *template) resolve(s string) string {
	return paramRef.ReplaceAllStringFunc(s, func(ref string) string {
		m := paramRef.FindStringSubmatch(ref)
		return tp.Params[m[1]+m[2]].Value
	})
}

// checkParams: every parameter used is declared, every declared one is used,
// and each has a value or is required.
func (tp *template) checkParams(t *testing.T) {
	t.Helper()
	refs := tp.refs()
	for name := range refs {
		if _, ok := tp.Params[name]; !ok {
			t.Errorf("%s: the objects use ${%s}, which is not a declared parameter", tp.File, name)
		}
	}
	for name, p := range tp.Params {
		if !refs[name] {
			t.Errorf("%s: parameter %s is declared but no object uses it", tp.File, name)
		}
		if !p.HasValue && !p.Required {
			t.Errorf("%s: parameter %s has neither a value nor required: true", tp.File, name)
		}
	}
}

// objects returns the objects of kind.
func (tp *template) objects(kind string) []map[string]any {
	var out []map[string]any
	for _, o := range tp.Objects {
		if str(o["kind"]) == kind {
			out = append(out, o)
		}
	}
	return out
}

// onlyParam reports the parameter name when s is exactly one reference.
func onlyParam(s string) (string, bool) {
	m := paramRef.FindStringSubmatch(s)
	if m == nil || m[0] != s {
		return "", false
	}
	return m[1] + m[2], true
}

// ---------------------------------------------------------------------------
// Kubernetes containers

// envVar is one entry of a container's env list.
type envVar struct {
	Name      string
	Value     string
	HasValue  bool
	SecretRef map[string]any // valueFrom.secretKeyRef
	FieldRef  map[string]any // valueFrom.fieldRef
	ValueFrom map[string]any
}

func containerEnv(t *testing.T, where string, list any) []envVar {
	t.Helper()
	var out []envVar
	seen := map[string]bool{}
	for i, e := range asList(list) {
		m := asMap(e)
		v := envVar{Name: str(m["name"])}
		if v.Name == "" {
			t.Errorf("%s: env[%d] has no name", where, i)
			continue
		}
		if seen[v.Name] {
			t.Errorf("%s: %s is set twice", where, v.Name)
		}
		seen[v.Name] = true
		if val, ok := m["value"]; ok {
			v.Value, v.HasValue = str(val), true
		}
		v.ValueFrom = asMap(m["valueFrom"])
		v.SecretRef = asMap(get(m, "valueFrom", "secretKeyRef"))
		v.FieldRef = asMap(get(m, "valueFrom", "fieldRef"))
		if v.HasValue == (v.ValueFrom != nil) {
			t.Errorf("%s: %s must have exactly one of value and valueFrom", where, v.Name)
		}
		out = append(out, v)
	}
	return out
}

func envMap(vars []envVar) map[string]string {
	out := map[string]string{}
	for _, v := range vars {
		if v.HasValue {
			out[v.Name] = v.Value
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// Dockerfiles

type instruction struct {
	Cmd  string // upper case
	Args string
	Line int
}

type stage struct {
	From  string
	Name  string
	Instr []instruction
}

// parseDockerfile splits a Dockerfile into stages of instructions, joining
// continuation lines and dropping comments.
func parseDockerfile(t *testing.T, rel string) []stage {
	t.Helper()
	var stages []stage
	var buf strings.Builder
	start := 0
	lines := strings.Split(readFile(t, rel), "\n")
	for i, raw := range lines {
		line := strings.TrimSpace(raw)
		if buf.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if buf.Len() > 0 && strings.HasPrefix(line, "#") {
			continue // a comment inside a continued instruction
		}
		if buf.Len() == 0 {
			start = i + 1
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			buf.WriteString(cont + " ")
			continue
		}
		buf.WriteString(line)
		full := buf.String()
		buf.Reset()
		cmd, args, _ := strings.Cut(full, " ")
		in := instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: start}
		if in.Cmd == "FROM" {
			f := strings.Fields(in.Args)
			st := stage{From: f[0]}
			for j := 0; j+1 < len(f); j++ {
				if strings.EqualFold(f[j], "AS") {
					st.Name = f[j+1]
				}
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			if in.Cmd != "ARG" {
				t.Errorf("%s:%d: %s before the first FROM", rel, in.Line, in.Cmd)
			}
			continue
		}
		stages[len(stages)-1].Instr = append(stages[len(stages)-1].Instr, in)
	}
	if len(stages) == 0 {
		t.Fatalf("%s: no FROM", rel)
	}
	return stages
}

// copyArgs splits COPY arguments into flags, sources and destination.
func copyArgs(args string) (flags map[string]string, srcs []string, dst string) {
	flags = map[string]string{}
	var rest []string
	if strings.HasPrefix(args, "[") {
		var l []string
		_ = yaml.Unmarshal([]byte(args), &l)
		rest = l
	} else {
		for _, f := range strings.Fields(args) {
			if k, v, ok := strings.Cut(strings.TrimPrefix(f, "--"), "="); strings.HasPrefix(f, "--") && ok {
				flags[k] = v
				continue
			}
			rest = append(rest, f)
		}
	}
	if len(rest) < 2 {
		return flags, nil, ""
	}
	return flags, rest[:len(rest)-1], rest[len(rest)-1]
}

// ---------------------------------------------------------------------------
// docker-compose.yml

type portMapping struct {
	HostIP    string
	Host      int
	Container int
	Raw       string
}

type service struct {
	Name       string
	Raw        map[string]any
	Env        map[string]string
	EnvNil     map[string]bool // listed without a value: passed from the host
	Dockerfile string          // relative to the repository root; "" when not built
	Program    *program
	Ports      []portMapping
	Secrets    []string
	Aliases    []string
}

type compose struct {
	Doc      map[string]any
	Services map[string]*service
	Secrets  map[string]map[string]any
}

func loadCompose(t *testing.T, ps map[string]*program) *compose {
	t.Helper()
	doc := loadYAML(t, "docker-compose.yml")
	c := &compose{Doc: doc, Services: map[string]*service{}, Secrets: map[string]map[string]any{}}
	for name, v := range asMap(doc["secrets"]) {
		c.Secrets[name] = asMap(v)
	}
	services := asMap(doc["services"])
	if len(services) == 0 {
		t.Fatal("docker-compose.yml: no services")
	}
	for name, v := range services {
		raw := asMap(v)
		s := &service{Name: name, Raw: raw, Env: map[string]string{}, EnvNil: map[string]bool{}}
		switch env := raw["environment"].(type) {
		case map[string]any:
			for k, val := range env {
				if val == nil {
					s.EnvNil[k] = true
					continue
				}
				s.Env[k] = str(val)
			}
		case []any:
			for _, e := range env {
				k, val, ok := strings.Cut(str(e), "=")
				if !ok {
					s.EnvNil[k] = true
					continue
				}
				s.Env[k] = val
			}
		}
		if b := raw["build"]; b != nil {
			ctx, file := ".", "Dockerfile"
			if m := asMap(b); m != nil {
				if v := str(m["context"]); v != "" {
					ctx = v
				}
				if v := str(m["dockerfile"]); v != "" {
					file = v
				}
			} else {
				ctx = str(b)
			}
			if filepath.Clean(ctx) != "." {
				t.Errorf("docker-compose.yml: service %s builds with context %q; the Dockerfiles need the repository root (the Go workspace) as context", name, ctx)
			}
			s.Dockerfile = filepath.ToSlash(filepath.Clean(filepath.Join(ctx, file)))
			if prog, ok := strings.CutPrefix(s.Dockerfile, "deploy/Dockerfile."); ok {
				s.Program = ps[prog]
			}
		}
		for _, p := range asList(raw["ports"]) {
			pm, err := parsePort(p)
			if err != nil {
				t.Errorf("docker-compose.yml: service %s: port %v: %v", name, p, err)
				continue
			}
			s.Ports = append(s.Ports, pm)
		}
		for _, sec := range asList(raw["secrets"]) {
			if m := asMap(sec); m != nil {
				s.Secrets = append(s.Secrets, str(m["source"]))
				continue
			}
			s.Secrets = append(s.Secrets, str(sec))
		}
		for _, n := range asMap(raw["networks"]) {
			for _, a := range asList(get(n, "aliases")) {
				s.Aliases = append(s.Aliases, str(a))
			}
		}
		c.Services[name] = s
	}
	return c
}

func parsePort(p any) (portMapping, error) {
	if m := asMap(p); m != nil {
		target, err := strconv.Atoi(str(m["target"]))
		if err != nil {
			return portMapping{}, fmt.Errorf("target: %w", err)
		}
		published, err := strconv.Atoi(str(m["published"]))
		if err != nil {
			return portMapping{}, fmt.Errorf("published: %w", err)
		}
		return portMapping{HostIP: str(m["host_ip"]), Host: published, Container: target, Raw: fmt.Sprint(m)}, nil
	}
	raw := str(p)
	spec, _, _ := strings.Cut(raw, "/")
	parts := strings.Split(spec, ":")
	var pm portMapping
	pm.Raw = raw
	var err error
	switch len(parts) {
	case 1:
		pm.Container, err = strconv.Atoi(parts[0])
		pm.Host = pm.Container
	case 2:
		if pm.Host, err = strconv.Atoi(parts[0]); err == nil {
			pm.Container, err = strconv.Atoi(parts[1])
		}
	case 3:
		pm.HostIP = parts[0]
		if pm.Host, err = strconv.Atoi(parts[1]); err == nil {
			pm.Container, err = strconv.Atoi(parts[2])
		}
	default:
		err = fmt.Errorf("cannot read %q", raw)
	}
	return pm, err
}

// byHost lists the services a host name reaches on the compose network:
// the service name, its hostname, or a network alias.
func (c *compose) byHost(host string) []*service {
	var out []*service
	for _, s := range c.Services {
		if s.Name == host || str(s.Raw["hostname"]) == host || slices.Contains(s.Aliases, host) {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// programServices lists the services running prog, sorted by name.
func (c *compose) programServices(prog string) []*service {
	var out []*service
	for _, s := range c.Services {
		if s.Program != nil && s.Program.Name == prog {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
