package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/drain"
	"github.com/sluice-dev/sluice/fault"
	"github.com/sluice-dev/sluice/obs"
	"github.com/sluice-dev/sluice/pipeline"
	"github.com/sluice-dev/sluice/process"
	"github.com/sluice-dev/sluice/queue"
	"github.com/sluice-dev/sluice/sink"
	sluicestatus "github.com/sluice-dev/sluice/status"
	"github.com/sluice-dev/sluice/tap"
)

var updateDocs = flag.Bool("update", false, "rewrite the generated blocks of README.md")

// recorder is a Registerer that remembers every metric described to it.
type recorder struct {
	prometheus.Registerer
	descs map[string][2]string // name → help, labels
}

var descRE = regexp.MustCompile(`fqName: "([^"]+)", help: "((?:[^"\\]|\\.)*)".*variableLabels: \{([^}]*)\}`)

func (r *recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := descRE.FindStringSubmatch(d.String()); m != nil {
			r.descs[m[1]] = [2]string{m[2], m[3]}
		}
	}
	return r.Registerer.Register(c)
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// TestREADME_Generated keeps the README's metrics and fault-point lists true:
// they are generated from what the parts actually register.
// go test ./cmd/sluice -run TestREADME -update rewrites them.
func TestREADME_Generated(t *testing.T) {
	descs := registeredMetrics(t)
	names := make([]string, 0, len(descs))
	for n := range descs {
		names = append(names, n)
	}
	sort.Strings(names)
	var metrics bytes.Buffer
	metrics.WriteString("| metric | labels | meaning |\n| --- | --- | --- |\n")
	for _, n := range names {
		d := descs[n]
		fmt.Fprintf(&metrics, "| `%s` | %s | %s |\n", n, d[1], strings.ReplaceAll(d[0], "|", "\\|"))
	}

	var faults bytes.Buffer
	faults.WriteString("| point | where |\n| --- | --- |\n")
	for _, p := range fault.All() {
		if strings.Contains(p.Name(), "test") || strings.Contains(p.Name(), "bench") {
			continue // points registered by tests
		}
		fmt.Fprintf(&faults, "| `%s` | %s |\n", p.Name(), strings.ReplaceAll(p.Doc(), "|", "\\|"))
	}

	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	got := replaceBlock(t, readme, "metrics", metrics.String())
	got = replaceBlock(t, got, "faults", faults.String())
	if *updateDocs {
		if err := os.WriteFile("../../README.md", got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(got, readme) {
		t.Fatal("README.md's generated metrics or fault-point list is stale: run go test ./cmd/sluice -run TestREADME -update")
	}
}

// registeredMetrics builds every part of sluice run and of the drainer, as
// the service does, and returns every metric they register: name → help,
// labels.
func registeredMetrics(t *testing.T) map[string][2]string {
	t.Helper()
	rec := &recorder{Registerer: prometheus.NewRegistry(), descs: map[string][2]string{}}
	cfg, dir := testConfig(t)
	ctx := context.Background()

	eo := embeddedOptions(cfg)
	eo.Logger = quietLogger()
	emb, err := queue.StartEmbedded(eo)
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()
	nc, err := queue.Connect(ctx, emb, queue.ConnectOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	qo := queueOptions(cfg)
	qo.Logger, qo.Registerer = quietLogger(), rec
	src, err := queue.Open(ctx, nc, qo)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	snk := sink.New(sink.Options{Path: cfg.Sink.Socket, Registerer: rec, Logger: quietLogger()})
	defer snk.Close()
	pipeline.New(src, src, process.Validator{}, snk, pipeline.Options{Registerer: rec, Logger: quietLogger(), Tap: tap.NewHub(rec)})
	rec.MustRegister(src.BacklogCollector())
	if err := sluicestatus.RegisterLimits(rec, statusOptions(cfg, "")); err != nil {
		t.Fatal(err)
	}
	fr, err := obs.StartFlightRecorder(obs.FlightOptions{Dir: filepath.Join(dir, "traces"), Registerer: rec, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer fr.Close()
	rec.MustRegister(obs.FaultCollector{})
	drainRec := &recorder{Registerer: prometheus.NewRegistry(), descs: rec.descs}
	if _, err := drain.New(drain.Options{Socket: filepath.Join(dir, "d.sock"), Out: filepath.Join(dir, "out"),
		Framing: "acked", Registerer: drainRec, Logger: quietLogger()}); err != nil {
		t.Fatal(err)
	}

	return rec.descs
}

// replaceBlock replaces the text between <!-- NAME:begin --> and
// <!-- NAME:end --> with body.
func replaceBlock(t *testing.T, doc []byte, name, body string) []byte {
	t.Helper()
	begin, end := []byte("<!-- "+name+":begin -->\n"), []byte("<!-- "+name+":end -->")
	i, j := bytes.Index(doc, begin), bytes.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("README.md lacks the %s block markers", name)
	}
	out := append([]byte(nil), doc[:i+len(begin)]...)
	out = append(out, body...)
	return append(out, doc[j:]...)
}
