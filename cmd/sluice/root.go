package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sluice-dev/sluice/config"
	"github.com/sluice-dev/sluice/obs"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command ran and failed (bad config, lost records, ...)
	exitUsage = 2 // bad flags or arguments
)

// usageError marks an error in how the command was called.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitError carries a specific exit code with an error already reported.
type exitCodeError struct{ code int }

func (e exitCodeError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// globals are the flags every subcommand shares.
type globals struct {
	configPath string
	logFormat  string
	logLevel   string
	stdout     io.Writer
	stderr     io.Writer
}

// Main runs the sluice command line with args and returns the exit code.
func Main(args []string) int {
	g := &globals{stdout: os.Stdout, stderr: os.Stderr}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ec exitCodeError
	if errors.As(err, &ec) {
		return ec.code
	}
	fmt.Fprintf(g.stderr, "sluice: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitError
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "sluice",
		Short: "sluice moves records from a queue through workers to a Unix socket, losing none",
		Long: `sluice reads batches of records off a queue (NATS JetStream, embedded by
default), processes them on a pool of workers, and writes the results to a
local Unix socket that another process drains (sluice drain, or your own).

Start with:  sluice demo`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usageError{fmt.Errorf("%w (run '%s --help' for usage)", err, c.CommandPath())}
	})
	pf := root.PersistentFlags()
	pf.StringVarP(&g.configPath, "config", "c", "", "YAML config file (default: none; built-in defaults plus SLUICE_* environment)")
	pf.StringVar(&g.logFormat, "log-format", "", "log format: text or json (config log.format; default text)")
	pf.StringVar(&g.logLevel, "log-level", "", "log level: debug, info, warn or error (config log.level; default info)")
	root.AddCommand(newRunCmd(g), newDrainCmd(g), newLoadCmd(g), newDemoCmd(g), newCheckCmd(g), newTestCmd(g), newDLQCmd(g), newVersionCmd(g), newBenchCmd(g), newBenchReaderCmd(g), newBenchRunCmd(g), newBenchDrainCmd(g), newChaosCmd(g), newChaosNATSCmd(g), newConformanceCmd(), newStatusCmd(g), newTapCmd(g))
	return root
}

// flagKeys maps flag names to config keys, for flags that override config.
type flagKeys map[string]string

// loadConfig reads the config file and environment, then applies the flags
// that were set on the command line (defaults < file < env < flags).
func (g *globals) loadConfig(fs *pflag.FlagSet, keys flagKeys) (*config.Config, error) {
	cfg, err := g.loadConfigOnly(fs, keys)
	if err != nil {
		return nil, err
	}
	return cfg, cfg.CheckFaultPoints()
}

func (g *globals) loadConfigOnly(fs *pflag.FlagSet, keys flagKeys) (*config.Config, error) {
	return config.LoadWith(g.configPath, func(cfg *config.Config) error {
		var ferr error
		fs.Visit(func(f *pflag.Flag) {
			key, ok := keys[f.Name]
			if !ok || ferr != nil {
				return
			}
			val := f.Value.String()
			if sv, ok := f.Value.(pflag.SliceValue); ok {
				val = strings.Join(sv.GetSlice(), ",")
			}
			if err := cfg.Set(key, val); err != nil {
				ferr = usageError{fmt.Errorf("--%s: %w", f.Name, err)}
			}
		})
		if ferr != nil {
			return ferr
		}
		for key, val := range map[string]string{"log.format": g.logFormat, "log.level": g.logLevel} {
			if val != "" {
				if err := cfg.Set(key, val); err != nil {
					return usageError{err}
				}
			}
		}
		return nil
	})
}

func (g *globals) logger(cfg *config.Config) (*slog.Logger, error) {
	return obs.NewLogger(g.stderr, cfg.Log.Format, cfg.Log.Level)
}

// signalContext returns a context cancelled by the first SIGINT or SIGTERM;
// a second one exits at once with status 1.
func signalContext(logger *slog.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			logger.Info("shutting down gracefully; send the signal again to abort", obs.KeySignal, s.String())
			cancel()
		case <-done:
			return
		}
		select {
		case s := <-ch:
			logger.Error("second signal: aborting without waiting for in-flight work", obs.KeySignal, s.String())
			os.Exit(exitError)
		case <-done:
		}
	}()
	return ctx, func() { signal.Stop(ch); close(done); cancel() }
}
