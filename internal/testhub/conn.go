package testhub

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

const (
	ourMaxFrameSize   = 64 << 10 // largest frame we accept (larger messages span frames)
	maxMessageSize    = 1 << 20  // largest message a producer may send (as on Event Hubs)
	ourIncomingWindow = 10000    // transfer frames a client may send before we widen the window
	ourOutgoingWindow = 0xffffffff
	producerCredit    = 500 // link credit granted to client senders
	handshakeTimeout  = 10 * time.Second
	maxTransferHeader = 64 // upper bound on a transfer frame's header + performative
)

// errPeerClosed ends the connection after the client's close was answered.
var errPeerClosed = errors.New("connection closed by peer")

// inbound is a frame parsed by the reader goroutine, or the error that ended it.
type inbound struct {
	typ       byte
	channel   uint16
	heartbeat bool
	perf      performative
	err       error
}

// conn is one client connection. All protocol state is owned by the goroutine
// running loop; other goroutines reach it through wake and post.
type conn struct {
	hub *Hub
	nc  net.Conn
	r   *bufio.Reader
	w   *bufio.Writer
	buf []byte // scratch for encoding frame headers and performatives

	peerMaxFrame uint32
	peerIdle     time.Duration
	wrote        bool // something was written since the last heartbeat tick
	sessions     map[uint16]*session

	in   chan inbound
	quit chan struct{} // closed when loop returns
	wake chan struct{} // new events or posted actions

	mu      sync.Mutex
	actions []func()
}

func newConn(h *Hub, nc net.Conn) *conn {
	return &conn{
		hub:          h,
		nc:           nc,
		r:            bufio.NewReaderSize(nc, 64<<10),
		w:            bufio.NewWriterSize(nc, 64<<10),
		peerMaxFrame: 512,
		sessions:     map[uint16]*session{},
		in:           make(chan inbound, 64),
		quit:         make(chan struct{}),
		wake:         make(chan struct{}, 1),
	}
}

// serve runs the connection until the client leaves, misbehaves or the hub closes.
func (c *conn) serve() {
	defer c.hub.wg.Done()
	defer c.hub.removeConn(c)
	defer c.nc.Close()
	defer c.releaseAll()
	defer close(c.quit)

	_ = c.nc.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := c.handshake(); err != nil {
		_ = c.w.Flush()
		return
	}
	_ = c.nc.SetDeadline(time.Time{})

	c.hub.wg.Add(1)
	go c.readLoop()
	c.loop()
}

// handshake performs protocol header, SASL and open negotiation. Every SASL
// mechanism is accepted: the hub does no authentication.
func (c *conn) handshake() error {
	id, err := readProtoHeader(c.r)
	if err != nil {
		_, _ = c.w.Write(protoHeader(protoSASL))
		return err
	}
	if id == protoSASL {
		_, _ = c.w.Write(protoHeader(protoSASL))
		mechs := []symbol{"ANONYMOUS", "PLAIN", "MSSBCBS", "EXTERNAL"}
		c.buf = appendFrame(c.buf[:0], frameTypeSASL, 0, codeSASLMechanisms, []any{mechs}, nil)
		_, _ = c.w.Write(c.buf)
		if err := c.w.Flush(); err != nil {
			return err
		}
		if _, err := c.readHandshakeFrame(frameTypeSASL, codeSASLInit); err != nil {
			return err
		}
		c.buf = appendFrame(c.buf[:0], frameTypeSASL, 0, codeSASLOutcome, []any{uint8(0)}, nil)
		_, _ = c.w.Write(c.buf)
		if err := c.w.Flush(); err != nil {
			return err
		}
		if id, err = readProtoHeader(c.r); err != nil {
			return err
		}
	}
	if id != protoAMQP {
		_, _ = c.w.Write(protoHeader(protoSASL))
		return fmt.Errorf("amqp: unsupported protocol id %d", id)
	}
	_, _ = c.w.Write(protoHeader(protoAMQP))
	if err := c.w.Flush(); err != nil {
		return err
	}
	open, err := c.readHandshakeFrame(frameTypeAMQP, codeOpen)
	if err != nil {
		return err
	}
	c.peerMaxFrame = ourMaxFrameSize
	if v, ok := open.uint32Field(2); ok && v < c.peerMaxFrame {
		c.peerMaxFrame = max(v, 512)
	}
	if v, ok := open.uint32Field(4); ok {
		c.peerIdle = time.Duration(v) * time.Millisecond
	}
	c.send(0, codeOpen, []any{"testhub", nil, uint32(ourMaxFrameSize), uint16(0xffff)}, nil)
	return c.w.Flush()
}

func (c *conn) readHandshakeFrame(typ byte, code uint64) (performative, error) {
	fr, err := readFrame(c.r, ourMaxFrameSize)
	if err != nil {
		return performative{}, err
	}
	p, err := parsePerformative(fr.body)
	if err != nil {
		return performative{}, err
	}
	if fr.typ != typ || p.code != code {
		return performative{}, fmt.Errorf("amqp: expected performative %#x, got %#x", code, p.code)
	}
	return p, nil
}

// readLoop parses frames and hands them to loop.
func (c *conn) readLoop() {
	defer c.hub.wg.Done()
	for {
		var in inbound
		fr, err := readFrame(c.r, ourMaxFrameSize)
		switch {
		case err != nil:
			in.err = err
		case len(fr.body) == 0:
			in.heartbeat = true
		default:
			in.typ, in.channel = fr.typ, fr.channel
			in.perf, in.err = parsePerformative(fr.body)
		}
		select {
		case c.in <- in:
		case <-c.quit:
			return
		}
		if in.err != nil {
			return
		}
	}
}

// loop owns the connection state: it handles frames, posted actions and
// heartbeats, then delivers what link credit allows and flushes.
func (c *conn) loop() {
	var tick <-chan time.Time
	if c.peerIdle > 0 {
		t := time.NewTicker(max(c.peerIdle/2, 50*time.Millisecond))
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case in := <-c.in:
			// handle what has already arrived before flushing
			for n := 0; ; n++ {
				if err := c.handle(in); err != nil {
					c.fail(err)
					return
				}
				c.pump()
				if n == 64 || len(c.in) == 0 {
					break
				}
				in = <-c.in
			}
		case <-c.wake:
			c.mu.Lock()
			actions := c.actions
			c.actions = nil
			c.mu.Unlock()
			for _, fn := range actions {
				fn()
			}
		case <-tick:
			if !c.wrote {
				_, _ = c.w.Write(heartbeat)
			}
			c.wrote = false
		case <-c.hub.done:
			c.fail(&amqpError{"amqp:connection:forced", "hub closed"})
			return
		}
		c.pump()
		if c.w.Buffered() > 0 {
			if err := c.w.Flush(); err != nil {
				return
			}
		}
	}
}

// fail sends a close frame describing err (unless the peer closed or the
// connection broke) and flushes.
func (c *conn) fail(err error) {
	var ae *amqpError
	switch {
	case errors.Is(err, errPeerClosed), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
	case errors.As(err, &ae):
		c.send(0, codeClose, []any{ae.value()}, nil)
	default:
		c.send(0, codeClose, []any{(&amqpError{condDecodeError, err.Error()}).value()}, nil)
	}
	_ = c.w.Flush()
}

// wakeUp nudges loop without blocking; safe from any goroutine.
func (c *conn) wakeUp() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// post runs fn on the connection's goroutine; safe from any goroutine.
func (c *conn) post(fn func()) {
	c.mu.Lock()
	c.actions = append(c.actions, fn)
	c.mu.Unlock()
	c.wakeUp()
}

// send writes one frame to the buffered writer; payload is written as is.
func (c *conn) send(channel uint16, code uint64, fields []any, payload []byte) {
	c.buf = appendFrame(c.buf[:0], frameTypeAMQP, channel, code, fields, nil)
	if len(payload) > 0 {
		n := uint32(len(c.buf) + len(payload))
		c.buf[0], c.buf[1], c.buf[2], c.buf[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	}
	_, _ = c.w.Write(c.buf)
	_, _ = c.w.Write(payload)
	c.wrote = true
}

// handle processes one inbound frame.
func (c *conn) handle(in inbound) error {
	if in.err != nil {
		if errors.Is(in.err, io.EOF) || errors.Is(in.err, net.ErrClosed) {
			return in.err
		}
		return &amqpError{condFramingError, in.err.Error()}
	}
	if in.heartbeat {
		return nil
	}
	if in.typ != frameTypeAMQP {
		return &amqpError{condFramingError, fmt.Sprintf("unexpected frame type %d", in.typ)}
	}
	p := in.perf
	switch p.code {
	case codeBegin:
		return c.begin(in.channel, p)
	case codeClose:
		c.send(0, codeClose, nil, nil)
		return errPeerClosed
	case codeOpen:
		return &amqpError{condNotAllowed, "duplicate open"}
	}
	s := c.sessions[in.channel]
	if s == nil {
		return &amqpError{condFramingError, fmt.Sprintf("performative %#x on channel %d without a session", p.code, in.channel)}
	}
	switch p.code {
	case codeAttach:
		return s.attach(p)
	case codeFlow:
		return s.flow(p)
	case codeTransfer:
		return s.transfer(p)
	case codeDisposition:
		return nil // all our deliveries are sent settled
	case codeDetach:
		return s.detach(p)
	case codeEnd:
		s.releaseAll()
		delete(c.sessions, s.ch)
		c.send(s.ch, codeEnd, nil, nil)
		return nil
	}
	return &amqpError{condNotAllowed, fmt.Sprintf("unexpected performative %#x", p.code)}
}

// begin answers a client's begin. The session uses the client's channel
// number for our side too.
func (c *conn) begin(ch uint16, p performative) error {
	if c.sessions[ch] != nil {
		return &amqpError{condNotAllowed, fmt.Sprintf("channel %d already in use", ch)}
	}
	if p.field(0) != nil {
		return &amqpError{condNotAllowed, "begin with remote-channel: the hub does not initiate sessions"}
	}
	s := &session{c: c, ch: ch, links: map[uint32]*link{}}
	s.nextIncomingID, _ = p.uint32Field(1)
	s.remoteIncomingWindow, _ = p.uint32Field(2)
	c.sessions[ch] = s
	c.send(ch, codeBegin, []any{ch, s.nextOutgoingID, uint32(ourIncomingWindow), uint32(ourOutgoingWindow), uint32(0xffff)}, nil)
	return nil
}

// pump delivers to every sending link as far as credit and windows allow.
func (c *conn) pump() {
	for _, s := range c.sessions {
		for _, l := range s.links {
			if l.sending && !l.detaching {
				s.pumpLink(l)
			}
		}
	}
}

// releaseAll unregisters every link when the connection ends.
func (c *conn) releaseAll() {
	for _, s := range c.sessions {
		s.releaseAll()
	}
}
