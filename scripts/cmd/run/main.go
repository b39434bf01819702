// Command run is `make run`: the local stack, the listener and two
// processors in one terminal, with their logs interleaved. Ctrl-C stops
// everything in order.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cloudoreg/cloudoreg/scripts/internal/localrun"
)

const banner = `
Cloudoreg is running. Create a source (it becomes available within seconds):

  curl -s -X POST {sources}/api/sources/v3.1/bulk_create \
    -H 'Content-Type: application/json' -H 'x-rh-sources-org-id: 1234567' \
    -d '{"sources":[{"name":"my-aws","source_type_name":"amazon"}],
         "applications":[{"source_name":"my-aws","application_type_name":"cloud-meter"}],
         "authentications":[{"resource_type":"application","resource_name":"cloud-meter",
           "authtype":"cloud-meter-arn","username":"arn:aws:iam::123456789012:role/cloud-meter-trusted",
           "extra":{"external_id":"cloudoreg-demo-external-id"}}]}'

Then see what the customer sees, and what RHSM holds:

  curl -s -H 'x-rh-sources-org-id: 1234567' {sources}/api/sources/v3.1/sources
  curl -s -H 'X-RhsmApi-AccountID: 1234567' {rhsm}/management/v1/cloud_access_providers/enabled

and what Cloudoreg did (the first source created is 1001):

  {ctl} status 1001

Press Ctrl-C to stop.
`

// localAdminToken is the processors' status API admin token under make run
// (a local secret only: CLOUDOREG_ADMIN_TOKEN in the environment wins).
const localAdminToken = "cloudoreg-local-admin"

func main() {
	bin := flag.String("bin", "bin", "folder with the stack, listener and processor binaries")
	processors := flag.Int("processors", 2, "how many processors to run")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	token := os.Getenv("CLOUDOREG_ADMIN_TOKEN")
	if token == "" {
		token = localAdminToken
	}
	sys, err := localrun.Start(ctx, localrun.Options{
		BinDir: *bin, Processors: *processors, Out: os.Stdout, LogFormat: "text",
		Env: []string{"CLOUDOREG_ADMIN_TOKEN=" + token},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "make run:", err)
		_ = sys.Stop(10 * time.Second)
		os.Exit(1)
	}
	ctl := "CLOUDOREG_ADMIN_TOKEN=" + token
	if api := sys.Ports().ProcessorPrivate; len(api) > 0 && api[0] != localrun.ProcessorPrivateBase {
		ctl += fmt.Sprintf(" CLOUDOREG_API_URL=http://127.0.0.1:%d", api[0])
	}
	fmt.Print(strings.NewReplacer("{sources}", sys.SourcesURL(), "{rhsm}", sys.RHSMBaseURL(),
		"{ctl}", ctl+" "+filepath.Join(*bin, "cloudoregctl")).Replace(banner))
	code := 0
	select {
	case <-ctx.Done():
	case name := <-sys.Exited():
		fmt.Fprintf(os.Stderr, "make run: %s exited unexpectedly; stopping everything\n", name)
		code = 1
	}
	if err := sys.Stop(30 * time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "make run:", err)
		code = 1
	}
	os.Exit(code)
}
