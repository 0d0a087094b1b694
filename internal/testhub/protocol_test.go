package testhub

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// serverFrames parses the hub's output after its AMQP protocol header.
func serverFrames(t *testing.T, out []byte) []performative {
	t.Helper()
	if !bytes.HasPrefix(out, amqpHeader) {
		t.Fatalf("output does not start with the AMQP header: % x", out[:min(len(out), 8)])
	}
	r := bytes.NewReader(out[8:])
	var ps []performative
	for {
		fr, err := readFrame(r, 1<<20)
		if err == io.EOF {
			return ps
		}
		if err != nil {
			t.Fatal(err)
		}
		p, err := parsePerformative(fr.body)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
}

func TestRawConversation(t *testing.T) {
	h := startHub(t, 2)
	ps := serverFrames(t, runConn(h, conversation(), 5*time.Second))

	var accepted, refused, stolen int
	var delivered [][]byte
	var msg []byte
	var mgmt performative
	for _, p := range ps {
		switch p.code {
		case codeDisposition:
			if d, ok := p.field(4).(described); ok && d.descriptor == uint64(codeAccepted) && p.boolField(3) {
				accepted++
			}
		case codeAttach:
			if p.field(attSource) == nil {
				refused++
			}
		case codeDetach:
			if e := describedList(p.field(2), codeError); len(e) > 0 && e[0] == symbol(condNotFound) {
				stolen++ // refused "bad" link
			}
		case codeTransfer:
			if len(p.payload) > 4096 {
				t.Errorf("transfer frame of %d bytes exceeds the client's max frame size", len(p.payload))
			}
			msg = append(msg, p.payload...)
			if !p.boolField(xferMore) {
				if h, _ := p.uint32Field(xferHandle); h == 1 {
					delivered = append(delivered, msg)
				} else {
					mgmt = performative{payload: msg}
				}
				msg = nil
			}
		}
	}
	if accepted != 3 || refused != 1 || stolen != 1 {
		t.Errorf("accepted %d, refused %d, not-found detaches %d; want 3, 1, 1", accepted, refused, stolen)
	}
	if len(delivered) != 3 {
		t.Fatalf("delivered %d events, want 3", len(delivered))
	}
	for i, d := range delivered {
		secs, err := splitSections(d)
		if err != nil {
			t.Fatal(err)
		}
		ann, _, _ := decodeValue(secs[0].value)
		seq, _ := ann.(amqpMap).get(annSequenceNumber)
		if secs[0].code != secMessageAnnots || seq != int64(i) {
			t.Errorf("event %d: annotations %v", i, ann)
		}
		if pk, _ := ann.(amqpMap).get(annPartitionKey); (i < 2) != (pk == "k") {
			t.Errorf("event %d: partition key %v", i, pk)
		}
	}
	req, err := parseRequest(mgmt.payload)
	if err == nil || !strings.Contains(err.Error(), "reply-to") {
		t.Fatalf("management response parsed as request: %v", err)
	}
	secs, _ := splitSections(mgmt.payload)
	body, _, _ := decodeValue(secs[len(secs)-1].value)
	if last, _ := body.(amqpMap).get("last_enqueued_sequence_number"); last != int64(2) {
		t.Errorf("management response %v (request %v)", body, req)
	}
	if last := ps[len(ps)-1]; last.code != codeClose {
		t.Errorf("last frame %#x, want close", last.code)
	}
}

func TestMalformedInputClosesConnection(t *testing.T) {
	h := startHub(t, 1)
	for name, input := range map[string][]byte{
		"bad header":       []byte("HTTP/1.1 GET /\r\n\r\n"),
		"tiny frame":       append(append(append([]byte{}, amqpHeader...), openFrame...), 0, 0, 0, 3, 2, 0, 0, 0),
		"garbage body":     append(append(append([]byte{}, amqpHeader...), openFrame...), 0, 0, 0, 12, 2, 0, 0, 0, 0xff, 1, 2, 3),
		"no session":       append(append(append([]byte{}, amqpHeader...), openFrame...), amqpFrame(5, codeFlow)...),
		"oversized frame":  append(append(append([]byte{}, amqpHeader...), openFrame...), 0x7f, 0, 0, 0, 2, 0, 0, 0),
		"unattached xfer":  append(append(append(append([]byte{}, amqpHeader...), openFrame...), beginFrame...), transferFrame(9, 0, 0, false, nil)...),
		"truncated values": append(append(append([]byte{}, amqpHeader...), openFrame...), 0, 0, 0, 14, 2, 0, 0, 0, 0x00, 0x53, 0x11, 0xc0, 0x10, 0x05),
	} {
		t.Run(name, func(t *testing.T) {
			nc, err := net.Dial("tcp", strings.TrimPrefix(strings.Split(h.ConnectionString(), ";")[0], "Endpoint=sb://"))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := nc.Write(input); err != nil {
				t.Fatal(err)
			}
			out, err := io.ReadAll(nc) // the hub must close the connection
			if err != nil {
				t.Fatalf("connection not closed by the hub: %v", err)
			}
			if name == "bad header" {
				if !bytes.Equal(out, protoHeader(protoSASL)) {
					t.Fatalf("answer % x, want the supported protocol header", out)
				}
				return
			}
			ps := serverFrames(t, out)
			last := ps[len(ps)-1]
			if last.code != codeClose || describedList(last.field(0), codeError) == nil {
				t.Fatalf("last frame %#x %v, want close with an error", last.code, last.fields)
			}
		})
	}
}

func TestHeartbeats(t *testing.T) {
	h := startHub(t, 1)
	nc, err := net.Dial("tcp", strings.TrimPrefix(strings.Split(h.ConnectionString(), ";")[0], "Endpoint=sb://"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	open := amqpFrame(0, codeOpen, "c", nil, nil, nil, uint32(200)) // 200ms idle timeout
	if _, err := nc.Write(append(append([]byte{}, amqpHeader...), open...)); err != nil {
		t.Fatal(err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(450 * time.Millisecond))
	if _, err := readProtoHeader(nc); err != nil {
		t.Fatal(err)
	}
	var empty int
	for {
		fr, err := readFrame(nc, 1<<20)
		if err != nil {
			break
		}
		if len(fr.body) == 0 {
			empty++
		}
	}
	if empty < 2 {
		t.Fatalf("%d heartbeats in 450ms for a 200ms idle timeout, want at least 2", empty)
	}
}

func TestDrain(t *testing.T) {
	h := startHub(t, 1)
	if err := h.Publish("0", []byte("a"), []byte("b")); err != nil {
		t.Fatal(err)
	}
	var in []byte
	for _, f := range [][]byte{
		amqpHeader, openFrame, beginFrame,
		attachFrame("r", 0, true, source("hub1/ConsumerGroups/g/Partitions/0", "amqp.annotation.x-opt-sequence-number >= '0'"), target("me"), nil),
		// 10 credits with drain: two events, then the rest of the credit is drained
		amqpFrame(0, codeFlow, uint32(0), uint32(5000), uint32(0), uint32(5000), uint32(0), uint32(0), uint32(10), nil, true),
		amqpFrame(0, codeClose),
	} {
		in = append(in, f...)
	}
	var transfers int
	var drained performative
	for _, p := range serverFrames(t, runConn(h, in, 5*time.Second)) {
		switch p.code {
		case codeTransfer:
			transfers++
		case codeFlow:
			if p.boolField(flowDrain) {
				drained = p
			}
		}
	}
	dc, _ := drained.uint32Field(flowDeliveryCount)
	credit, _ := drained.uint32Field(flowLinkCredit)
	if transfers != 2 || dc != 10 || credit != 0 {
		t.Fatalf("%d transfers, drain flow delivery-count %d credit %d; want 2, 10, 0", transfers, dc, credit)
	}
}
