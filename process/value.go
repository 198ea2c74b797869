package process

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"
)

// decode turns one raw JSON value, already checked by the gate, into the
// Go value an expression sees: string, int (an integer that fits in 64
// bits), float64, bool, nil, or for objects and arrays map[string]any and
// []any. Strings without escapes alias raw: raw must stay unchanged while
// the value is in use (a record is never modified while it is processed).
func decode(raw []byte) (any, error) { return decodeIn(nil, raw) }

// decodeIn is decode boxing strings and numbers in b (nil: as Go does).
func decodeIn(b *box, raw []byte) (any, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	switch c := raw[0]; {
	case c == '"':
		s := raw[1 : len(raw)-1]
		for _, b := range s {
			if b == '\\' {
				var out string
				err := json.Unmarshal(raw, &out)
				return out, err
			}
		}
		if len(s) == 0 {
			return "", nil
		}
		if b != nil {
			return b.str(unsafe.String(&s[0], len(s))), nil
		}
		return unsafe.String(&s[0], len(s)), nil
	case c == 't':
		return true, nil
	case c == 'f':
		return false, nil
	case c == 'n':
		return nil, nil
	case c == '-' || c >= '0' && c <= '9':
		str := unsafe.String(&raw[0], len(raw))
		if n, err := strconv.ParseInt(str, 10, 64); err == nil {
			if b != nil {
				return b.int(int(n)), nil
			}
			return int(n), nil
		}
		f, err := strconv.ParseFloat(str, 64)
		if b != nil && err == nil {
			return b.float(f), err
		}
		return f, err
	}
	var v any
	err := json.Unmarshal(raw, &v)
	return v, err
}

// errNotJSON is wrapped when a step's value has no JSON form.
var errNotJSON = errors.New("value has no JSON form")

// appendJSON appends v as JSON to b. Strings are written as valid UTF-8
// (invalid bytes become U+FFFD), so whatever an expression returns, the
// record stays within the gate's rules.
func appendJSON(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case string:
		return appendString(b, x), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case int32:
		return strconv.AppendInt(b, int64(x), 10), nil
	case uint64:
		return strconv.AppendUint(b, x, 10), nil
	case float64:
		return appendFloat(b, x)
	case float32:
		return appendFloat(b, float64(x))
	case time.Time:
		b = append(b, '"')
		b = x.UTC().AppendFormat(b, time.RFC3339Nano)
		return append(b, '"'), nil
	case time.Duration:
		return appendString(b, x.String()), nil
	}
	out, err := json.Marshal(v)
	if err != nil {
		return b, fmt.Errorf("%w: %v", errNotJSON, err)
	}
	return append(b, out...), nil
}

func appendFloat(b []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return b, fmt.Errorf("%w: %v (JSON has no NaN or infinity; a division by zero?)", errNotJSON, f)
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.AppendInt(b, int64(f), 10), nil
	}
	abs := math.Abs(f)
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		return strconv.AppendFloat(b, f, 'e', -1, 64), nil
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64), nil
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += n
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
