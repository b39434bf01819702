// Package buildinfo says which build of Cloudoreg is running. The version and
// revision are stamped at build time (make build and the images pass
// -ldflags "-X github.com/cloudoreg/cloudoreg/shared/buildinfo.Version=...");
// a plain `go build` falls back to what the Go toolchain recorded.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Stamped at build time with -ldflags -X.
var (
	Version  = ""
	Revision = ""
)

// Info is the running build.
type Info struct {
	Version   string
	Revision  string
	GoVersion string
}

// Get returns the running build, "unknown" for what nobody recorded.
func Get() Info {
	i := Info{Version: Version, Revision: Revision, GoVersion: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && i.Revision == "" {
				i.Revision = s.Value
			}
		}
	}
	if i.Version == "" {
		i.Version = "unknown"
	}
	if i.Revision == "" {
		i.Revision = "unknown"
	}
	return i
}
