package testhub

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// AMQP 1.0 type system (spec part 1). Values decode to these Go types:
//
//	null → nil, boolean → bool, ubyte/ushort/uint/ulong → uint8/16/32/64,
//	byte/short/int/long → int8/16/32/64, float/double → float32/64,
//	timestamp → time.Time, uuid → uuid, binary → []byte, string → string,
//	symbol → symbol, list → []any, map → amqpMap, array → amqpArray,
//	described → described, char/decimal → raw (kept verbatim).
//
// The encoder accepts the same types plus []symbol and []string (encoded as
// arrays) and raw (copied verbatim).

type (
	symbol    string
	uuid      [16]byte
	raw       []byte // an already encoded value
	amqpArray []any
	amqpMap   []mapEntry
	mapEntry  struct{ key, value any }
	described struct{ descriptor, value any }
)

// get returns the value stored under a string or symbol key.
func (m amqpMap) get(key string) (any, bool) {
	for _, e := range m {
		if k, ok := asString(e.key); ok && k == key {
			return e.value, true
		}
	}
	return nil, false
}

const maxDepth = 32 // nesting limit for compound values, guards the decoder's stack

var errTruncated = errors.New("amqp: value truncated")

// appendValue appends the AMQP encoding of v. Unsupported Go types encode as
// null; they only arise from programming errors, never from peer input.
func appendValue(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, 0x40)
	case bool:
		if v {
			return append(b, 0x41)
		}
		return append(b, 0x42)
	case uint8:
		return append(b, 0x50, v)
	case uint16:
		return binary.BigEndian.AppendUint16(append(b, 0x60), v)
	case uint32:
		switch {
		case v == 0:
			return append(b, 0x43)
		case v < 256:
			return append(b, 0x52, byte(v))
		}
		return binary.BigEndian.AppendUint32(append(b, 0x70), v)
	case uint64:
		switch {
		case v == 0:
			return append(b, 0x44)
		case v < 256:
			return append(b, 0x53, byte(v))
		}
		return binary.BigEndian.AppendUint64(append(b, 0x80), v)
	case int8:
		return append(b, 0x51, byte(v))
	case int16:
		return binary.BigEndian.AppendUint16(append(b, 0x61), uint16(v))
	case int32:
		if v >= -128 && v <= 127 {
			return append(b, 0x54, byte(v))
		}
		return binary.BigEndian.AppendUint32(append(b, 0x71), uint32(v))
	case int64:
		if v >= -128 && v <= 127 {
			return append(b, 0x55, byte(v))
		}
		return binary.BigEndian.AppendUint64(append(b, 0x81), uint64(v))
	case float32:
		return binary.BigEndian.AppendUint32(append(b, 0x72), math.Float32bits(v))
	case float64:
		return binary.BigEndian.AppendUint64(append(b, 0x82), math.Float64bits(v))
	case time.Time:
		return binary.BigEndian.AppendUint64(append(b, 0x83), uint64(v.UnixMilli()))
	case uuid:
		return append(append(b, 0x98), v[:]...)
	case []byte:
		return appendVariable(b, 0xa0, 0xb0, v)
	case string:
		return appendVariable(b, 0xa1, 0xb1, []byte(v))
	case symbol:
		return appendVariable(b, 0xa3, 0xb3, []byte(v))
	case raw:
		return append(b, v...)
	case described:
		return appendValue(appendValue(append(b, 0x00), v.descriptor), v.value)
	case []any:
		if len(v) == 0 {
			return append(b, 0x45)
		}
		return appendCompound(b, 0xc0, len(v), func(b []byte) []byte {
			for _, e := range v {
				b = appendValue(b, e)
			}
			return b
		})
	case amqpMap:
		return appendCompound(b, 0xc1, 2*len(v), func(b []byte) []byte {
			for _, e := range v {
				b = appendValue(appendValue(b, e.key), e.value)
			}
			return b
		})
	case []symbol:
		return appendArray(b, 0xb3, len(v), func(b []byte, i int) []byte {
			return append(binary.BigEndian.AppendUint32(b, uint32(len(v[i]))), v[i]...)
		})
	case []string:
		return appendArray(b, 0xb1, len(v), func(b []byte, i int) []byte {
			return append(binary.BigEndian.AppendUint32(b, uint32(len(v[i]))), v[i]...)
		})
	}
	return append(b, 0x40)
}

func appendVariable(b []byte, code8, code32 byte, v []byte) []byte {
	if len(v) < 256 {
		return append(append(b, code8, byte(len(v))), v...)
	}
	return append(binary.BigEndian.AppendUint32(append(b, code32), uint32(len(v))), v...)
}

// appendCompound writes a list (code8 0xc0) or map (0xc1) header followed by
// the elements produced by body, using the 8-bit form when it fits.
func appendCompound(b []byte, code8 byte, count int, body func([]byte) []byte) []byte {
	start := len(b)
	b = append(b, code8+0x10, 0, 0, 0, 0, 0, 0, 0, 0)
	b = body(b)
	size := len(b) - start - 5 // bytes after the size field
	if size-3 <= 255 && count <= 255 {
		// compact to the 8-bit form: size covers count byte plus elements
		b[start] = code8
		b[start+1] = byte(size - 3)
		b[start+2] = byte(count)
		n := copy(b[start+3:], b[start+9:])
		return b[:start+3+n]
	}
	binary.BigEndian.PutUint32(b[start+1:], uint32(size))
	binary.BigEndian.PutUint32(b[start+5:], uint32(count))
	return b
}

// appendArray writes an array32 whose elements share constructor code.
func appendArray(b []byte, code byte, count int, elem func([]byte, int) []byte) []byte {
	start := len(b)
	b = append(b, 0xf0, 0, 0, 0, 0, 0, 0, 0, 0, code)
	for i := 0; i < count; i++ {
		b = elem(b, i)
	}
	binary.BigEndian.PutUint32(b[start+1:], uint32(len(b)-start-5))
	binary.BigEndian.PutUint32(b[start+5:], uint32(count))
	return b
}

// decodeValue decodes the value at the start of b, returning it and the
// number of bytes it occupies.
func decodeValue(b []byte) (any, int, error) {
	return decodeAt(b, 0)
}

func decodeAt(b []byte, depth int) (any, int, error) {
	if len(b) == 0 {
		return nil, 0, errTruncated
	}
	if b[0] != 0x00 {
		v, n, err := decodeBody(b[0], b[1:], depth)
		return v, n + 1, err
	}
	if depth >= maxDepth {
		return nil, 0, errors.New("amqp: values nested too deeply")
	}
	desc, n, err := decodeAt(b[1:], depth+1)
	if err != nil {
		return nil, 0, err
	}
	val, m, err := decodeAt(b[1+n:], depth+1)
	if err != nil {
		return nil, 0, err
	}
	return described{desc, val}, 1 + n + m, nil
}

// fixedWidth returns the encoded width of fixed-size type codes, or -1.
func fixedWidth(code byte) int {
	switch {
	case code >= 0x40 && code <= 0x45:
		return 0
	case code >= 0x50 && code <= 0x56:
		return 1
	case code == 0x60 || code == 0x61:
		return 2
	case code >= 0x70 && code <= 0x74:
		return 4
	case code >= 0x80 && code <= 0x84:
		return 8
	case code == 0x94 || code == 0x98:
		return 16
	}
	return -1
}

// decodeBody decodes a value whose constructor code was already consumed;
// b starts right after it. The returned length excludes the code.
func decodeBody(code byte, b []byte, depth int) (any, int, error) {
	if w := fixedWidth(code); w >= 0 {
		if len(b) < w {
			return nil, 0, errTruncated
		}
		return decodeFixed(code, b[:w]), w, nil
	}
	switch code {
	case 0xa0, 0xa1, 0xa3, 0xb0, 0xb1, 0xb3:
		n, hdr, err := readSize(code>>4 == 0xa, b)
		if err != nil {
			return nil, 0, err
		}
		if uint64(len(b)-hdr) < n {
			return nil, 0, errTruncated
		}
		data := b[hdr : hdr+int(n)]
		switch code & 0x0f {
		case 0x0:
			return append([]byte(nil), data...), hdr + int(n), nil
		case 0x1:
			return string(data), hdr + int(n), nil
		default:
			return symbol(data), hdr + int(n), nil
		}
	case 0xc0, 0xc1, 0xd0, 0xd1, 0xe0, 0xf0:
		return decodeCompound(code, b, depth)
	}
	return nil, 0, fmt.Errorf("amqp: unknown type code %#02x", code)
}

// readSize reads a 1- or 4-byte size prefix, returning it and its width.
func readSize(small bool, b []byte) (uint64, int, error) {
	if small {
		if len(b) < 1 {
			return 0, 0, errTruncated
		}
		return uint64(b[0]), 1, nil
	}
	if len(b) < 4 {
		return 0, 0, errTruncated
	}
	return uint64(binary.BigEndian.Uint32(b)), 4, nil
}

func decodeFixed(code byte, b []byte) any {
	switch code {
	case 0x40:
		return nil
	case 0x41:
		return true
	case 0x42:
		return false
	case 0x43:
		return uint32(0)
	case 0x44:
		return uint64(0)
	case 0x45:
		return []any(nil)
	case 0x50:
		return b[0]
	case 0x51:
		return int8(b[0])
	case 0x52:
		return uint32(b[0])
	case 0x53:
		return uint64(b[0])
	case 0x54:
		return int32(int8(b[0]))
	case 0x55:
		return int64(int8(b[0]))
	case 0x56:
		return b[0] != 0
	case 0x60:
		return binary.BigEndian.Uint16(b)
	case 0x61:
		return int16(binary.BigEndian.Uint16(b))
	case 0x70:
		return binary.BigEndian.Uint32(b)
	case 0x71:
		return int32(binary.BigEndian.Uint32(b))
	case 0x72:
		return math.Float32frombits(binary.BigEndian.Uint32(b))
	case 0x80:
		return binary.BigEndian.Uint64(b)
	case 0x81:
		return int64(binary.BigEndian.Uint64(b))
	case 0x82:
		return math.Float64frombits(binary.BigEndian.Uint64(b))
	case 0x83:
		return time.UnixMilli(int64(binary.BigEndian.Uint64(b))).UTC()
	case 0x98:
		return uuid(b)
	}
	// char, decimal32/64/128: kept verbatim
	return raw(append([]byte{code}, b...))
}

// decodeCompound decodes lists, maps and arrays (code already consumed).
func decodeCompound(code byte, b []byte, depth int) (any, int, error) {
	if depth >= maxDepth {
		return nil, 0, errors.New("amqp: values nested too deeply")
	}
	small := code&0xf0 != 0xd0 && code != 0xf0
	size, hdr, err := readSize(small, b)
	if err != nil {
		return nil, 0, err
	}
	if uint64(len(b)-hdr) < size {
		return nil, 0, errTruncated
	}
	body := b[hdr : hdr+int(size)]
	count, cw, err := readSize(small, body)
	if err != nil {
		return nil, 0, err
	}
	body = body[cw:]
	// every element needs at least one byte, except array elements of
	// zero-width types: bounding count by size bounds memory either way
	if count > size {
		return nil, 0, fmt.Errorf("amqp: element count %d exceeds size %d", count, size)
	}
	total := hdr + int(size)
	switch code {
	case 0xc1, 0xd1:
		if count%2 != 0 {
			return nil, 0, errors.New("amqp: map with odd element count")
		}
		m := make(amqpMap, 0, count/2)
		for i := uint64(0); i < count; i += 2 {
			k, n, err := decodeAt(body, depth+1)
			if err != nil {
				return nil, 0, err
			}
			body = body[n:]
			v, n, err := decodeAt(body, depth+1)
			if err != nil {
				return nil, 0, err
			}
			body = body[n:]
			m = append(m, mapEntry{k, v})
		}
		return m, total, nil
	case 0xc0, 0xd0:
		l := make([]any, 0, count)
		for i := uint64(0); i < count; i++ {
			v, n, err := decodeAt(body, depth+1)
			if err != nil {
				return nil, 0, err
			}
			body = body[n:]
			l = append(l, v)
		}
		return l, total, nil
	}
	// array: one constructor (possibly described) shared by all elements
	if len(body) == 0 {
		return nil, 0, errTruncated
	}
	var desc any
	elemCode := body[0]
	body = body[1:]
	if elemCode == 0x00 {
		d, n, err := decodeAt(body, depth+1)
		if err != nil {
			return nil, 0, err
		}
		if len(body) < n+1 {
			return nil, 0, errTruncated
		}
		desc, elemCode, body = d, body[n], body[n+1:]
		if elemCode == 0x00 {
			return nil, 0, errors.New("amqp: nested described array constructor")
		}
	}
	a := make(amqpArray, 0, count)
	for i := uint64(0); i < count; i++ {
		v, n, err := decodeBody(elemCode, body, depth+1)
		if err != nil {
			return nil, 0, err
		}
		body = body[n:]
		if desc != nil {
			v = described{desc, v}
		}
		a = append(a, v)
	}
	return a, total, nil
}

// asString accepts strings and symbols.
func asString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case symbol:
		return string(v), true
	}
	return "", false
}

// asUint accepts any unsigned integer type.
func asUint(v any) (uint64, bool) {
	switch v := v.(type) {
	case uint8:
		return uint64(v), true
	case uint16:
		return uint64(v), true
	case uint32:
		return uint64(v), true
	case uint64:
		return v, true
	}
	return 0, false
}

// asInt accepts any integer type that fits an int64.
func asInt(v any) (int64, bool) {
	switch v := v.(type) {
	case int8:
		return int64(v), true
	case int16:
		return int64(v), true
	case int32:
		return int64(v), true
	case int64:
		return v, true
	}
	if u, ok := asUint(v); ok && u <= math.MaxInt64 {
		return int64(u), true
	}
	return 0, false
}
