package demo

import (
	"testing"
	"time"
)

// TestPhaseTimeoutCoversBalancing checks that each step of the demo waits
// long enough for its flags' largest values: the processors claim one
// partition each per update interval, so a killed processor's partitions
// take the others Partitions/(Processors-1) intervals to take over. A fixed
// 30 s failed every run above about 180 partitions with 3 processors.
func TestPhaseTimeoutCoversBalancing(t *testing.T) {
	for _, o := range []Options{
		{Processors: 3, Partitions: 200},
		{Processors: 2, Partitions: 1024},
		{Processors: 16, Partitions: 1024},
	} {
		claims := (o.Partitions + o.Processors - 2) / (o.Processors - 1)
		if need := time.Duration(claims)*demoUpdateInterval + basePhaseTimeout; o.phaseTimeout() < need {
			t.Errorf("%d processors, %d partitions: phase timeout %s, want at least %s", o.Processors, o.Partitions, o.phaseTimeout(), need)
		}
	}
}
