package testhub

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Message section descriptors (spec part 3.2) and Event Hubs specifics.
const (
	secHeader         = 0x70
	secDeliveryAnnots = 0x71
	secMessageAnnots  = 0x72
	secProperties     = 0x73
	secAppProperties  = 0x74
	secData           = 0x75
	secValue          = 0x77

	batchMessageFormat = 0x80013700 // body: data sections, each an encoded message

	annSequenceNumber = "x-opt-sequence-number"
	annOffset         = "x-opt-offset"
	annEnqueuedTime   = "x-opt-enqueued-time"
	annPartitionKey   = "x-opt-partition-key"
)

// section is one message section: its descriptor code, its encoded value
// and the whole encoding including the descriptor.
type section struct {
	code  uint64
	value []byte
	whole []byte
}

// splitSections splits an encoded message into its sections.
func splitSections(msg []byte) ([]section, error) {
	var secs []section
	for b := msg; len(b) > 0; {
		if b[0] != 0x00 {
			return nil, errors.New("amqp: message section is not a described type")
		}
		d, dn, err := decodeValue(b[1:])
		if err != nil {
			return nil, err
		}
		code, ok := d.(uint64)
		if !ok {
			return nil, fmt.Errorf("amqp: unsupported section descriptor %v", d)
		}
		_, vn, err := decodeValue(b[1+dn:])
		if err != nil {
			return nil, err
		}
		n := 1 + dn + vn
		secs = append(secs, section{code: code, value: b[1+dn : n], whole: b[:n]})
		b = b[n:]
	}
	return secs, nil
}

// elements returns the encodings of the elements of an encoded list or map
// (keys and values alternate for maps). A null value has no elements.
func elements(v []byte) ([][]byte, error) {
	if len(v) == 0 {
		return nil, errTruncated
	}
	var hdr int
	switch v[0] {
	case 0x40, 0x45:
		return nil, nil
	case 0xc0, 0xc1:
		hdr = 3
	case 0xd0, 0xd1:
		hdr = 9
	default:
		return nil, fmt.Errorf("amqp: expected list or map, got type %#02x", v[0])
	}
	_, end, err := decodeValue(v) // validates sizes and counts
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for b := v[hdr:end]; len(b) > 0; {
		_, n, err := decodeValue(b)
		if err != nil {
			return nil, err
		}
		out = append(out, b[:n])
		b = b[n:]
	}
	return out, nil
}

// event is a stored event with its delivery encoding precomputed.
type event struct {
	seq      int64
	offset   int64
	enqueued time.Time
	payload  []byte // full encoded message as delivered to consumers
}

// encodeEvent builds the delivered form of msg: its sections with delivery
// annotations dropped and the broker annotations added to the message
// annotations. partitionKey, when not empty, is added unless msg has one.
func encodeEvent(msg []byte, seq, offset int64, enqueued time.Time, partitionKey string) ([]byte, error) {
	secs, err := splitSections(msg)
	if err != nil {
		return nil, err
	}
	var kept [][]byte // raw key, value pairs of the original annotations
	for _, s := range secs {
		if s.code != secMessageAnnots {
			continue
		}
		elems, err := elements(s.value)
		if err != nil {
			return nil, err
		}
		for i := 0; i+1 < len(elems); i += 2 {
			k, _, _ := decodeValue(elems[i])
			switch ks, _ := asString(k); ks {
			case annSequenceNumber, annOffset, annEnqueuedTime:
				continue
			case annPartitionKey:
				partitionKey = ""
			}
			kept = append(kept, elems[i], elems[i+1])
		}
	}
	ours := amqpMap{
		{symbol(annSequenceNumber), seq},
		{symbol(annOffset), strconv.FormatInt(offset, 10)},
		{symbol(annEnqueuedTime), enqueued},
	}
	if partitionKey != "" {
		ours = append(ours, mapEntry{symbol(annPartitionKey), partitionKey})
	}
	out := make([]byte, 0, len(msg)+96)
	annotations := func(out []byte) []byte {
		out = append(out, 0x00, 0x53, secMessageAnnots)
		return appendCompound(out, 0xc1, 2*len(ours)+len(kept), func(b []byte) []byte {
			for _, e := range ours {
				b = appendValue(appendValue(b, e.key), e.value)
			}
			for _, r := range kept {
				b = append(b, r...)
			}
			return b
		})
	}
	written := false
	for _, s := range secs {
		switch s.code {
		case secHeader:
			out = append(out, s.whole...)
		case secDeliveryAnnots, secMessageAnnots:
		default:
			if !written {
				out, written = annotations(out), true
			}
			out = append(out, s.whole...)
		}
	}
	if !written {
		out = annotations(out)
	}
	return out, nil
}

// splitBatch returns the encoded messages carried by a delivery: the data
// sections of a batch, or the message itself, plus any partition key
// annotation of the (envelope) message.
func splitBatch(msg []byte, format uint32) (msgs [][]byte, partitionKey string, err error) {
	secs, err := splitSections(msg)
	if err != nil {
		return nil, "", err
	}
	for _, s := range secs {
		switch {
		case s.code == secMessageAnnots:
			v, _, err := decodeValue(s.value)
			if err != nil {
				return nil, "", err
			}
			if m, ok := v.(amqpMap); ok {
				if pk, ok := m.get(annPartitionKey); ok {
					partitionKey, _ = asString(pk)
				}
			}
		case s.code == secData && format == batchMessageFormat:
			v, _, err := decodeValue(s.value)
			if err != nil {
				return nil, "", err
			}
			inner, ok := v.([]byte)
			if !ok {
				return nil, "", errors.New("amqp: data section is not binary")
			}
			if _, err := splitSections(inner); err != nil {
				return nil, "", fmt.Errorf("batched message: %w", err)
			}
			msgs = append(msgs, inner)
		}
	}
	if format != batchMessageFormat {
		msgs = [][]byte{msg}
	} else if len(msgs) == 0 {
		return nil, "", errors.New("batch message without data sections")
	}
	return msgs, partitionKey, nil
}

// dataMessage encodes a message whose body is one data section.
func dataMessage(body []byte) []byte {
	return appendValue(make([]byte, 0, len(body)+8), described{uint64(secData), body})
}

// request is a decoded request to the $cbs or $management node.
type request struct {
	messageID raw // encoded message-id, echoed as correlation-id
	replyTo   string
	props     amqpMap // application properties
}

func parseRequest(msg []byte) (request, error) {
	var req request
	secs, err := splitSections(msg)
	if err != nil {
		return req, err
	}
	for _, s := range secs {
		switch s.code {
		case secProperties:
			elems, err := elements(s.value)
			if err != nil {
				return req, err
			}
			if len(elems) > 0 {
				req.messageID = raw(elems[0])
			}
			if len(elems) > 4 {
				v, _, _ := decodeValue(elems[4])
				req.replyTo, _ = asString(v)
			}
		case secAppProperties:
			v, _, err := decodeValue(s.value)
			if err != nil {
				return req, err
			}
			req.props, _ = v.(amqpMap)
		}
	}
	if req.replyTo == "" {
		return req, errors.New("request has no reply-to address")
	}
	return req, nil
}

func (r request) prop(key string) string {
	v, _ := r.props.get(key)
	s, _ := asString(v)
	return s
}

// encodeResponse builds the reply to req with the given status and body
// (an amqp-value section, omitted when nil).
func encodeResponse(req request, status int32, description string, body any) []byte {
	var corr any
	if len(req.messageID) > 0 {
		corr = req.messageID
	}
	b := appendValue(nil, described{uint64(secProperties), []any{nil, nil, nil, nil, nil, corr}})
	b = appendValue(b, described{uint64(secAppProperties), amqpMap{
		{"status-code", status},
		{"status-description", description},
	}})
	if body != nil {
		b = appendValue(b, described{uint64(secValue), body})
	}
	return b
}
