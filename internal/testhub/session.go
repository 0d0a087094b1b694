package testhub

import (
	"encoding/binary"
	"fmt"
)

// nodeKind is what a link is attached to.
type nodeKind int

const (
	nodeCBS      nodeKind = iota + 1 // $cbs: put-token requests and their replies
	nodeMgmt                         // HUB/$management: READ requests and their replies
	nodeProducer                     // HUB or HUB/Partitions/ID: client sends events
	nodeConsumer                     // HUB/ConsumerGroups/G/Partitions/ID: client receives events
)

// session is one AMQP session; it uses the client's channel number on our
// side as well, and links use the client's handle numbers.
type session struct {
	c     *conn
	ch    uint16
	links map[uint32]*link

	nextOutgoingID       uint32 // transfer-id of our next transfer frame
	remoteIncomingWindow uint32 // frames the client will still accept
	nextIncomingID       uint32
	unacked              uint32 // frames received since we last advertised our window
	nextDeliveryID       uint32
}

// link is one attached link. sending means the hub sends (the client
// receives). All fields are owned by the connection's goroutine, except
// the immutable ones the ownership registry reads (s, group, part, epoch).
type link struct {
	s         *session
	handle    uint32
	name      string
	sending   bool
	kind      nodeKind
	part      *partition // producer (nil: any partition) and consumer links
	detaching bool       // we sent detach and wait for the client's
	released  bool

	credit        uint32
	deliveryCount uint32

	// hub sends
	drain     bool
	tag       uint64
	next      int64    // consumer: next sequence number to deliver
	replies   [][]byte // cbs/mgmt: responses waiting for credit
	replyAddr string
	group     string
	epoch     int64
	hasEpoch  bool

	// hub receives
	inDelivery bool
	deliveryID uint32
	format     uint32
	settled    bool
	partial    []byte
}

var accepted = described{uint64(codeAccepted), []any{}}

func (s *session) attach(p performative) error {
	handle, ok := p.uint32Field(attHandle)
	if !ok {
		return &amqpError{condDecodeError, "attach without handle"}
	}
	if s.links[handle] != nil {
		return &amqpError{"amqp:session:handle-in-use", fmt.Sprintf("handle %d already attached", handle)}
	}
	l := &link{s: s, handle: handle, name: p.stringField(attName), sending: p.boolField(attRole)}
	source := terminusAddress(p.field(attSource), codeSource)
	target := terminusAddress(p.field(attTarget), codeTarget)
	aerr := s.c.hub.resolve(l, source, target, p)
	s.links[handle] = l

	resp := make([]any, attMaxMessageSize+1)
	resp[attName], resp[attHandle], resp[attRole] = l.name, handle, !l.sending
	resp[attSndSettle], resp[attRcvSettle] = p.field(attSndSettle), p.field(attRcvSettle)
	// We send every delivery settled and settle what we receive at once, so
	// we answer "settled" to a receiver asking for unsettled deliveries and
	// "first" to a sender asking for receiver settle mode second.
	if mode, ok := asUint(resp[attSndSettle]); ok && mode == 0 && l.sending {
		resp[attSndSettle] = uint8(1)
	}
	if mode, ok := asUint(resp[attRcvSettle]); ok && mode == 1 && !l.sending {
		resp[attRcvSettle] = uint8(0)
	}
	// A receiver refused for its epoch attaches and is then detached with
	// amqp:link:stolen, which the SDK reports as ownership lost; other
	// failures refuse the attach itself (no terminus).
	if aerr == nil || aerr.Condition == condStolen {
		resp[attSource] = described{uint64(codeSource), []any{source}}
		resp[attTarget] = described{uint64(codeTarget), []any{target}}
	}
	if l.sending {
		resp[attInitialDeliveryCount] = uint32(0)
	} else {
		resp[attMaxMessageSize] = uint64(maxMessageSize)
	}
	s.c.send(s.ch, codeAttach, resp, nil)
	if aerr != nil {
		s.detachLink(l, aerr)
		return nil
	}
	if !l.sending {
		l.deliveryCount, _ = p.uint32Field(attInitialDeliveryCount)
		l.credit = producerCredit
		s.sendFlow(l, false)
	}
	return nil
}

func (s *session) flow(p performative) error {
	nextIn, _ := p.uint32Field(flowNextIncomingID) // absent: our initial id, 0
	window, _ := p.uint32Field(flowIncomingWindow)
	s.remoteIncomingWindow = nextIn + window - s.nextOutgoingID
	handle, ok := p.uint32Field(flowHandle)
	if !ok {
		if p.boolField(flowEcho) {
			s.sendFlow(nil, false)
		}
		return nil
	}
	l := s.links[handle]
	if l == nil || l.detaching {
		return nil // raced with a detach
	}
	if l.sending {
		dc, _ := p.uint32Field(flowDeliveryCount) // absent: our initial count, 0
		credit, _ := p.uint32Field(flowLinkCredit)
		l.credit = dc + credit - l.deliveryCount
		if int32(l.credit) < 0 {
			l.credit = 0
		}
		l.drain = p.boolField(flowDrain)
	}
	if p.boolField(flowEcho) {
		s.sendFlow(l, false)
	}
	return nil
}

// sendFlow sends a session flow, plus link state when l is not nil. It
// always re-advertises our full incoming window.
func (s *session) sendFlow(l *link, drain bool) {
	s.unacked = 0
	f := []any{s.nextIncomingID, uint32(ourIncomingWindow), s.nextOutgoingID, uint32(ourOutgoingWindow)}
	if l != nil {
		f = append(f, l.handle, l.deliveryCount, l.credit, nil, drain)
	}
	s.c.send(s.ch, codeFlow, f, nil)
}

// transfer accumulates a client delivery and acts on it once complete.
func (s *session) transfer(p performative) error {
	s.nextIncomingID++
	if s.unacked++; s.unacked >= ourIncomingWindow/2 {
		s.sendFlow(nil, false)
	}
	handle, _ := p.uint32Field(xferHandle)
	l := s.links[handle]
	switch {
	case l == nil:
		return &amqpError{"amqp:session:unattached-handle", fmt.Sprintf("transfer on unattached handle %d", handle)}
	case l.sending:
		return &amqpError{condNotAllowed, "transfer from the receiving end of a link"}
	case l.detaching:
		return nil
	}
	if !l.inDelivery {
		id, ok := p.uint32Field(xferDeliveryID)
		if !ok {
			return &amqpError{condNotAllowed, "first transfer of a delivery without delivery-id"}
		}
		l.inDelivery, l.deliveryID, l.settled = true, id, false
		l.format, _ = p.uint32Field(xferMessageFormat)
	}
	l.settled = l.settled || p.boolField(xferSettled)
	if p.boolField(xferAborted) {
		l.inDelivery, l.partial = false, nil
		return nil
	}
	msg := p.payload
	if l.partial != nil || p.boolField(xferMore) {
		l.partial = append(l.partial, p.payload...)
		msg = l.partial
	}
	if len(msg) > maxMessageSize {
		s.detachLink(l, &amqpError{condMessageSize, fmt.Sprintf("message exceeds %d bytes", maxMessageSize)})
		return nil
	}
	if p.boolField(xferMore) {
		return nil
	}
	l.inDelivery, l.partial = false, nil
	l.deliveryCount++
	if l.credit > 0 {
		l.credit--
	}
	var state any = accepted
	if err := s.c.hub.receive(s.c, l, msg); err != nil {
		state = described{uint64(0x25), []any{err.value()}} // rejected
	}
	if !l.settled {
		s.c.send(s.ch, codeDisposition, []any{true, l.deliveryID, nil, true, state}, nil)
	}
	if l.credit < producerCredit/2 {
		l.credit = producerCredit
		s.sendFlow(l, false)
	}
	return nil
}

// detach handles the client's detach: either its answer to ours or a
// request we acknowledge.
func (s *session) detach(p performative) error {
	handle, _ := p.uint32Field(0)
	l := s.links[handle]
	if l == nil {
		return nil
	}
	delete(s.links, handle)
	s.release(l)
	if !l.detaching {
		s.c.send(s.ch, codeDetach, []any{handle, p.boolField(1)}, nil)
	}
	return nil
}

// detachLink closes l from our side with an error.
func (s *session) detachLink(l *link, e *amqpError) {
	if s.links[l.handle] != l || l.detaching {
		return
	}
	l.detaching = true
	s.release(l)
	s.c.send(s.ch, codeDetach, []any{l.handle, true, e.value()}, nil)
}

// release unregisters l from the hub; idempotent.
func (s *session) release(l *link) {
	if l.released {
		return
	}
	l.released = true
	if l.kind == nodeConsumer {
		s.c.hub.releaseOwner(l)
		l.part.removeWaiter(s.c)
	}
}

// releaseAll releases every link; the session is gone afterwards.
func (s *session) releaseAll() {
	for h, l := range s.links {
		s.release(l)
		delete(s.links, h)
	}
}

// pumpLink sends queued replies or stored events while credit and the
// session window last, then answers a pending drain.
func (s *session) pumpLink(l *link) {
	for l.credit > 0 && len(l.replies) > 0 {
		if !s.deliver(l, l.replies[0]) {
			return
		}
		l.replies[0], l.replies = nil, l.replies[1:]
	}
	for l.kind == nodeConsumer && l.credit > 0 {
		evs := l.part.read(l.next, int(min(l.credit, 256)))
		if len(evs) == 0 {
			break
		}
		for i := range evs {
			if !s.deliver(l, evs[i].payload) {
				return
			}
			l.next++
		}
	}
	if l.drain {
		l.deliveryCount += l.credit
		l.credit, l.drain = 0, false
		s.sendFlow(l, true)
	}
}

// deliver sends payload as one settled delivery, split into frames that fit
// the client's max frame size. It returns false if the session window is
// too small right now.
func (s *session) deliver(l *link, payload []byte) bool {
	chunk := int(s.c.peerMaxFrame) - maxTransferHeader
	frames := max(1, (len(payload)+chunk-1)/chunk)
	if s.remoteIncomingWindow < uint32(frames) {
		return false
	}
	id := s.nextDeliveryID
	s.nextDeliveryID++
	l.tag++
	tag := binary.BigEndian.AppendUint64(make([]byte, 0, 8), l.tag)
	for i := 0; i < frames; i++ {
		part := payload[min(i*chunk, len(payload)):min((i+1)*chunk, len(payload))]
		more := i < frames-1
		if i == 0 {
			s.c.send(s.ch, codeTransfer, []any{l.handle, id, tag, uint32(0), true, more}, part)
		} else {
			s.c.send(s.ch, codeTransfer, []any{l.handle, nil, nil, nil, true, more}, part)
		}
		s.nextOutgoingID++
		s.remoteIncomingWindow--
	}
	l.deliveryCount++
	l.credit--
	return true
}
