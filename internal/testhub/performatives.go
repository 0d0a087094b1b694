package testhub

import (
	"errors"
	"fmt"
)

// Descriptor codes (spec parts 2, 3 and 5).
const (
	codeOpen        = 0x10
	codeBegin       = 0x11
	codeAttach      = 0x12
	codeFlow        = 0x13
	codeTransfer    = 0x14
	codeDisposition = 0x15
	codeDetach      = 0x16
	codeEnd         = 0x17
	codeClose       = 0x18
	codeError       = 0x1d
	codeAccepted    = 0x24
	codeSource      = 0x28
	codeTarget      = 0x29

	codeSASLMechanisms = 0x40
	codeSASLInit       = 0x41
	codeSASLOutcome    = 0x44
)

// Attach field indexes.
const (
	attName = iota
	attHandle
	attRole
	attSndSettle
	attRcvSettle
	attSource
	attTarget
	attUnsettled
	attIncompleteUnsettled
	attInitialDeliveryCount
	attMaxMessageSize
	attOfferedCaps
	attDesiredCaps
	attProperties
)

// Flow field indexes.
const (
	flowNextIncomingID = iota
	flowIncomingWindow
	flowNextOutgoingID
	flowOutgoingWindow
	flowHandle
	flowDeliveryCount
	flowLinkCredit
	flowAvailable
	flowDrain
	flowEcho
)

// Transfer field indexes.
const (
	xferHandle = iota
	xferDeliveryID
	xferDeliveryTag
	xferMessageFormat
	xferSettled
	xferMore
	xferRcvSettle
	xferState
	xferResume
	xferAborted
)

// Error conditions used by the hub.
const (
	condDecodeError  = "amqp:decode-error"
	condNotFound     = "amqp:not-found"
	condNotAllowed   = "amqp:not-allowed"
	condStolen       = "amqp:link:stolen"
	condMessageSize  = "amqp:link:message-size-exceeded"
	condOutOfRange   = "com.microsoft:argument-out-of-range"
	condFramingError = "amqp:connection:framing-error"
)

// performative is a decoded frame body: a described list plus the payload
// that follows it (transfer frames only).
type performative struct {
	code    uint64
	fields  []any
	payload []byte
}

func parsePerformative(body []byte) (performative, error) {
	v, n, err := decodeValue(body)
	if err != nil {
		return performative{}, err
	}
	d, ok := v.(described)
	if !ok {
		return performative{}, errors.New("amqp: frame body is not a described type")
	}
	code, ok := d.descriptor.(uint64)
	if !ok {
		return performative{}, fmt.Errorf("amqp: unsupported descriptor %v", d.descriptor)
	}
	fields, ok := d.value.([]any)
	if !ok {
		return performative{}, fmt.Errorf("amqp: performative %#x is not a list", code)
	}
	return performative{code: code, fields: fields, payload: body[n:]}, nil
}

func (p performative) field(i int) any {
	if i < len(p.fields) {
		return p.fields[i]
	}
	return nil
}

// uint32Field returns an unsigned field and whether it was present and valid.
func (p performative) uint32Field(i int) (uint32, bool) {
	u, ok := asUint(p.field(i))
	return uint32(u), ok && u <= 0xffffffff
}

func (p performative) boolField(i int) bool {
	b, _ := p.field(i).(bool)
	return b
}

func (p performative) stringField(i int) string {
	s, _ := asString(p.field(i))
	return s
}

// amqpError is the spec's error type.
type amqpError struct {
	Condition   string
	Description string
}

func (e *amqpError) Error() string { return e.Condition + ": " + e.Description }

// value encodes e as a described list; a nil error encodes as null.
func (e *amqpError) value() any {
	if e == nil {
		return nil
	}
	return described{uint64(codeError), []any{symbol(e.Condition), e.Description}}
}

// describedList returns the fields of a described list value with the given
// code (source, target, error, ...), or nil.
func describedList(v any, code uint64) []any {
	d, ok := v.(described)
	if !ok {
		return nil
	}
	if c, ok := d.descriptor.(uint64); !ok || c != code {
		return nil
	}
	l, _ := d.value.([]any)
	return l
}

// terminusAddress returns the address of a source or target terminus.
func terminusAddress(v any, code uint64) string {
	l := describedList(v, code)
	if len(l) == 0 {
		return ""
	}
	s, _ := asString(l[0])
	return s
}
