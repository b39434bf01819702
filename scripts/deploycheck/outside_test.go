package deploycheck

import (
	"bytes"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The names of the team's documents that live outside the repository. They
// are built from pieces so that this file does not mention them itself.
var outsideDocs = []string{"CONTRACT" + ".md", "DESIGN" + ".md"}

// relativePath finds paths that climb directories: ../x, ../../x/y.
var relativePath = regexp.MustCompile(`(?:\.\./)+[\w.-]+(?:/[\w.-]+)*`)

// TestNothingRefersOutsideTheRepository: the repository is read on its own
// (by reviewers, CI, the image build), so no tracked file may cite a
// document outside it: the team's contract and design files by name, or a
// relative path that climbs out of the repository (../shared/...). The
// contract is docs/contract.md.
func TestNothingRefersOutsideTheRepository(t *testing.T) {
	root := repoRoot(t)
	out, err := exec.Command("git", "-C", root, "ls-files", "-z").Output()
	if err != nil {
		t.Fatalf("git ls-files (the check reads the tracked files, so it needs git and the repository's .git): %v", err)
	}
	files := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	if len(files) < 50 {
		t.Fatalf("git ls-files listed %d files: the check would be meaningless", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(f)))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, problem := range outsideReferences(f, b) {
			t.Errorf("%s: %s", f, problem)
		}
	}
}

// outsideReferences lists what in file (a repository-relative path with
// content b) points outside the repository.
func outsideReferences(file string, b []byte) []string {
	var problems []string
	for _, doc := range outsideDocs {
		if bytes.Contains(b, []byte(doc)) {
			problems = append(problems, "mentions "+doc+", a document outside the repository; cite docs/contract.md or the README")
		}
	}
	for _, m := range relativePath.FindAll(b, -1) {
		p := path.Join(path.Dir(file), string(m))
		if p == ".." || strings.HasPrefix(p, "../") {
			problems = append(problems, "the path "+string(m)+" leads outside the repository")
		}
	}
	return problems
}

// climb is n times "../", built so that this file holds no such path.
func climb(n int) string { return strings.Repeat("../", n) }

// The check itself, on the shapes it must catch and the ones it must let
// through (paths between the repository's own modules).
func TestOutsideReferences(t *testing.T) {
	for _, tc := range []struct {
		file, content string
		bad           bool
	}{
		{"processor/internal/x/x.go", "// (" + outsideDocs[0] + " section 4)", true},
		{"README.md", "see " + outsideDocs[1], true},
		{"README.md", "see ../shared/" + outsideDocs[0], true},
		{"docs/contract.md", "[x](../../shared/notes.md)", true},
		{"shared/standin/sts/sts.go", climb(4) + "shared/x", true},
		{"listener/app/config_test.go", `"../../shared/config/testdata/cdappconfig.json"`, false},
		{"shared/standin/sources/events_test.go", climb(2) + "event/testdata/fixtures", false},
		{"docs/contract.md", "[stand-ins](../shared/standin)", false},
		{"README.md", "see docs/contract.md", false},
	} {
		if got := len(outsideReferences(tc.file, []byte(tc.content))) > 0; got != tc.bad {
			t.Errorf("%s containing %q: flagged %v, want %v", tc.file, tc.content, got, tc.bad)
		}
	}
}
