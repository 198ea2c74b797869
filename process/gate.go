package process

import (
	"encoding/binary"
	"math/bits"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// Gate rules: the names a rejection by the JSON gate carries (Rejection.Rule,
// the Sluice-Rule dead-letter header and, through the reason label, the
// sluice_dead_letters_total metric). The set is closed.
const (
	RuleSyntax          = "invalid_json"     // not RFC 8259 JSON syntax
	RuleInvalidUTF8     = "invalid_utf8"     // a byte sequence that is not UTF-8
	RuleLoneSurrogate   = "lone_surrogate"   // a \uD800-\uDFFF escape without its pair
	RuleNUL             = "nul_byte"         // a raw 0x00 byte (an escaped \u0000 is fine)
	RuleControlChar     = "control_char"     // a raw control character (below 0x20) inside a string
	RuleBOM             = "bom"              // a UTF-8 byte order mark before the value
	RuleTrailingData    = "trailing_data"    // anything but whitespace after the value
	RuleEmpty           = "empty"            // nothing but whitespace
	RuleMaxDepth        = "max_depth"        // nested deeper than max_depth
	RuleNumberRange     = "number_range"     // a number beyond float64's range, like 1e400
	RuleMaxRecordBytes  = "max_record_bytes" // a record larger than max_record_bytes
	RuleMaxMessageBytes = "max_message_bytes"
)

// span is a byte range [lo, hi) of a record.
type span struct{ lo, hi int32 }

// member is one member of the record's top-level object, as found by the
// gate: its key (between the quotes, still escaped) and its value's raw
// bytes.
type member struct {
	key     span
	val     span
	escaped bool // the key holds a backslash escape
}

// gate is the strict JSON scanner. One pass over a record checks every rule
// and, when the record is an object, indexes its top-level members so that
// steps read fields without scanning again. A gate belongs to one worker.
type gate struct {
	maxDepth int
	stack    []byte   // open containers, '{' or '['
	members  []member // the record's top-level members, in order
	object   bool     // the record is an object
	// The value's bounds inside the record, without surrounding whitespace.
	lo, hi int
}

// gateError is a rule broken at a byte offset.
type gateError struct {
	rule   string
	offset int
	msg    string
}

// plain marks the bytes a string holds with no further check: printable
// ASCII other than '"' and '\\'.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// whitespace marks JSON's four whitespace bytes.
var whitespace = [256]bool{' ': true, '\t': true, '\n': true, '\r': true}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// special8 returns a mask whose lowest set bit is the high bit of the
// first byte of x (little endian) that is not plain, or 0 when all eight
// are plain. (Each term's lowest set bit is exact; false positives from
// borrows only appear above it.)
func special8(x uint64) uint64 {
	zero := func(v uint64) uint64 { return (v - ones) & ^v & highs }
	return x&highs | (x-0x20*ones)&^x&highs | zero(x^'"'*ones) | zero(x^'\\'*ones)
}

func skipWS(b []byte, i int) int {
	for i < len(b) && whitespace[b[i]] {
		i++
	}
	return i
}

// scan checks b against every rule and indexes it. It returns nil when b
// is one RFC 8259 value in UTF-8 within the depth limit.
func (g *gate) scan(b []byte) *gateError {
	g.stack = g.stack[:0]
	g.members = g.members[:0]
	g.object = false
	if len(b) >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
		return &gateError{RuleBOM, 0, "UTF-8 byte order mark before the value (RFC 8259 §8.1 forbids it)"}
	}
	i := skipWS(b, 0)
	if i == len(b) {
		return &gateError{RuleEmpty, i, "no JSON value, only whitespace"}
	}
	g.lo = i
	g.object = b[i] == '{'
	var err *gateError
value:
	// i is at the first byte of a value.
	if i >= len(b) {
		return &gateError{RuleSyntax, i, "unexpected end of input, a value was expected"}
	}
	switch b[i] {
	case '{':
		if len(g.stack) >= g.maxDepth {
			return &gateError{RuleMaxDepth, i, "nested deeper than " + strconv.Itoa(g.maxDepth) + " levels"}
		}
		g.stack = append(g.stack, '{')
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == '}' {
			g.stack = g.stack[:len(g.stack)-1]
			i++
			goto after
		}
		if i, err = g.key(b, i); err != nil {
			return err
		}
		goto value
	case '[':
		if len(g.stack) >= g.maxDepth {
			return &gateError{RuleMaxDepth, i, "nested deeper than " + strconv.Itoa(g.maxDepth) + " levels"}
		}
		g.stack = append(g.stack, '[')
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == ']' {
			g.stack = g.stack[:len(g.stack)-1]
			i++
			goto after
		}
		goto value
	case '"':
		if i, _, err = scanString(b, i); err != nil {
			return err
		}
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		if i, err = scanNumber(b, i); err != nil {
			return err
		}
	case 't':
		if i, err = literal(b, i, "true"); err != nil {
			return err
		}
	case 'f':
		if i, err = literal(b, i, "false"); err != nil {
			return err
		}
	case 'n':
		if i, err = literal(b, i, "null"); err != nil {
			return err
		}
	default:
		return unexpected(b, i, "a value")
	}
after:
	// i is just past a value.
	if len(g.stack) == 1 && g.object {
		g.members[len(g.members)-1].val.hi = int32(i)
	}
	if len(g.stack) == 0 {
		g.hi = i
		if i = skipWS(b, i); i != len(b) {
			if b[i] == 0 {
				return &gateError{RuleNUL, i, "NUL byte after the value"}
			}
			return &gateError{RuleTrailingData, i, "data after the end of the JSON value"}
		}
		return nil
	}
	i = skipWS(b, i)
	if i >= len(b) {
		return &gateError{RuleSyntax, i, "unexpected end of input inside " + container(g.stack[len(g.stack)-1])}
	}
	top := g.stack[len(g.stack)-1]
	switch b[i] {
	case ',':
		i = skipWS(b, i+1)
		if top == '{' {
			if i, err = g.key(b, i); err != nil {
				return err
			}
		}
		goto value
	case '}', ']':
		if (top == '{') != (b[i] == '}') {
			return unexpected(b, i, "',' or the end of "+container(top))
		}
		g.stack = g.stack[:len(g.stack)-1]
		i++
		goto after
	}
	return unexpected(b, i, "',' or the end of "+container(top))
}

func container(c byte) string {
	if c == '{' {
		return "an object"
	}
	return "an array"
}

// key scans `"name" :` at i and returns the offset of the value after it;
// in the top-level object it records the member.
func (g *gate) key(b []byte, i int) (int, *gateError) {
	if i >= len(b) || b[i] != '"' {
		return i, unexpected(b, i, "a member name in double quotes")
	}
	end, esc, err := scanString(b, i)
	if err != nil {
		return end, err
	}
	j := skipWS(b, end)
	if j >= len(b) || b[j] != ':' {
		return j, unexpected(b, j, "':' after a member name")
	}
	j = skipWS(b, j+1)
	if len(g.stack) == 1 && g.object {
		g.members = append(g.members, member{key: span{int32(i + 1), int32(end - 1)}, val: span{lo: int32(j)}, escaped: esc})
	}
	return j, nil
}

// unexpected reports the byte at i where want was expected, naming the
// rule that byte breaks.
func unexpected(b []byte, i int, want string) *gateError {
	if i >= len(b) {
		return &gateError{RuleSyntax, i, "unexpected end of input, " + want + " was expected"}
	}
	c := b[i]
	switch {
	case c == 0:
		return &gateError{RuleNUL, i, "NUL byte where " + want + " was expected"}
	case c >= 0x80:
		if r, n := utf8.DecodeRune(b[i:]); r == utf8.RuneError && n <= 1 {
			return &gateError{RuleInvalidUTF8, i, "invalid UTF-8 byte 0x" + strconv.FormatUint(uint64(c), 16)}
		}
		r, _ := utf8.DecodeRune(b[i:])
		return &gateError{RuleSyntax, i, "unexpected character " + strconv.QuoteRune(r) + ", " + want + " was expected"}
	case c < 0x20 || c == 0x7f:
		return &gateError{RuleSyntax, i, "unexpected control byte 0x" + strconv.FormatUint(uint64(c), 16) + ", " + want + " was expected"}
	}
	return &gateError{RuleSyntax, i, "unexpected character " + strconv.QuoteRune(rune(c)) + ", " + want + " was expected"}
}

func literal(b []byte, i int, word string) (int, *gateError) {
	for k := 0; k < len(word); k++ {
		if i+k >= len(b) || b[i+k] != word[k] {
			return i + k, unexpected(b, i+k, "the literal "+word)
		}
	}
	return i + len(word), nil
}

// scanString checks the string starting at the quote at i and returns the
// offset just past its closing quote, and whether it holds an escape.
func scanString(b []byte, i int) (int, bool, *gateError) {
	i++
	esc := false
	for {
		// The fast path, eight bytes at a time (SWAR): jump to the first
		// byte that needs a look (below 0x20, at or above 0x80, '"' or '\\').
		for i+8 <= len(b) {
			if bad := special8(binary.LittleEndian.Uint64(b[i:])); bad != 0 {
				i += bits.TrailingZeros64(bad) >> 3
				goto look
			}
			i += 8
		}
		for i < len(b) && plain[b[i]] {
			i++
		}
	look:
		if i >= len(b) {
			return i, esc, &gateError{RuleSyntax, i, "unexpected end of input inside a string"}
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, esc, nil
		case c == '\\':
			esc = true
			n, err := scanEscape(b, i)
			if err != nil {
				return i, esc, err
			}
			i = n
		case c == 0:
			return i, esc, &gateError{RuleNUL, i, "NUL byte inside a string (write it as \\u0000)"}
		case c < 0x20:
			return i, esc, &gateError{RuleControlChar, i, "raw control character 0x" + strconv.FormatUint(uint64(c), 16) + " inside a string (it must be escaped)"}
		default: // c >= 0x80
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n <= 1 {
				return i, esc, &gateError{RuleInvalidUTF8, i, "invalid UTF-8 byte 0x" + strconv.FormatUint(uint64(c), 16) + " inside a string"}
			}
			i += n
		}
	}
}

// scanEscape checks the escape at the backslash at i and returns the
// offset past it.
func scanEscape(b []byte, i int) (int, *gateError) {
	if i+1 >= len(b) {
		return i, &gateError{RuleSyntax, i, "unexpected end of input in an escape"}
	}
	switch b[i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		return i + 2, nil
	case 'u':
	default:
		return i, &gateError{RuleSyntax, i, "invalid escape \\" + string(rune(b[i+1]))}
	}
	r, ok := hex4(b, i+2)
	if !ok {
		return i, &gateError{RuleSyntax, i, "invalid \\u escape: four hex digits expected"}
	}
	switch {
	case r >= 0xDC00 && r <= 0xDFFF:
		return i, &gateError{RuleLoneSurrogate, i, "lone low surrogate \\u" + strconv.FormatUint(uint64(r), 16) + " without a high surrogate before it"}
	case r >= 0xD800 && r <= 0xDBFF:
		if i+7 < len(b) && b[i+6] == '\\' && b[i+7] == 'u' {
			if lo, ok := hex4(b, i+8); ok && lo >= 0xDC00 && lo <= 0xDFFF {
				return i + 12, nil
			}
		}
		return i, &gateError{RuleLoneSurrogate, i, "lone high surrogate \\u" + strconv.FormatUint(uint64(r), 16) + " without a low surrogate after it"}
	}
	return i + 6, nil
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// scanNumber checks the number at i (RFC 8259 §6) and that it is within
// float64's range, which every parser the guarantee names needs (Go's
// encoding/json refuses 1e400).
func scanNumber(b []byte, i int) (int, *gateError) {
	start := i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return i, unexpected(b, i, "a digit")
	}
	// Only a long integer part or an exponent can leave float64's range:
	// those go to ParseFloat unless the exponent is clearly harmless.
	intDigits := i - start
	long := intDigits > 300
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return i, unexpected(b, i, "a digit after the decimal point")
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return i, unexpected(b, i, "a digit in the exponent")
		}
		exp := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if exp < 10000 {
				exp = exp*10 + int(b[i]-'0')
			}
			i++
		}
		long = long || exp+intDigits > 250
	}
	if long {
		if _, err := strconv.ParseFloat(unsafe.String(&b[start], i-start), 64); err != nil {
			return start, &gateError{RuleNumberRange, start, "number " + clip(b[start:i]) + " is beyond the range of a 64-bit float"}
		}
	}
	return i, nil
}

// clip returns b as a string of at most 40 bytes, for messages.
func clip(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}
