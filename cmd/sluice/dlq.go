package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/sluice-dev/sluice/config"
	"github.com/sluice-dev/sluice/dlq"
	"github.com/sluice-dev/sluice/queue"
)

func newDLQCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "List and replay dead letters",
		Long: `dlq reads the dead-letter stream (queue.dead_letter_stream): records and
whole messages that failed processing, each with its original bytes and, as
headers, the reason, its code, the step, the rule, the byte offset and its
origin (subject, stream, sequence, record index).

It connects to queue.url, or, with the embedded queue, to the server of the
running sluice run at queue.listen.`,
	}
	var f filterFlags
	list := &cobra.Command{
		Use:   "list [--reason R] [--since T]",
		Short: "Show dead letters: time, reason code, origin, reason, a preview",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withDLQ(cmd, f, func(ctx context.Context, js jetstream.JetStream, cfg *config.Config, flt dlq.Filter) error {
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SEQ\tTIME\tCODE\tORIGIN\tSUBJECT\tREASON\tPREVIEW")
				n := 0
				err := dlq.List(ctx, js, cfg.Queue.DeadLetterStream, flt, func(l dlq.Letter) error {
					n++
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Seq, l.Time.UTC().Format(time.RFC3339), or(l.Code, "-"),
						l.Origin(), l.Subject, clipText(l.Reason, 80), preview(l.Data))
					return nil
				})
				if err != nil {
					return err
				}
				_ = tw.Flush()
				fmt.Fprintf(g.stdout, "%d dead letters\n", n)
				return nil
			})
		},
	}
	replay := &cobra.Command{
		Use:   "replay [--reason R] [--since T]",
		Short: "Republish selected dead letters to their original subject and remove them",
		Long: `replay republishes each selected dead letter to the subject its message was
published on, and deletes it from the dead-letter stream once the queue has
stored the copy; a letter whose publish fails stays. Fix the cause first
(the steps, or the producer), or the letters come back.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withDLQ(cmd, f, func(ctx context.Context, js jetstream.JetStream, cfg *config.Config, flt dlq.Filter) error {
				n, err := dlq.Replay(ctx, js, cfg.Queue.DeadLetterStream, flt)
				fmt.Fprintf(g.stdout, "replayed %d dead letters\n", n)
				return err
			})
		},
	}
	for _, c := range []*cobra.Command{list, replay} {
		c.Flags().StringVar(&f.reason, "reason", "", "only letters with this reason code (invalid_utf8, rejected, …) or whose reason contains it")
		c.Flags().StringVar(&f.since, "since", "", "only letters stored since this time (RFC 3339) or this long ago (a duration: 1h)")
	}
	cmd.AddCommand(list, replay)
	return cmd
}

type filterFlags struct{ reason, since string }

// filter parses the flags; now is the time a --since duration counts back from.
func (f filterFlags) filter(now time.Time) (dlq.Filter, error) {
	flt := dlq.Filter{Reason: f.reason}
	if f.since == "" {
		return flt, nil
	}
	if d, err := time.ParseDuration(f.since); err == nil {
		flt.Since = now.Add(-d)
		return flt, nil
	}
	t, err := time.Parse(time.RFC3339Nano, f.since)
	if err != nil {
		return flt, usageError{fmt.Errorf("--since %q: want a time like 2026-01-02T15:04:05Z or a duration like 1h", f.since)}
	}
	flt.Since = t
	return flt, nil
}

func (g *globals) withDLQ(cmd *cobra.Command, f filterFlags, fn func(context.Context, jetstream.JetStream, *config.Config, dlq.Filter) error) error {
	cfg, err := g.loadConfig(cmd.Flags(), nil)
	if err != nil {
		return err
	}
	flt, err := f.filter(time.Now())
	if err != nil {
		return err
	}
	logger, err := g.logger(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
	defer cancel()
	co := connectOptions(cfg)
	co.Logger = logger
	if co.URL == "" {
		co.URL = "nats://" + cfg.Queue.Listen // the running sluice run's embedded server
		if co.Token, err = clientToken(cfg, co.URL); err != nil {
			return err
		}
		if cfg.Queue.Auth != config.AuthUser {
			co.User, co.Password = "", ""
		}
	}
	nc, err := queue.Connect(ctx, nil, co)
	if err != nil {
		if hinted := authHint(err, cfg, co.Token); hinted != err {
			return hinted
		}
		return fmt.Errorf("%w (with the embedded queue, sluice run must be running: sluice dlq connects to its queue.listen)", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	return fn(ctx, js, cfg, flt)
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// preview shows the first bytes of a dead letter, quoted so that whatever
// it holds prints on one line.
func preview(b []byte) string {
	q := strconv.Quote(string(b[:min(len(b), 48)]))
	if len(b) > 48 {
		q += "…"
	}
	return q
}
