package testhub

import (
	"fmt"
	"hash/fnv"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// partition stores events in memory; sequence numbers are slice indexes and
// offsets are the byte position of each event's message in the partition.
type partition struct {
	id string

	mu         sync.RWMutex
	events     []event
	nextOffset int64
	waiters    map[*conn]int // connections with consumer links on this partition
}

// append stores msgs as new events, all or none, and wakes consumers.
func (p *partition) append(msgs [][]byte, partitionKey string) error {
	now := time.Now().UTC().Truncate(time.Millisecond)
	p.mu.Lock()
	defer p.mu.Unlock()
	seq, off := int64(len(p.events)), p.nextOffset
	evs := make([]event, 0, len(msgs))
	for _, m := range msgs {
		payload, err := encodeEvent(m, seq, off, now, partitionKey)
		if err != nil {
			return err
		}
		evs = append(evs, event{seq: seq, offset: off, enqueued: now, payload: payload})
		seq, off = seq+1, off+int64(len(m))
	}
	p.events = append(p.events, evs...)
	p.nextOffset = off
	for c := range p.waiters {
		c.wakeUp()
	}
	return nil
}

// read returns up to n events starting at sequence number from.
func (p *partition) read(from int64, n int) []event {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if from >= int64(len(p.events)) {
		return nil
	}
	return p.events[from:min(int64(len(p.events)), from+int64(n))]
}

func (p *partition) addWaiter(c *conn) {
	p.mu.Lock()
	p.waiters[c]++
	p.mu.Unlock()
}

func (p *partition) removeWaiter(c *conn) {
	p.mu.Lock()
	if p.waiters[c]--; p.waiters[c] <= 0 {
		delete(p.waiters, c)
	}
	p.mu.Unlock()
}

var filterRE = regexp.MustCompile(`^\s*amqp\.annotation\.(x-opt-offset|x-opt-sequence-number|x-opt-enqueued-time)\s*(>=|>)\s*'([^']*)'\s*$`)

// start resolves a selector filter expression, as the SDK builds it, to the
// sequence number of the first event to deliver. No filter means earliest.
func (p *partition) start(expr string) (int64, *amqpError) {
	if expr == "" {
		return 0, nil
	}
	m := filterRE.FindStringSubmatch(expr)
	if m == nil {
		return 0, &amqpError{condNotAllowed, fmt.Sprintf("unsupported selector filter %q", expr)}
	}
	inclusive, value := m[2] == ">=", m[3]
	p.mu.RLock()
	defer p.mu.RUnlock()
	n := len(p.events)
	if m[1] == "x-opt-offset" && value == "@latest" {
		return int64(n), nil
	}
	v, err := strconv.ParseInt(value, 10, 64)
	if err != nil {
		return 0, &amqpError{condOutOfRange, fmt.Sprintf("invalid %s value %q in selector filter", m[1], value)}
	}
	after := func(x int64) bool { return x > v || (inclusive && x == v) }
	switch m[1] {
	case "x-opt-offset":
		return int64(sort.Search(n, func(i int) bool { return after(p.events[i].offset) })), nil
	case "x-opt-enqueued-time":
		return int64(sort.Search(n, func(i int) bool { return after(p.events[i].enqueued.UnixMilli()) })), nil
	}
	if !inclusive {
		v++
	}
	if v > int64(n) {
		return 0, &amqpError{condOutOfRange, fmt.Sprintf("sequence number %s is beyond the last sequence number %d of partition %s", value, n-1, p.id)}
	}
	return max(v, 0), nil
}

// resolve binds a new link to its node from the attach addresses, claiming
// partition ownership for consumers. It returns the error to refuse with.
func (h *Hub) resolve(l *link, source, target string, p performative) *amqpError {
	addr := target
	if l.sending {
		addr = source
	}
	parts := strings.Split(addr, "/")
	last := parts[len(parts)-1]
	onHub := strings.EqualFold(parts[0], h.name)
	switch {
	case addr == "$cbs":
		l.kind = nodeCBS
	case last == "$management" && (len(parts) == 1 || len(parts) == 2 && onHub):
		l.kind = nodeMgmt
	case onHub && !l.sending && len(parts) == 1:
		l.kind = nodeProducer
	case onHub && !l.sending && len(parts) == 3 && strings.EqualFold(parts[1], "Partitions"):
		l.kind, l.part = nodeProducer, h.partition(parts[2])
		if l.part == nil {
			return &amqpError{condNotFound, fmt.Sprintf("partition %q does not exist in event hub %q", parts[2], h.name)}
		}
	case onHub && l.sending && len(parts) == 5 && strings.EqualFold(parts[1], "ConsumerGroups") && strings.EqualFold(parts[3], "Partitions"):
		return h.attachConsumer(l, strings.ToLower(parts[2]), parts[4], p)
	default:
		return &amqpError{condNotFound, fmt.Sprintf("no messaging entity at %q (event hub %q)", addr, h.name)}
	}
	if l.sending {
		l.replyAddr = target
	}
	return nil
}

func (h *Hub) attachConsumer(l *link, group, partitionID string, p performative) *amqpError {
	part := h.partition(partitionID)
	if part == nil {
		return &amqpError{condNotFound, fmt.Sprintf("partition %q does not exist in event hub %q", partitionID, h.name)}
	}
	var expr string
	if src := describedList(p.field(attSource), codeSource); len(src) > 7 {
		filters, _ := src[7].(amqpMap)
		for _, f := range filters {
			v := f.value
			if d, ok := v.(described); ok {
				v = d.value
			}
			if s, ok := v.(string); ok && strings.HasPrefix(strings.TrimSpace(s), "amqp.annotation.") {
				expr = s
			}
		}
	}
	next, err := part.start(expr)
	if err != nil {
		return err
	}
	if props, ok := p.field(attProperties).(amqpMap); ok {
		if v, ok := props.get("com.microsoft:epoch"); ok {
			if l.epoch, l.hasEpoch = asInt(v); !l.hasEpoch {
				return &amqpError{condNotAllowed, fmt.Sprintf("invalid epoch %v", v)}
			}
		}
	}
	l.kind, l.part, l.group, l.next = nodeConsumer, part, group, next
	if err := h.claimOwner(l); err != nil {
		l.kind = 0
		return err
	}
	part.addWaiter(l.s.c)
	return nil
}

// claimOwner registers a consumer, applying epoch rules: a receiver with an
// epoch at least as high as every existing one takes the partition (for its
// consumer group), and the others are detached with amqp:link:stolen.
func (h *Hub) claimOwner(l *link) *amqpError {
	key := l.group + "/" + l.part.id
	h.mu.Lock()
	var keep, victims []*link
	for _, o := range h.owners[key] {
		switch {
		case l.hasEpoch && (!o.hasEpoch || o.epoch <= l.epoch):
			victims = append(victims, o)
		case l.hasEpoch || o.hasEpoch:
			h.mu.Unlock()
			return &amqpError{condStolen, fmt.Sprintf("receiver %q with epoch %d already owns partition %s of consumer group %q; receiver %q (epoch %s) is refused",
				o.name, o.epoch, l.part.id, l.group, l.name, epochString(l))}
		default:
			keep = append(keep, o)
		}
	}
	h.owners[key] = append(keep, l)
	h.mu.Unlock()
	for _, v := range victims {
		e := &amqpError{condStolen, fmt.Sprintf("new receiver %q with higher epoch of %d is created hence current receiver %q with epoch %s is getting disconnected",
			l.name, l.epoch, v.name, epochString(v))}
		v.s.c.post(func() { v.s.detachLink(v, e) })
	}
	return nil
}

func epochString(l *link) string {
	if !l.hasEpoch {
		return "none"
	}
	return strconv.FormatInt(l.epoch, 10)
}

func (h *Hub) releaseOwner(l *link) {
	key := l.group + "/" + l.part.id
	h.mu.Lock()
	defer h.mu.Unlock()
	owners := h.owners[key]
	for i, o := range owners {
		if o == l {
			owners = append(owners[:i:i], owners[i+1:]...)
			break
		}
	}
	if len(owners) == 0 {
		delete(h.owners, key)
	} else {
		h.owners[key] = owners
	}
}

// receive acts on a complete message from a client sender.
func (h *Hub) receive(c *conn, l *link, msg []byte) *amqpError {
	switch l.kind {
	case nodeCBS, nodeMgmt:
		req, err := parseRequest(msg)
		if err != nil {
			return &amqpError{condDecodeError, err.Error()}
		}
		var resp []byte
		if l.kind == nodeCBS {
			resp = h.cbs(req)
		} else {
			resp = h.manage(req)
		}
		c.reply(req.replyTo, l.kind, resp)
		return nil
	}
	msgs, key, err := splitBatch(msg, l.format)
	if err != nil {
		return &amqpError{condDecodeError, err.Error()}
	}
	part := l.part
	switch {
	case part != nil:
	case key != "":
		f := fnv.New32a()
		f.Write([]byte(key))
		part = h.partitions[f.Sum32()%uint32(len(h.partitions))]
	default:
		part = h.partitions[h.roundRobin.Add(1)%uint64(len(h.partitions))]
	}
	if err := part.append(msgs, key); err != nil {
		return &amqpError{condDecodeError, err.Error()}
	}
	return nil
}

// reply queues a response on the connection's link whose target address
// matches the request's reply-to; without one the response is dropped.
func (c *conn) reply(addr string, kind nodeKind, resp []byte) {
	for _, s := range c.sessions {
		for _, l := range s.links {
			if l.sending && l.kind == kind && l.replyAddr == addr && !l.detaching {
				l.replies = append(l.replies, resp)
				return
			}
		}
	}
}

// cbs answers put-token requests: every token is accepted.
func (h *Hub) cbs(req request) []byte {
	if op := req.prop("operation"); op != "put-token" {
		return encodeResponse(req, 400, fmt.Sprintf("unsupported $cbs operation %q", op), nil)
	}
	return encodeResponse(req, 202, "Accepted", nil)
}

// manage answers $management READ requests for the event hub and its partitions.
func (h *Hub) manage(req request) []byte {
	if op := req.prop("operation"); op != "READ" {
		return encodeResponse(req, 400, fmt.Sprintf("unsupported $management operation %q", op), nil)
	}
	if name := req.prop("name"); !strings.EqualFold(name, h.name) {
		return encodeResponse(req, 404, fmt.Sprintf("event hub %q not found (this hub is %q)", name, h.name), nil)
	}
	switch typ := req.prop("type"); typ {
	case "com.microsoft:eventhub":
		ids := make([]string, len(h.partitions))
		for i, p := range h.partitions {
			ids[i] = p.id
		}
		return encodeResponse(req, 200, "OK", amqpMap{
			{"name", h.name},
			{"type", typ},
			{"created_at", h.created},
			{"partition_count", int32(len(ids))},
			{"partition_ids", ids},
			{"georeplication_factor", int32(1)},
		})
	case "com.microsoft:partition":
		p := h.partition(req.prop("partition"))
		if p == nil {
			return encodeResponse(req, 404, fmt.Sprintf("partition %q not found", req.prop("partition")), nil)
		}
		p.mu.RLock()
		lastSeq, lastOffset, lastTime := int64(-1), "-1", time.Unix(0, 0).UTC()
		if n := len(p.events); n > 0 {
			e := p.events[n-1]
			lastSeq, lastOffset, lastTime = e.seq, strconv.FormatInt(e.offset, 10), e.enqueued
		}
		p.mu.RUnlock()
		return encodeResponse(req, 200, "OK", amqpMap{
			{"name", h.name},
			{"type", typ},
			{"partition", p.id},
			{"begin_sequence_number", int64(0)},
			{"last_enqueued_sequence_number", lastSeq},
			{"last_enqueued_offset", lastOffset},
			{"last_enqueued_time_utc", lastTime},
			{"is_partition_empty", lastSeq < 0},
		})
	default:
		return encodeResponse(req, 400, fmt.Sprintf("unsupported entity type %q", typ), nil)
	}
}
