// Package boltstore is a checkpoint store for Azure Event Hubs processors
// (azeventhubs.CheckpointStore) that keeps ownerships and checkpoints in one
// local bbolt file. It suits processors on one host, edge devices without
// cloud storage, and laptops:
//
//	store, err := boltstore.Open("checkpoints.db", nil)
//	...
//	processor, err := azeventhubs.NewProcessor(consumerClient, store, nil)
//
// # Semantics
//
// The store follows the contract of the official Blob store. A claim
// succeeds only if its ETag matches the stored one, or, with a nil or empty
// ETag, if no record exists; losing claims are omitted from the result. An
// empty OwnerID relinquishes a partition. Each successful claim gets a fresh
// UUID etag and LastModifiedTime from the store's clock (Options.Now).
// SetCheckpoint replaces the partition's checkpoint without checking
// ownership and refuses one with neither offset nor sequence number.
// Namespace, event hub and consumer group are case-insensitive; lists echo
// the caller's spelling and return partitions in numeric order. A call
// returns after its data is fsync'd, unless Options.NoSync is set: one
// fdatasync per commit, where bbolt alone syncs twice. A record of the
// checksums of the pages each commit wrote, kept in its meta page, tells a
// commit that a power cut left incomplete, and the store that opens the
// file then undoes it, going back to the commit before, and reports it
// (Store.UndoneCommit). The store notes each commit as acknowledged once
// its sync succeeds, so that damage to it is reported as ErrCorrupt rather
// than taken for a cut.
//
// # Several processes, one file
//
// bbolt keeps an exclusive flock on a file for as long as it is open for
// writing. A Store therefore holds the file only while it uses it, under a
// lease:
//
//   - The first call opens the file (under a tenth of a millisecond) and the
//     store keeps it open while calls keep coming, so a busy processor pays
//     nothing per call for sharing.
//   - A process that wants the file while another holds it polls the flock
//     and, meanwhile, holds a shared open-file-description lock on one byte
//     far past the end of the file. The holder looks for that lock after
//     each commit, a quarter millisecond after a look that found it in use,
//     and less often the longer it has no calls, down to every 4 ms (each
//     look wakes the process). When it sees one it stops admitting calls,
//     finishes those in flight, closes the file and stays away for 0.3 ms
//     so the waiter gets in. When two processes take turns on every call,
//     each handover costs one to three milliseconds (medians of 1.2-2.6 ms
//     measured).
//   - A holder that is idle for Options.IdleRelease closes the file unasked.
//     On systems without open-file-description locks (anything but Linux),
//     this is the only way the file changes hands, so a continuously busy
//     store there keeps other processes waiting until Options.LockTimeout.
//
// A store opened with Options.ReadOnly opens the file for reading only
// and takes the flock shared, with the same waiter protocol: several
// read-only stores read at once, and a waiting writer, which announces
// itself as one, goes before any of them takes the flock again.
//
// Reopening re-reads the file, so each process sees the others' committed
// writes, and claims stay atomic across processes because every write
// transaction runs under the one flock.
//
// # Writes
//
// SetCheckpoint and ClaimOwnership calls are committed in groups: one
// transaction and one fsync for everything queued since the last commit,
// and what arrives while that transaction gathers.
// A caller that finds no commit under way commits its own write at once,
// in its own goroutine; callers that arrive during a commit share the next
// one, which a background goroutine runs. That commit takes in writes
// until it holds as many as the last commit had, yielding the CPU for at
// most a quarter of that commit's time and 0.1 ms for the first write and
// again for the rest, and applies each as it arrives: callers just told
// their result are usually about to send their next write, and catching
// them all keeps them in one commit instead of two.
//
// A caller whose input is invalid fails before it is queued. One whose
// context ends while it waits (for the file, for a running Check, or in
// the queue) returns at once, and nothing of its write is written. If the
// context ends while its write is being committed by the background
// goroutine, the call returns at once and the write may or may not be
// stored. A caller committing its own write returns when that commit is on
// disk, with its outcome: its goroutine is the one in the fsync, and
// handing every lone write to another goroutine so that the caller could
// leave cost 10-35% of a SetCheckpoint's time when measured.
//
// # Damage
//
// Every record carries a CRC-32C over its coordinates and contents. Open
// verifies the page structure, the freelist and every record; bbolt panics
// and faults on damaged pages are contained. A file damaged when it is
// opened gives ErrCorrupt naming the file, never wrong data. When the store
// reopens a file it had let go of, it repeats these checks if something
// other than a commit changed the file meanwhile (size, modification or
// change time moved, transaction id did not). Damage written while the store holds the
// file, or alongside another process's commits, is caught only as far as
// record checksums reach. Salvage copies what is intact out of a damaged
// file.
package boltstore
