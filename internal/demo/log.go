package demo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Kind says what an Entry records.
type Kind string

// The kinds of log entries. A partition's session in a processor runs
// from KindOpen to KindClose, KindLost or KindError; a session of a killed
// process just stops.
const (
	KindStart            Kind = "start"             // the process started (Owner)
	KindOpen             Kind = "open"              // the Processor handed over a partition client
	KindEvent            Kind = "event"             // an event was processed (Seq)
	KindCheckpoint       Kind = "checkpoint"        // a checkpoint at Seq is being written
	KindCheckpointed     Kind = "checkpointed"      // that checkpoint is stored
	KindCheckpointFailed Kind = "checkpoint-failed" // that checkpoint failed (Error)
	KindClose            Kind = "close"             // the processor stopped and closed the partition client
	KindLost             Kind = "lost"              // another processor took the partition
	KindError            Kind = "error"             // receiving failed; the partition client closed (Error)
	KindStop             Kind = "stop"              // the process ends (Error if it failed)
)

// Entry is one line of a processor's log: a JSON object.
type Entry struct {
	Time      time.Time `json:"t"`
	Kind      Kind      `json:"kind"`
	Owner     string    `json:"owner,omitempty"`
	Partition string    `json:"p,omitempty"`
	Seq       int64     `json:"seq,omitempty"`
	Error     string    `json:"err,omitempty"`
}

// logger writes entries as JSON lines. Each line is one Write, so that
// what a killed process logged is whole in its log file.
type logger struct {
	mu sync.Mutex
	w  io.Writer
}

func newLogger(w io.Writer) *logger { return &logger{w: w} }

func (l *logger) write(e Entry) {
	e.Time = time.Now()
	line, err := json.Marshal(e)
	if err != nil {
		panic(err) // Entry holds only strings, numbers and a time
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	// A failed write (the parent went away) loses only the log; the
	// processor's work is in the store.
	_, _ = l.w.Write(append(line, '\n'))
}

// LogReader reads a log file that its process may still be writing,
// returning each entry once.
type LogReader struct {
	path   string
	offset int64
	rest   []byte // an incomplete last line, completed by a later read
}

// NewLogReader returns a reader of the log file at path.
func NewLogReader(path string) *LogReader { return &LogReader{path: path} }

// Next returns the entries completed since the last call.
func (r *LogReader) Next() ([]Entry, error) {
	f, err := os.Open(r.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.NewSectionReader(f, r.offset, 1<<62))
	if err != nil {
		return nil, err
	}
	r.offset += int64(len(data))
	data = append(r.rest, data...)
	end := bytes.LastIndexByte(data, '\n') + 1
	r.rest = append([]byte(nil), data[end:]...)
	var entries []Entry
	for line := range bytes.Lines(data[:end]) {
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			return entries, fmt.Errorf("%s: %w in %q", r.path, err, line)
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// ReadLog returns the complete entries of a log file.
func ReadLog(path string) ([]Entry, error) {
	return NewLogReader(path).Next()
}
