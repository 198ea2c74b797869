package load

import (
	"math/bits"
	"strconv"
)

// Record is what AppendRecord encodes. The filler fields (user, amount,
// tags, ok) are derived from Seq.
type Record struct {
	Run     string // run id; must satisfy ValidRunID, it is written unescaped
	Seq     int64  // sequence number within the run, >= 1
	Key     int    // partition key index; written as "k<Key>"
	TS      int64  // send time, Unix nanoseconds
	Size    int    // target encoded length in bytes; the pad fills up to it, 0 = empty pad
	Invalid bool   // write a trailing comma so the record is not valid JSON
}

// Filler tables. Names exercise string escapes and multi-byte UTF-8; each
// entry is already JSON-encoded, quotes included.
var (
	names = [...]string{
		`"Ada Lovelace"`, `"Grace Hopper"`, `"O\"Brien"`, `"Zoë Ñúñez"`,
		`"李雷"`, `"Ren\u00e9e"`, `"back\\slash"`, `"line\nbreak"`,
	}
	tagSets = [...]string{
		`[]`, `["a"]`, `["a","b"]`, `["x","y","z"]`, `["ingest","load"]`,
	}
)

const padAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz0123456789"

// AppendRecord appends the JSON encoding of r (see the package doc for the
// format) to dst and returns the extended slice. It does not allocate when
// dst has room, uses no reflection, and does not validate r.
func AppendRecord(dst []byte, r Record) []byte {
	start := len(dst)
	s := uint64(r.Seq)
	dst = append(dst, `{"id":"`...)
	dst = append(dst, r.Run...)
	dst = append(dst, '-')
	dst = strconv.AppendInt(dst, r.Seq, 10)
	dst = append(dst, `","run":"`...)
	dst = append(dst, r.Run...)
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendInt(dst, r.Seq, 10)
	dst = append(dst, `,"key":"k`...)
	dst = strconv.AppendInt(dst, int64(r.Key), 10)
	dst = append(dst, `","ts":`...)
	dst = strconv.AppendInt(dst, r.TS, 10)
	dst = append(dst, `,"user":{"name":`...)
	dst = append(dst, names[s%uint64(len(names))]...)
	dst = append(dst, `,"age":`...)
	dst = strconv.AppendUint(dst, 18+s%63, 10)
	dst = append(dst, `},"amount":`...)
	cents := mix64(s) % 1_000_000
	dst = strconv.AppendUint(dst, cents/100, 10)
	dst = append(dst, '.', byte('0'+cents/10%10), byte('0'+cents%10))
	dst = append(dst, `,"tags":`...)
	dst = append(dst, tagSets[s%uint64(len(tagSets))]...)
	if s%7 != 0 {
		dst = append(dst, `,"ok":true,"pad":"`...)
	} else {
		dst = append(dst, `,"ok":false,"pad":"`...)
	}
	tail := `"}`
	if r.Invalid {
		tail = `",}`
	}
	pad := r.Size - (len(dst) - start) - len(tail)
	off := int(s % 36)
	for pad > 0 {
		chunk := padAlphabet[off : off+min(pad, 36)]
		dst = append(dst, chunk...)
		pad -= len(chunk)
		off = 0
	}
	return append(dst, tail...)
}

// ValidRunID reports whether id can be used as a run id: 1 to 64 bytes of
// [A-Za-z0-9_.:-], so that it never needs JSON escaping.
func ValidRunID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '_', c == '.', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// mix64 is the splitmix64 finalizer: a cheap, well-spread hash of x.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// runSeed hashes a run id (FNV-1a) into the seed of the per-record choices.
func runSeed(run string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(run); i++ {
		h ^= uint64(run[i])
		h *= 1099511628211
	}
	return h
}

// invalidPicker decides, deterministically from the run and seq, which
// records are made invalid.
type invalidPicker struct {
	seed uint64
	all  bool
	thr  uint64 // a record is invalid when mix64(seed^seq)>>11 < thr
}

func newInvalidPicker(run string, fraction float64) invalidPicker {
	p := invalidPicker{seed: runSeed(run)}
	switch {
	case fraction >= 1:
		p.all = true
	case fraction > 0:
		p.thr = uint64(fraction * (1 << 53))
	}
	return p
}

func (p invalidPicker) invalid(seq int64) bool {
	return p.all || mix64(p.seed^uint64(seq)^0x9e3779b97f4a7c15)>>11 < p.thr
}

// recordSize returns the target size of record seq: mean ± spread,
// uniform, derived from seq and the run seed.
func recordSize(seed uint64, seq int64, mean, spread int) int {
	if spread <= 0 {
		return mean
	}
	span := uint64(2*spread + 1)
	hi, _ := bits.Mul64(mix64(seed+uint64(seq)), span)
	return mean - spread + int(hi)
}
