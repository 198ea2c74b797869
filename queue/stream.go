package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-dev/sluice/obs"
)

// Retention. The consumed stream is a work queue (jetstream.WorkQueuePolicy):
// the server removes a message as soon as the consumer acknowledges it, so
// its disk holds only what waits to be delivered. Every sluice instance
// shares the one durable consumer, which a work queue allows (it refuses a
// second consumer on the same subjects, which would otherwise take messages
// away from sluice). Interest retention was rejected: a message published
// while the stream has no consumer (before the first start, or after the
// consumer was deleted) is acknowledged to its producer and then not
// stored at all, and any other consumer left on the stream (an operator's
// tap) would keep every message on disk until it too acknowledged it. The
// dead-letter stream keeps limits retention: sluice never consumes it, and
// its own byte and age limits bound it.

// errCodeNoStorage is JetStream's error for a stream whose max_bytes the
// server or account cannot reserve ("insufficient storage resources
// available").
const errCodeNoStorage jetstream.ErrorCode = 10047

// streamSpec is what Open wants of one stream.
type streamSpec struct {
	cfg jetstream.StreamConfig
	// subjectsKey is the configuration key of its subjects; limitsKey
	// prefixes the keys of its limits ("queue." + "max_bytes").
	subjectsKey, limitsKey string
	// dlq marks the dead-letter stream: an existing one may capture more
	// subjects than the dead-letter subject, and is never deleted.
	dlq bool
}

// inputSpec and deadLetterSpec are the streams Open prepares for cfg
// (with defaults applied).
func inputSpec(cfg Options) streamSpec {
	return streamSpec{
		cfg: jetstream.StreamConfig{
			Name:        cfg.Stream,
			Description: "sluice input",
			Subjects:    cfg.Subjects,
			Storage:     storageType(cfg.Storage),
			Replicas:    cfg.Replicas,
			Retention:   jetstream.WorkQueuePolicy,
			Discard:     discardPolicy(cfg.Discard),
			MaxBytes:    maxBytes(cfg.MaxBytes),
			MaxAge:      maxAge(cfg.MaxAge),
		},
		subjectsKey: "queue.subjects",
		limitsKey:   "queue.",
	}
}

func deadLetterSpec(cfg Options) streamSpec {
	return streamSpec{
		cfg: jetstream.StreamConfig{
			Name:        cfg.DeadLetterStream,
			Description: "sluice dead letters: records that failed processing, with the reason in the Sluice-Reason header",
			Subjects:    []string{cfg.DeadLetterSubject},
			Storage:     storageType(cfg.Storage),
			Replicas:    cfg.Replicas,
			Retention:   jetstream.LimitsPolicy,
			Discard:     discardPolicy(cfg.DeadLetterDiscard),
			MaxBytes:    maxBytes(cfg.DeadLetterMaxBytes),
			MaxAge:      maxAge(cfg.DeadLetterMaxAge),
		},
		subjectsKey: "queue.dead_letter_subject",
		limitsKey:   "queue.dead_letter_",
		dlq:         true,
	}
}

// checkDiscard rejects a Discard that is neither DiscardNew nor DiscardOld.
func checkDiscard(key string, d Discard) error {
	if d != DiscardNew && d != DiscardOld {
		return fmt.Errorf("%w: %s must be %q or %q (got %q)", ErrBadConfig, key, DiscardNew, DiscardOld, d)
	}
	return nil
}

func storageType(s Storage) jetstream.StorageType {
	if s == StorageMemory {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// checkStorage rejects a Storage that is neither file nor memory.
func checkStorage(s Storage) error {
	if s != StorageFile && s != StorageMemory {
		return fmt.Errorf("%w: queue.storage must be %q or %q (got %q)", ErrBadConfig, StorageFile, StorageMemory, s)
	}
	return nil
}

func discardPolicy(d Discard) jetstream.DiscardPolicy {
	if d == DiscardOld {
		return jetstream.DiscardOld
	}
	return jetstream.DiscardNew
}

// maxBytes and maxAge turn an option into JetStream's value: -1 and 0 mean
// no limit there.
func maxBytes(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

func maxAge(d time.Duration) time.Duration { return max(d, 0) }

// ensureStream creates the stream spec describes, or checks that the
// existing one captures the same subjects (or, for the dead-letter stream,
// at least the dead-letter subject) and has the same retention, discard
// policy and limits. A stream that differs only in those is an error
// wrapping ErrStreamMismatch that lists the differences, unless cfg.Migrate
// is set: then it is migrated (see migrate).
func ensureStream(ctx context.Context, js jetstream.JetStream, spec streamSpec, cfg Options, log *slog.Logger) (jetstream.Stream, error) {
	want := spec.cfg
	st, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) && cfg.Bind {
		return nil, fmt.Errorf("%w: stream %q does not exist and queue.create is false, so sluice does not create it: create it (retention %s, subjects %v, %smax_bytes %s) or set queue.create: true", ErrStreamMismatch, want.Name, retentionName(want.Retention), want.Subjects, spec.limitsKey, formatBytes(want.MaxBytes))
	}
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = js.CreateStream(ctx, want)
		if err == nil {
			return st, nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeNoStorage {
			return nil, fmt.Errorf("queue: create stream %q with %smax_bytes %s: %w (the server reserves a stream's max_bytes when it is created: free disk space, lower %smax_bytes, or raise the server's or account's JetStream storage limit)", want.Name, spec.limitsKey, formatBytes(want.MaxBytes), err, spec.limitsKey)
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, fmt.Errorf("queue: create stream %q capturing %v: %w", want.Name, want.Subjects, err)
		}
		// Another instance created it first, perhaps differently.
		st, err = js.Stream(ctx, want.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("queue: look up stream %q: %w (is JetStream enabled on the server?)", want.Name, err)
	}
	if err := checkStreamSubjects(st.CachedInfo().Config, spec); err != nil {
		return nil, err
	}
	diffs := settingDiffs(st.CachedInfo().Config, spec)
	if len(diffs) == 0 {
		return st, nil
	}
	if !cfg.Migrate {
		return nil, mismatchError(want.Name, diffs, spec)
	}
	return migrate(ctx, js, st, spec, diffs, cfg.Consumer, log)
}

// checkStreamSubjects checks the subjects of an existing stream.
func checkStreamSubjects(have jetstream.StreamConfig, spec streamSpec) error {
	want, field := spec.cfg, spec.subjectsKey
	if spec.dlq {
		for _, s := range have.Subjects {
			if server.SubjectMatchesFilter(want.Subjects[0], s) {
				return nil
			}
		}
		return fmt.Errorf("%w: dead-letter stream %q exists capturing %v, which does not include %s %q; set %s to one of its subjects or point queue.dead_letter_stream at another stream", ErrStreamMismatch, want.Name, have.Subjects, field, want.Subjects[0], field)
	}
	if !sameSet(have.Subjects, want.Subjects) {
		return fmt.Errorf("%w: stream %q exists capturing %v, but %s is %v; sluice does not change existing streams: set %s to match, or edit the stream yourself (nats stream edit %s)", ErrStreamMismatch, want.Name, have.Subjects, field, want.Subjects, field, want.Name)
	}
	return nil
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// settingDiff is one setting in which an existing stream differs from
// what sluice wants.
type settingDiff struct {
	key        string // the configuration key, or "retention" (not configurable)
	have, want string
}

func (d settingDiff) String() string {
	if d.key == "retention" {
		return fmt.Sprintf("retention %s, sluice needs %s", d.have, d.want)
	}
	return fmt.Sprintf("%s %s on the stream, %s configured", d.key, d.have, d.want)
}

// settingDiffs lists how have differs from spec in retention, discard
// policy and limits.
func settingDiffs(have jetstream.StreamConfig, spec streamSpec) []settingDiff {
	want, k := spec.cfg, spec.limitsKey
	var out []settingDiff
	if have.Retention != want.Retention {
		out = append(out, settingDiff{"retention", retentionName(have.Retention), retentionName(want.Retention)})
	}
	if have.Discard != want.Discard {
		out = append(out, settingDiff{k + "discard", discardName(have.Discard), discardName(want.Discard)})
	}
	if maxBytes(have.MaxBytes) != want.MaxBytes {
		out = append(out, settingDiff{k + "max_bytes", formatBytes(have.MaxBytes), formatBytes(want.MaxBytes)})
	}
	if maxAge(have.MaxAge) != want.MaxAge {
		out = append(out, settingDiff{k + "max_age", formatAge(have.MaxAge), formatAge(want.MaxAge)})
	}
	if have.Storage != want.Storage {
		out = append(out, settingDiff{"storage", have.Storage.String(), want.Storage.String()})
	}
	if max(have.Replicas, 1) != want.Replicas {
		out = append(out, settingDiff{"replicas", strconv.Itoa(max(have.Replicas, 1)), strconv.Itoa(want.Replicas)})
	}
	return out
}

// mismatchError explains diffs and how to migrate.
func mismatchError(name string, diffs []settingDiff, spec streamSpec) error {
	what := make([]string, len(diffs))
	retention := false
	for i, d := range diffs {
		what[i] = d.String()
		retention = retention || d.key == "retention"
	}
	how := fmt.Sprintf("set the %s* keys to match the stream, or start sluice once with queue.migrate: true (SLUICE_QUEUE_MIGRATE=true) to update the stream in place (refused if that would remove stored messages)", spec.limitsKey)
	if retention && !spec.dlq {
		how = "start sluice once with queue.migrate: true (SLUICE_QUEUE_MIGRATE=true): it deletes the stream and creates it again as a work queue, but only when its consumer has acknowledged every message in it; before that, stop the producers and let the sluice version that created the stream consume what is left"
	} else if retention {
		how = fmt.Sprintf("point queue.dead_letter_stream at a new stream, or copy the dead letters away and delete this one (nats stream rm %s): sluice never deletes dead letters", name)
	}
	return fmt.Errorf("%w: stream %q exists with other settings than sluice's (an earlier version of sluice, or someone else, created or edited it): %s. sluice does not change an existing stream unless told to: %s", ErrStreamMismatch, name, strings.Join(what, "; "), how)
}

// migrate brings the existing stream st to spec, logging each change, and
// never removes a stored message: limits and the discard policy are
// updated in place when the new limits keep every stored message; a
// consumed stream whose retention must change (JetStream cannot turn a
// stream into a work queue in place) is deleted and created again, only
// when consumer has acknowledged every message in it. Refusals wrap
// ErrStreamMismatch.
func migrate(ctx context.Context, js jetstream.JetStream, st jetstream.Stream, spec streamSpec, diffs []settingDiff, consumer string, log *slog.Logger) (jetstream.Stream, error) {
	info := st.CachedInfo()
	name := spec.cfg.Name
	changes := make([]string, len(diffs))
	recreate := false
	for i, d := range diffs {
		changes[i] = d.key + " " + d.have + " -> " + d.want
		if d.key == "retention" && (info.Config.Retention == jetstream.WorkQueuePolicy || spec.cfg.Retention == jetstream.WorkQueuePolicy) {
			recreate = true
		}
	}
	log = log.With(obs.KeyStream, name, obs.KeyChanges, changes)
	if !recreate {
		if why := wouldRemove(info.State, spec.cfg); why != "" {
			return nil, fmt.Errorf("%w: cannot migrate stream %q in place (%s): %s, and sluice never drops stored messages to migrate; raise the limit, or consume or copy away the messages first", ErrStreamMismatch, name, strings.Join(changes, ", "), why)
		}
		up := info.Config
		up.Retention, up.Discard, up.MaxBytes, up.MaxAge = spec.cfg.Retention, spec.cfg.Discard, spec.cfg.MaxBytes, spec.cfg.MaxAge
		st, err := js.UpdateStream(ctx, up)
		if err != nil {
			return nil, fmt.Errorf("queue: migrate stream %q (%s): %w", name, strings.Join(changes, ", "), err)
		}
		log.Warn("migrated stream in place (queue.migrate is set)")
		return st, nil
	}
	if spec.dlq {
		return nil, mismatchError(name, diffs, spec)
	}
	if info.State.Consumers > 1 {
		return nil, fmt.Errorf("%w: cannot migrate stream %q to a work queue: it has %d consumers, and a work queue allows only sluice's %q (deleting the stream would delete the others too); remove the others first (nats consumer rm %s NAME)", ErrStreamMismatch, name, info.State.Consumers, consumer, name)
	}
	// Stop intake while checking that everything was consumed: a producer
	// meanwhile gets an error ("no responders"), never a PubAck for a
	// message about to be deleted.
	paused := info.Config
	paused.Subjects = []string{"_sluice.migrating." + name}
	if _, err := js.UpdateStream(ctx, paused); err != nil {
		return nil, fmt.Errorf("queue: migrate stream %q: pause its subjects: %w", name, err)
	}
	resume := func() {
		if _, err := js.UpdateStream(context.WithoutCancel(ctx), info.Config); err != nil {
			log.Error("could not give the stream its subjects back after a refused migration; producers get errors until it has them again (nats stream edit)", obs.KeySubjects, info.Config.Subjects, obs.KeyErr, err)
		}
	}
	left, err := unacknowledged(ctx, st, consumer)
	if err != nil {
		resume()
		return nil, fmt.Errorf("queue: migrate stream %q: %w", name, err)
	}
	if left != "" {
		resume()
		return nil, fmt.Errorf("%w: cannot migrate stream %q to a work queue yet: %s, and deleting the stream to change its retention would lose them; stop the producers, let the sluice version that created the stream consume them, then start this one again with queue.migrate: true", ErrStreamMismatch, name, left)
	}
	if err := js.DeleteStream(ctx, name); err != nil {
		resume()
		return nil, fmt.Errorf("queue: migrate stream %q: delete it: %w", name, err)
	}
	st, err = js.CreateStream(ctx, spec.cfg)
	if err != nil {
		return nil, fmt.Errorf("queue: migrate stream %q: the old stream, fully consumed, was deleted, but creating it again failed: %w; start sluice again to create it", name, err)
	}
	log.Warn("migrated stream: it was fully consumed, so it was deleted and created again (queue.migrate is set); its messages are numbered from 1 under a new epoch", obs.KeyEpoch, epochOf(st.CachedInfo()))
	return st, nil
}

// wouldRemove says which stored messages limits want would remove at
// once, "" if none.
func wouldRemove(state jetstream.StreamState, want jetstream.StreamConfig) string {
	if state.Msgs == 0 {
		return ""
	}
	if want.MaxBytes > 0 && state.Bytes > uint64(want.MaxBytes) {
		return fmt.Sprintf("it holds %d messages in %s, more than max_bytes %s", state.Msgs, formatBytes(int64(state.Bytes)), formatBytes(want.MaxBytes))
	}
	if want.MaxAge > 0 && !state.FirstTime.IsZero() && time.Since(state.FirstTime) > want.MaxAge {
		return fmt.Sprintf("its oldest message is from %s, older than max_age %s", state.FirstTime.UTC().Format(time.RFC3339), formatAge(want.MaxAge))
	}
	return ""
}

// unacknowledged describes the messages of st that consumer has not
// acknowledged, "" when there are none. Without that consumer, every
// stored message counts.
func unacknowledged(ctx context.Context, st jetstream.Stream, consumer string) (string, error) {
	c, err := st.Consumer(ctx, consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		info, err := st.Info(ctx)
		if err != nil {
			return "", err
		}
		if info.State.Msgs > 0 {
			return fmt.Sprintf("it holds %d messages and has no consumer %q to tell which were consumed", info.State.Msgs, consumer), nil
		}
		return "", nil
	}
	if err != nil {
		return "", err
	}
	ci, err := c.Info(ctx)
	if err != nil {
		return "", err
	}
	// The stream's state after the consumer's: its last sequence cannot
	// be older than what the consumer saw.
	info, err := st.Info(ctx)
	if err != nil {
		return "", err
	}
	if ci.NumPending > 0 || ci.NumAckPending > 0 || (info.State.Msgs > 0 && ci.AckFloor.Stream < info.State.LastSeq) {
		return fmt.Sprintf("consumer %q has %d messages not yet delivered and %d delivered but not acknowledged", consumer, ci.NumPending, ci.NumAckPending), nil
	}
	return "", nil
}

// retentionName is the policy's name as the nats CLI writes it.
func retentionName(r jetstream.RetentionPolicy) string {
	switch r {
	case jetstream.LimitsPolicy:
		return "limits"
	case jetstream.InterestPolicy:
		return "interest"
	case jetstream.WorkQueuePolicy:
		return "workqueue"
	}
	return r.String()
}

func discardName(d jetstream.DiscardPolicy) string {
	if d == jetstream.DiscardOld {
		return string(DiscardOld)
	}
	return string(DiscardNew)
}

// formatBytes writes a limit of n bytes: "none" for 0 or less, else
// with the largest binary unit that divides it ("1GiB"), as the
// configuration writes sizes.
func formatBytes(n int64) string {
	if n <= 0 {
		return "none"
	}
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 40, "TiB"}, {1 << 30, "GiB"}, {1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		if n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

func formatAge(d time.Duration) string {
	if d <= 0 {
		return "none"
	}
	return d.String()
}
