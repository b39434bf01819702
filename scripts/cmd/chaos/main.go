// Command chaos is `make chaos`: the reliability proof of issue 7. It runs
// every fault scenario of package scripts/chaos against the real programs
// in bin/ (each as its own process), prints a summary line per scenario and
// exits non-zero when any invariant failed. Logs of the programs go to
// bin/chaos-logs/<scenario>.log.
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

	"github.com/cloudoreg/cloudoreg/scripts/chaos"
)

func main() {
	bin := flag.String("bin", "bin", "folder with the listener, processor and stack binaries")
	seed := flag.Uint64("seed", 1, "seed of the workload and of the fault moments")
	short := flag.Bool("short", false, "the small scale of `make test` instead of the full one")
	sources := flag.Int("sources", 0, "sources per scenario (0: the scale's)")
	only := flag.String("scenario", "", "comma-separated scenarios to run (default: all)")
	logs := flag.String("logs", "", "folder for the programs' logs (default: <bin>/chaos-logs)")
	verbose := flag.Bool("v", false, "list the injected faults of passing scenarios too")
	var env []string
	flag.Func("env", "KEY=VALUE added to every process's environment (repeatable), e.g. -env RETRY_BUDGET=2s to see the invariants fail", func(s string) error {
		if !strings.Contains(s, "=") {
			return fmt.Errorf("want KEY=VALUE, not %q", s)
		}
		env = append(env, s)
		return nil
	})
	flag.Parse()

	scale := chaos.Full
	if *short {
		scale = chaos.Short
	}
	if *sources > 0 {
		scale.Sources = *sources
	}
	if *logs == "" {
		*logs = filepath.Join(*bin, "chaos-logs")
	}
	o := chaos.Options{BinDir: *bin, Scale: scale, Seed: *seed, LogDir: *logs, Progress: os.Stdout, Env: env}
	if *only != "" {
		o.Only = strings.Split(*only, ",")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Printf("Chaos: %d scenarios, %d sources each, seed %d (logs: %s)\n", len(chaos.Scenarios), scale.Sources, *seed, *logs)
	started := time.Now()
	results := chaos.Run(ctx, o)
	fmt.Printf("\nSummary (%s in all):\n%s", time.Since(started).Round(time.Second), chaos.Report(results, *verbose))
	for _, r := range results {
		if !r.Passed() {
			fmt.Println("\nCHAOS FAILED: an invariant did not hold (see above and the logs)")
			os.Exit(1)
		}
	}
	if len(results) == 0 {
		fmt.Println("no scenario matched -scenario")
		os.Exit(2)
	}
	fmt.Println("\nEvery invariant held in every scenario.")
}
