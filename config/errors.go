package config

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is what every *FieldError unwraps to, so callers can tell a bad
// configuration (exit status 1, fix the config) from other failures with
// errors.Is(err, config.ErrInvalid).
var ErrInvalid = errors.New("invalid configuration")

// ErrUnknownKey is returned (wrapped) by Set for a key that names no field.
var ErrUnknownKey = errors.New("unknown config key")

// Sources of a value, as FieldError.Source holds them; an environment
// variable's name (SLUICE_...) is the fourth kind.
const (
	// SourceFile: the value came from the config file (File, Line, Column).
	SourceFile = "file"
	// SourceDefault: nothing set the value; it is the default.
	SourceDefault = "default"
	// SourceFlag: the value was set with Config.Set (the command line).
	SourceFlag = "flag"
)

// FieldError is one problem with one field. Load and Validate return every
// problem at once, joined with errors.Join, one per line, those with a line
// number first in line order.
type FieldError struct {
	// File is the config file the value came from; empty when it did not
	// come from a file.
	File string
	// Line and Column locate the value in File, counting from 1; 0 when
	// unknown.
	Line, Column int
	// Field is the dotted key, e.g. "pipeline.workers", "queue.subjects[1]";
	// empty for a problem with the file as a whole (YAML syntax).
	Field string
	// Msg says what is wrong, e.g. "must be at least 1 (got 0)".
	Msg string
	// Source is where the value came from: SourceFile, SourceDefault,
	// SourceFlag, or the name of an environment variable (SLUICE_...).
	// Empty when nobody knows: a Config built in Go code rather than by
	// Load, or a value Set failed to parse (the caller knows where it came
	// from).
	Source string
}

// Error formats the problem as
//
//	file:line:col: field: msg                 (from the file)
//	field: msg (from SLUICE_PIPELINE_WORKERS)  (from the environment)
//	field: msg (from the command line)         (from Set)
//	field: msg (default value)                 (a default)
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
			if e.Column > 0 {
				fmt.Fprintf(&b, ":%d", e.Column)
			}
		}
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	switch {
	case e.Source == SourceDefault:
		b.WriteString(" (default value)")
	case e.Source == SourceFlag:
		b.WriteString(" (from the command line)")
	case strings.HasPrefix(e.Source, envPrefix):
		fmt.Fprintf(&b, " (from %s)", e.Source)
	}
	return b.String()
}

// Unwrap returns ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }
