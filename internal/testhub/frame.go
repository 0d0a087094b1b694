package testhub

import (
	"encoding/binary"
	"fmt"
	"io"
)

// Frame layout (spec 2.3): size uint32, doff uint8 (in 4-byte words),
// type uint8, channel uint16, extended header, body.
const (
	frameTypeAMQP = 0x00
	frameTypeSASL = 0x01

	protoAMQP = 0x00 // protocol ids of the 8-byte protocol header
	protoTLS  = 0x02
	protoSASL = 0x03
)

// frame is one received frame. An empty body is a heartbeat.
type frame struct {
	typ     byte
	channel uint16
	body    []byte
}

// readProtoHeader reads "AMQP" id 1 0 0 and returns the protocol id.
func readProtoHeader(r io.Reader) (byte, error) {
	var h [8]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, err
	}
	if string(h[:4]) != "AMQP" || h[5] != 1 || h[6] != 0 || h[7] != 0 {
		return 0, fmt.Errorf("amqp: unsupported protocol header % x", h)
	}
	return h[4], nil
}

func protoHeader(id byte) []byte { return []byte{'A', 'M', 'Q', 'P', id, 1, 0, 0} }

// readFrame reads one frame, rejecting frames larger than maxSize bytes.
func readFrame(r io.Reader, maxSize uint32) (frame, error) {
	var h [8]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return frame{}, err
	}
	size := binary.BigEndian.Uint32(h[:4])
	doff := uint32(h[4]) * 4
	if size < 8 || size > maxSize {
		return frame{}, fmt.Errorf("amqp: frame size %d outside [8, %d]", size, maxSize)
	}
	if doff < 8 || doff > size {
		return frame{}, fmt.Errorf("amqp: invalid data offset %d for frame size %d", doff, size)
	}
	buf := make([]byte, size-8)
	if _, err := io.ReadFull(r, buf); err != nil {
		return frame{}, err
	}
	return frame{typ: h[5], channel: binary.BigEndian.Uint16(h[6:]), body: buf[doff-8:]}, nil
}

// appendFrame appends a complete frame carrying performative code with the
// given fields (trailing nils dropped) followed by payload.
func appendFrame(b []byte, typ byte, channel uint16, code uint64, fields []any, payload []byte) []byte {
	start := len(b)
	b = append(b, 0, 0, 0, 0, 2, typ, byte(channel>>8), byte(channel))
	for len(fields) > 0 && fields[len(fields)-1] == nil {
		fields = fields[:len(fields)-1]
	}
	b = appendValue(b, described{code, fields})
	b = append(b, payload...)
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

// heartbeat is an empty AMQP frame, sent to keep the peer's idle timer happy.
var heartbeat = []byte{0, 0, 0, 8, 2, frameTypeAMQP, 0, 0}
