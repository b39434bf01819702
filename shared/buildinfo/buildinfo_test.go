package buildinfo

import (
	"runtime"
	"testing"
)

func TestStampedValuesWin(t *testing.T) {
	defer func(v, r string) { Version, Revision = v, r }(Version, Revision)
	Version, Revision = "1.2.3", "abc123"
	got := Get()
	if got.Version != "1.2.3" || got.Revision != "abc123" || got.GoVersion != runtime.Version() {
		t.Fatalf("Get() = %+v", got)
	}
}

func TestUnstampedIsNeverEmpty(t *testing.T) {
	defer func(v, r string) { Version, Revision = v, r }(Version, Revision)
	Version, Revision = "", ""
	got := Get()
	if got.Version == "" || got.Revision == "" || got.GoVersion == "" {
		t.Fatalf("Get() = %+v: every field must say something", got)
	}
}
