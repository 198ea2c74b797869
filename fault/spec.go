package fault

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseAction parses an action:
//
//	delay(5ms)            sleep 5ms every hit
//	delay(1ms,10ms)       sleep a random duration in [1ms, 10ms]
//	error(0.1)            fail 10% of hits with ErrInjected; error() = always
//	close(0.5)            make the caller close its connection on 50% of hits
//	off                   switch the point off
//
// Any action may end in "*N" to fire at most N times, e.g. "error(1)*3",
// and in "@N/PERIOD" to fire at most N times per period (a burst of up to N,
// then N per period on average), e.g. "delay(5ms)@10/s", "error(1)@1/5s" or
// "close(1)@3/m"; PERIOD is s, m, h or a Go duration. Suffixes may come in
// either order. "off" parses to a nil *Action.
func ParseAction(s string) (*Action, error) {
	s = strings.TrimSpace(s)
	if s == "off" || s == "" {
		return nil, nil
	}
	a := &Action{}
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i < len(s)-1 {
		if err := a.parseSuffixes(s, s[i+1:]); err != nil {
			return nil, err
		}
		s = s[:i+1]
	}
	open := strings.IndexByte(s, '(')
	if open < 0 || !strings.HasSuffix(s, ")") {
		return nil, fmt.Errorf("fault action %q: want delay(D), delay(MIN,MAX), error(P), close(P) or off", s)
	}
	kind, args := s[:open], strings.TrimSpace(s[open+1:len(s)-1])
	var parts []string
	if args != "" {
		parts = strings.Split(args, ",")
	}
	switch kind {
	case "delay":
		a.Kind = Delay
		if len(parts) < 1 || len(parts) > 2 {
			return nil, fmt.Errorf("fault action %q: delay takes one duration or a range MIN,MAX", s)
		}
		var err error
		if a.Min, err = time.ParseDuration(strings.TrimSpace(parts[0])); err != nil || a.Min < 0 {
			return nil, fmt.Errorf("fault action %q: bad duration %q", s, parts[0])
		}
		if len(parts) == 2 {
			if a.Max, err = time.ParseDuration(strings.TrimSpace(parts[1])); err != nil || a.Max < a.Min {
				return nil, fmt.Errorf("fault action %q: bad range end %q (must be a duration >= %v)", s, parts[1], a.Min)
			}
		}
	case "error", "close":
		a.Kind = Error
		if kind == "close" {
			a.Kind = Close
		}
		a.Prob = 1
		if len(parts) > 1 {
			return nil, fmt.Errorf("fault action %q: %s takes one probability", s, kind)
		}
		if len(parts) == 1 {
			p, err := strconv.ParseFloat(strings.TrimSpace(parts[0]), 64)
			if err != nil || p <= 0 || p > 1 {
				return nil, fmt.Errorf("fault action %q: probability must be in (0, 1]", s)
			}
			a.Prob = p
		}
	default:
		return nil, fmt.Errorf("fault action %q: unknown action %q; want delay, error, close or off", s, kind)
	}
	return a, nil
}

// parseSuffixes reads the "*N" and "@N/PERIOD" suffixes of the action spec
// full into a.
func (a *Action) parseSuffixes(full, suf string) error {
	for suf = strings.TrimSpace(suf); suf != ""; suf = strings.TrimSpace(suf) {
		op := suf[0]
		rest := suf[1:]
		end := strings.IndexAny(rest, "*@")
		if end < 0 {
			end = len(rest)
		}
		tok := strings.TrimSpace(rest[:end])
		suf = rest[end:]
		switch op {
		case '*':
			n, err := strconv.ParseUint(tok, 10, 64)
			if err != nil || n == 0 || a.Count != 0 {
				return fmt.Errorf("fault action %q: count after '*' must be a positive integer, given once", full)
			}
			a.Count = n
		case '@':
			ns, unit, ok := strings.Cut(tok, "/")
			n, err := strconv.ParseUint(strings.TrimSpace(ns), 10, 64)
			if !ok || err != nil || n == 0 || a.Limit != 0 {
				return fmt.Errorf("fault action %q: rate after '@' must be N/PERIOD with N a positive integer, e.g. @10/s, given once", full)
			}
			unit = strings.TrimSpace(unit)
			switch unit {
			case "s", "m", "h":
				unit = "1" + unit
			}
			per, err := time.ParseDuration(unit)
			if err != nil || per <= 0 {
				return fmt.Errorf("fault action %q: rate period %q: want s, m, h or a positive Go duration such as 100ms", full, unit)
			}
			a.Limit, a.Per = n, per
		default:
			return fmt.Errorf("fault action %q: unexpected %q after ')'; want *N or @N/PERIOD", full, suf)
		}
	}
	return nil
}

// String formats the action in the syntax ParseAction reads.
func (a *Action) String() string {
	if a == nil {
		return "off"
	}
	var s string
	switch a.Kind {
	case Delay:
		s = "delay(" + a.Min.String()
		if a.Max > a.Min {
			s += "," + a.Max.String()
		}
		s += ")"
	case Error:
		s = "error(" + strconv.FormatFloat(a.Prob, 'g', -1, 64) + ")"
	case Close:
		s = "close(" + strconv.FormatFloat(a.Prob, 'g', -1, 64) + ")"
	}
	if a.Limit > 0 {
		s += "@" + strconv.FormatUint(a.Limit, 10) + "/"
		switch a.Per {
		case 0, time.Second:
			s += "s"
		case time.Minute:
			s += "m"
		case time.Hour:
			s += "h"
		default:
			s += a.Per.String()
		}
	}
	if a.Count > 0 {
		s += "*" + strconv.FormatUint(a.Count, 10)
	}
	return s
}

// Apply parses "point=action" and sets it. The point must be registered.
func Apply(spec string) error {
	name, act, ok := strings.Cut(spec, "=")
	if !ok {
		return fmt.Errorf("fault spec %q: want point=action, e.g. sink.write.before=delay(5ms)", spec)
	}
	name = strings.TrimSpace(name)
	p, ok := Lookup(name)
	if !ok {
		return fmt.Errorf("fault spec %q: %w %q (sluice run --help lists them)", spec, ErrUnknownPoint, name)
	}
	a, err := ParseAction(act)
	if err != nil {
		return err
	}
	p.Set(a)
	return nil
}

// ApplyAll applies each spec; specs may also hold several comma-free specs
// separated by ';'.
func ApplyAll(specs []string) error {
	for _, s := range specs {
		for _, one := range strings.Split(s, ";") {
			if strings.TrimSpace(one) == "" {
				continue
			}
			if err := Apply(one); err != nil {
				return err
			}
		}
	}
	return nil
}

// Reset switches every point off.
func Reset() {
	for _, p := range All() {
		p.Set(nil)
	}
}
