// Command bench measures Cloudoreg on this machine (`make bench`): every row
// of the performance table against a baseline measured in the same run,
// printed and written to -results (.txt and .json). `bench bridge ...` is
// the bare bridge the first row compares the listener with, run as a
// process of its own like the listener.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cloudoreg/cloudoreg/scripts/internal/bench"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "bridge" {
		if err := bench.RunBridge(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "bridge:", err)
			os.Exit(1)
		}
		return
	}
	var o bench.Options
	var procs string
	flag.StringVar(&o.BinDir, "bin", "bin", "directory of the listener and processor binaries")
	flag.StringVar(&o.LogDir, "logs", "bin/bench-logs", "directory of the programs' logs")
	flag.StringVar(&o.Results, "results", "bin/bench-results", "results file, without extension (.txt and .json are written)")
	flag.StringVar(&o.LogLevel, "log-level", "info", "LOG_LEVEL of the programs")
	flag.IntVar(&o.Events, "events", 200_000, "row 1: Application.pause events")
	flag.IntVar(&o.Sources, "sources", 1000, "rows 1 and 2: sources the events are spread over")
	flag.IntVar(&o.MixEvents, "mix-events", 200_000, "row 2: events of the realistic mix")
	flag.IntVar(&o.LookupEvents, "lookup-events", 20_000, "row 3: ApplicationAuthentication events")
	flag.IntVar(&o.Apps, "apps", 10_000, "row 3: distinct applications (the other events find the routing index)")
	flag.IntVar(&o.ReconcileN, "reconciles", 2000, "row 4: sources reconciled per run")
	flag.StringVar(&procs, "processors", "1,2,4", "row 4: processor processes of each run")
	flag.IntVar(&o.LatencyN, "latency-sources", 1000, "row 5: sources reconciled with realistic latency")
	flag.IntVar(&o.LatencyEvents, "e2e-events", 200, "row 6: events at light load")
	flag.IntVar(&o.LatencyRate, "e2e-rate", 20, "row 6: events per second")
	flag.IntVar(&o.HeldSources, "held", 10_000, "row 8: sources holding a claim")
	flag.DurationVar(&o.ReconcileEvery, "reconcile-every", 2*time.Minute, "row 8: RECONCILE_EVERY (a sweep of the claims must take less than a hundredth of it)")
	flag.IntVar(&o.Partitions, "partitions", 64, "WORK_PARTITIONS")
	flag.IntVar(&o.KafkaPartitions, "kafka-partitions", 3, "partitions of each event topic")
	flag.StringVar(&o.Only, "rows", "", "comma-separated rows to run (1-8); empty: all")
	flag.Parse()
	for _, p := range strings.Split(procs, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || k < 1 {
			fmt.Fprintf(os.Stderr, "-processors: %q is not a positive number\n", p)
			os.Exit(2)
		}
		o.Processors = append(o.Processors, k)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := bench.Run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
