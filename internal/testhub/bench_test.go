package testhub

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azeventhubs/v2"
)

// BenchmarkPublishReceive measures Publish plus delivery to a PartitionClient.
func BenchmarkPublishReceive(b *testing.B) {
	h, err := Start(Options{Partitions: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	ctx := b.Context()
	cons, err := azeventhubs.NewConsumerClientFromConnectionString(h.ConnectionString(), "", azeventhubs.DefaultConsumerGroup, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer cons.Close(ctx)
	pc, err := cons.NewPartitionClient("0", &azeventhubs.PartitionClientOptions{StartPosition: earliest(), Prefetch: 1000})
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close(ctx)
	body := bytes.Repeat([]byte("x"), 100)
	bodies := make([][]byte, 1000)
	for i := range bodies {
		bodies[i] = append([]byte(strconv.Itoa(i)), body...)
	}
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for got := 0; got < b.N; {
		if err := h.Publish("0", bodies[:min(len(bodies), b.N-got)]...); err != nil {
			b.Fatal(err)
		}
		for want := got + min(len(bodies), b.N-got); got < want; {
			evs, err := pc.ReceiveEvents(ctx, want-got, nil)
			if err != nil {
				b.Fatal(err)
			}
			got += len(evs)
		}
	}
}
