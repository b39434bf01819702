// Package bench measures Cloudoreg on this machine: each row of the table
// runs the real programs (bin/listener, bin/processor) as processes against
// one kfake broker, one NATS server and the stand-ins, next to a baseline
// measured in the same run on the same servers, so that the ratio holds on
// any machine even where the absolute numbers do not. Rates are counted
// from the servers' state (stream message counts, committed offsets) or
// the programs' counters, never by a consumer reading one message at a time.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

// Options size the run (flags of bin/bench).
type Options struct {
	BinDir, LogDir, Results string
	LogLevel                string // the programs' LOG_LEVEL

	Events          int // row 1: Application.pause events
	Sources         int // over this many sources
	MixEvents       int // row 2: events of the realistic mix
	LookupEvents    int // row 3: ApplicationAuthentication events
	Apps            int // row 3: distinct applications (the rest hit the index)
	ReconcileN      int // row 4: work messages per run
	Processors      []int
	LatencyN        int // row 5: sources reconciled with realistic latency
	LatencyEvents   int // row 6: events at light load
	LatencyRate     int // row 6: events per second
	HeldSources     int // row 8
	ReconcileEvery  time.Duration
	Partitions      int // WORK_PARTITIONS
	KafkaPartitions int
	Only            string // comma-separated row numbers; empty: all
}

// Row is one line of the table.
type Row struct {
	N        string  `json:"row"`
	Name     string  `json:"name"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Baseline float64 `json:"baseline"`
	BaseName string  `json:"baseline_name"`
	Ratio    float64 `json:"ratio"`
	Target   string  `json:"target"`
	Verdict  string  `json:"verdict"`
	Note     string  `json:"note,omitempty"`
}

// Results is what the run writes to its results file.
type Results struct {
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	Machine  Machine       `json:"machine"`
	Options  Options       `json:"options"`
	Rows     []Row         `json:"rows"`
}

// Machine is what the numbers were measured on.
type Machine struct {
	CPUs  int    `json:"cpus"`
	Model string `json:"model"`
	Go    string `json:"go"`
}

func thisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// Run runs the selected rows, printing each as it is measured, then the
// table, and writes Results to o.Results (.txt and .json).
func Run(ctx context.Context, o Options, out io.Writer) error {
	res := Results{Started: time.Now(), Machine: thisMachine(), Options: o}
	e, err := startEnv(ctx, o)
	if err != nil {
		return err
	}
	defer e.close()
	steps := []struct {
		rows string
		run  func(context.Context, *env) ([]Row, error)
	}{
		{"1,7", rowForwarding},
		{"2", rowMix},
		{"3", rowLookups},
		{"4,7", rowProcessorThroughput},
		{"5", rowLatencyScaling},
		{"6", rowEndToEnd},
		{"8", rowPeriodic},
	}
	for _, s := range steps {
		if !o.selected(s.rows) {
			continue
		}
		start := time.Now()
		rows, err := s.run(ctx, e)
		for _, r := range rows {
			fmt.Fprintf(out, "row %s %s: %s (%.1fs)\n", r.N, r.Name, r.valueText(), time.Since(start).Seconds())
		}
		res.Rows = append(res.Rows, rows...)
		if err != nil {
			res.Rows = append(res.Rows, Row{N: s.rows, Name: "error", Verdict: "FAILED", Note: err.Error()})
			fmt.Fprintf(out, "rows %s failed: %v\n", s.rows, err)
			if ctx.Err() != nil {
				break
			}
		}
	}
	res.Duration = time.Since(res.Started)
	text := res.Table()
	fmt.Fprint(out, "\n"+text)
	return res.write(o.Results, text)
}

func (o Options) selected(rows string) bool {
	if o.Only == "" {
		return true
	}
	for _, r := range strings.Split(rows, ",") {
		for _, want := range strings.Split(o.Only, ",") {
			if strings.TrimSpace(want) == r {
				return true
			}
		}
	}
	return false
}

func (r Row) valueText() string {
	if r.Unit == "" {
		return r.Note
	}
	return formatValue(r.Value, r.Unit)
}

func formatValue(v float64, unit string) string {
	switch unit {
	case "MiB", "ms", "s", "calls":
		return fmt.Sprintf("%.1f %s", v, unit)
	default:
		return fmt.Sprintf("%.0f %s", v, unit)
	}
}

// Table is the results as aligned text, with the machine.
func (res Results) Table() string {
	var b strings.Builder
	fmt.Fprintf(&b, "machine: %d CPUs, %s, %s; run of %s at %s\n", res.Machine.CPUs, res.Machine.Model, res.Machine.Go,
		res.Duration.Round(time.Second), res.Started.UTC().Format(time.RFC3339))
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "row\tmeasured\tvalue\tbaseline (same run)\tbaseline value\tratio\ttarget\tverdict")
	for _, r := range res.Rows {
		base, ratio := "", ""
		if r.BaseName != "" {
			base = formatValue(r.Baseline, r.Unit)
			ratio = fmt.Sprintf("%.2f", r.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.N, r.Name, r.valueText(), r.BaseName, base, ratio, r.Target, r.Verdict)
	}
	_ = tw.Flush()
	for _, r := range res.Rows {
		if r.Note != "" && r.Unit != "" {
			fmt.Fprintf(&b, "  %s: %s\n", r.N, r.Note)
		}
	}
	return b.String()
}

func (res Results) write(path, text string) error {
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path+".txt", []byte(text), 0o644); err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path+".json", b, 0o644)
}

// ratioRow fills in the ratio and the verdict of a row whose target is a
// minimum ratio (atLeast) or a maximum (atMost); 0 means no target.
func ratioRow(r Row, atLeast, atMost float64) Row {
	if r.Baseline > 0 {
		r.Ratio = r.Value / r.Baseline
	}
	switch {
	case atLeast > 0:
		r.Target = fmt.Sprintf(">= %.2f", atLeast)
		r.Verdict = verdict(r.Ratio >= atLeast)
	case atMost > 0:
		r.Target = fmt.Sprintf("<= %.2f", atMost)
		r.Verdict = verdict(r.Ratio <= atMost)
	default:
		r.Target, r.Verdict = "-", "-"
	}
	return r
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

// rate polls count until it reaches total and returns the rate from the
// first sample that saw progress to the one that saw the total: start-up
// (joining the group, binding consumers) is left out.
func rate(ctx context.Context, total float64, limit time.Duration, count func() (float64, error)) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var (
		t0   time.Time
		v0   float64
		last float64
	)
	err := poll(ctx, 20*time.Millisecond, func() (bool, error) {
		v, err := count()
		if err != nil {
			return false, err
		}
		last = v
		if t0.IsZero() && v > 0 {
			t0, v0 = time.Now(), v
		}
		return v >= total, nil
	})
	if err != nil {
		return 0, fmt.Errorf("%.0f of %.0f after %s: %w", last, total, limit, err)
	}
	secs := time.Since(t0).Seconds()
	if secs <= 0 || total == v0 {
		return 0, fmt.Errorf("all %.0f done before the first sample: make the load larger", total)
	}
	return (total - v0) / secs, nil
}
