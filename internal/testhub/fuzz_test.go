package testhub

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Raw frame builders for protocol-level tests and fuzz seeds.

func amqpFrame(channel uint16, code uint64, fields ...any) []byte {
	return appendFrame(nil, frameTypeAMQP, channel, code, fields, nil)
}

func transferFrame(handle, deliveryID uint32, format uint32, more bool, payload []byte) []byte {
	return appendFrame(nil, frameTypeAMQP, 0, codeTransfer, []any{handle, deliveryID, []byte{1}, format, false, more}, payload)
}

func source(addr string, filter string) any {
	return described{uint64(codeSource), []any{addr, nil, nil, nil, nil, nil, nil,
		amqpMap{{symbol("apache.org:selector-filter:string"), described{uint64(0x468C00000004), filter}}}}}
}

func target(addr string) any { return described{uint64(codeTarget), []any{addr}} }

func attachFrame(name string, handle uint32, clientReceives bool, src, tgt any, props amqpMap) []byte {
	f := make([]any, attProperties+1)
	f[attName], f[attHandle], f[attRole], f[attSource], f[attTarget] = name, handle, clientReceives, src, tgt
	f[attInitialDeliveryCount] = uint32(0)
	if props != nil {
		f[attProperties] = props
	}
	return amqpFrame(0, codeAttach, f...)
}

var (
	amqpHeader = protoHeader(protoAMQP)
	openFrame  = amqpFrame(0, codeOpen, "fuzz", nil, uint32(4096), uint16(8), uint32(60000))
	beginFrame = amqpFrame(0, codeBegin, nil, uint32(0), uint32(5000), uint32(5000))
)

// conversation is a valid client session: produce a batch, consume it with
// an epoch receiver, ask $management and $cbs, then close everything.
func conversation() []byte {
	batch := appendValue(nil, described{uint64(secMessageAnnots), amqpMap{{symbol(annPartitionKey), "k"}}})
	for _, body := range []string{"a", "b"} {
		batch = appendValue(batch, described{uint64(secData), dataMessage([]byte(body))})
	}
	req := appendValue(nil, described{uint64(secProperties), []any{"id-1", nil, nil, nil, "reply"}})
	req = appendValue(req, described{uint64(secAppProperties), amqpMap{
		{"operation", "READ"}, {"name", "hub1"}, {"type", "com.microsoft:partition"}, {"partition", "0"}}})
	big := dataMessage(bytes.Repeat([]byte{7}, 9000))
	var b []byte
	for _, f := range [][]byte{
		amqpHeader, openFrame, beginFrame,
		attachFrame("p", 0, false, source("c", ""), target("hub1/Partitions/0"), nil),
		transferFrame(0, 0, batchMessageFormat, false, batch),
		transferFrame(0, 1, 0, true, big[:5000]),
		transferFrame(0, 1, 0, false, big[5000:]),
		attachFrame("r", 1, true, source("hub1/ConsumerGroups/$Default/Partitions/0", "amqp.annotation.x-opt-offset > '-1'"), target("me"),
			amqpMap{{symbol("com.microsoft:epoch"), int64(3)}}),
		amqpFrame(0, codeFlow, uint32(0), uint32(5000), uint32(0), uint32(5000), uint32(1), uint32(0), uint32(10), nil, false, true),
		attachFrame("ms", 2, false, source("x", ""), target("hub1/$management"), nil),
		attachFrame("mr", 3, true, source("hub1/$management", ""), target("reply"), nil),
		amqpFrame(0, codeFlow, uint32(0), uint32(5000), uint32(0), uint32(5000), uint32(3), uint32(0), uint32(10)),
		transferFrame(2, 2, 0, false, req),
		attachFrame("bad", 4, true, source("nowhere", ""), target("x"), nil),
		amqpFrame(0, codeDetach, uint32(1), true),
		amqpFrame(0, codeEnd),
		amqpFrame(0, codeClose),
	} {
		b = append(b, f...)
	}
	return b
}

// runConn feeds input to a fresh connection of h and returns what it wrote
// before closing by itself or until wait passed.
func runConn(h *Hub, input []byte, wait time.Duration) []byte {
	client, server := net.Pipe()
	c := newConn(h, server)
	h.mu.Lock()
	h.conns[c] = struct{}{}
	h.wg.Add(1)
	h.mu.Unlock()
	go c.serve()

	var out bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(&out, client)
	}()
	_ = client.SetWriteDeadline(time.Now().Add(wait))
	_, _ = client.Write(input)
	select {
	case <-c.quit:
	case <-time.After(wait):
	}
	client.Close()
	wg.Wait()
	<-c.quit
	return out.Bytes()
}

func fuzzSeeds(f *testing.F) {
	f.Add(conversation())
	f.Add(append(append(append([]byte{}, amqpHeader...), openFrame...), beginFrame...))
	f.Add(dataMessage([]byte("body")))
	f.Add(appendValue(nil, []any{amqpMap{{"k", []string{"a", "b"}}}, []symbol{"s"}, uuid{}, time.Unix(1, 0), int64(-5), float64(1)}))
	f.Add([]byte{0xf0, 0, 0, 0, 20, 0xff, 0xff, 0xff, 0xff, 0x40})
}

// FuzzDecodeFrames checks that the frame reader, the type decoder and the
// message parsers never panic on arbitrary input, and that decoded values
// re-encode to decodable bytes.
func FuzzDecodeFrames(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			fr, err := readFrame(r, 1<<16)
			if err != nil {
				break
			}
			if p, err := parsePerformative(fr.body); err == nil {
				_ = terminusAddress(p.field(attSource), codeSource)
			}
		}
		if v, n, err := decodeValue(data); err == nil {
			if n > len(data) {
				t.Fatalf("decoded %d bytes of %d", n, len(data))
			}
			if _, _, err := decodeValue(appendValue(nil, v)); err != nil {
				t.Fatalf("re-encoded value does not decode: %v", err)
			}
		}
		_, _ = elements(data)
		_, _ = encodeEvent(data, 1, 2, time.Unix(0, 0), "k")
		_, _, _ = splitBatch(data, batchMessageFormat)
		_, _ = parseRequest(data)
	})
}

// FuzzConn feeds arbitrary frames to a connection (after a valid header
// and open unless the input brings its own header): it must never panic.
func FuzzConn(f *testing.F) {
	fuzzSeeds(f)
	h, err := Start(Options{Name: "hub1", Partitions: 2})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { h.Close() })
	f.Fuzz(func(t *testing.T, data []byte) {
		if !bytes.HasPrefix(data, []byte("AMQP")) {
			data = append(append(append([]byte{}, amqpHeader...), openFrame...), data...)
		}
		runConn(h, data, 5*time.Millisecond)
	})
}
