// Command ehcheckpoints inspects and repairs the checkpoint store file of
// Azure Event Hubs processors that use boltstore, live while processors run,
// and moves its data to and from Azure Blob Storage.
//
// Run `ehcheckpoints --help` for the verbs and `ehcheckpoints VERB --help`
// for each verb's flags and examples.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
