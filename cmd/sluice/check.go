package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newCheckCmd(g *globals) *cobra.Command {
	var print bool
	cmd := &cobra.Command{
		Use:   "check [--config FILE]",
		Short: "Validate a config file and exit (1 when it is bad)",
		Long: `check loads the config file named by --config (or the built-in defaults
and SLUICE_* environment when none is given), validates it, and prints every
problem with the file, line and field. It exits 0 when the config is good and
1 when it is not. With --print it also prints the effective config, secrets
redacted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig(cmd.Flags(), nil)
			if err == nil {
				_, err = newProcessor(cfg) // compiles the processing steps
			}
			if err != nil {
				fmt.Fprintln(g.stderr, err)
				return exitCodeError{exitError}
			}
			if print {
				b, err := cfg.YAML()
				if err != nil {
					return err
				}
				_, _ = g.stdout.Write(b)
			}
			src := g.configPath
			if src == "" {
				src = "defaults and environment"
			}
			fmt.Fprintf(g.stdout, "%s: ok\n", src)
			return nil
		},
	}
	cmd.Flags().BoolVar(&print, "print", false, "print the effective config (secrets redacted)")
	return cmd
}
