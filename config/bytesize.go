package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"
)

// ByteSize is a number of bytes. In YAML, the environment and Set it is
// written as a plain integer (16777216) or an integer with a unit: B, KiB,
// MiB, GiB, TiB (powers of 1024) or kB, MB, GB, TB (powers of 1000); units
// are case-insensitive apart from that "i", and a space may separate number
// and unit ("16 MiB"). Convert with int64(b).
type ByteSize int64

// Units of ByteSize.
const (
	KiB ByteSize = 1 << 10
	MiB ByteSize = 1 << 20
	GiB ByteSize = 1 << 30
	TiB ByteSize = 1 << 40
)

var byteUnits = map[string]ByteSize{
	"":    1,
	"b":   1,
	"kib": KiB, "mib": MiB, "gib": GiB, "tib": TiB,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
}

// ParseByteSize parses s as described on ByteSize. Negative sizes are
// rejected.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	unit, ok := byteUnits[strings.ToLower(strings.TrimSpace(t[i:]))]
	if i == 0 || !ok {
		return 0, fmt.Errorf("must be a byte size like 16777216 or \"16MiB\" (got %q)", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || n > math.MaxInt64/int64(unit) {
		return 0, fmt.Errorf("byte size %q is too large", s)
	}
	return ByteSize(n) * unit, nil
}

// String writes b with the largest binary unit that divides it exactly
// ("16MiB", "64KiB"), or as plain bytes ("1000"). ParseByteSize reads it
// back.
func (b ByteSize) String() string {
	for _, u := range []struct {
		size ByteSize
		name string
	}{{TiB, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}} {
		if b != 0 && b%u.size == 0 {
			return strconv.FormatInt(int64(b/u.size), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// MarshalText implements encoding.TextMarshaler with String's format.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseByteSize.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// UnmarshalYAML lets go-yaml decode a ByteSize from an integer or a string
// with a unit. (Load does not need it; it is for other decoders.)
func (b *ByteSize) UnmarshalYAML(data []byte) error {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case uint64:
		if v > math.MaxInt64 {
			return fmt.Errorf("byte size %d is too large", v)
		}
		*b = ByteSize(v)
		return nil
	case int:
		if v < 0 {
			return fmt.Errorf("must be a byte size like 16777216 or \"16MiB\" (got %d)", v)
		}
		*b = ByteSize(v)
		return nil
	case int64:
		if v < 0 {
			return fmt.Errorf("must be a byte size like 16777216 or \"16MiB\" (got %d)", v)
		}
		*b = ByteSize(v)
		return nil
	case string:
		return b.UnmarshalText([]byte(v))
	}
	return fmt.Errorf("must be a byte size like 16777216 or \"16MiB\" (got %v)", v)
}
