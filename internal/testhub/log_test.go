package testhub

import (
	"fmt"
	"os"
	"time"

	azlog "github.com/Azure/azure-sdk-for-go/sdk/azcore/log"
)

// init routes SDK logs to stdout when EHLOG is set, for debugging protocol issues.
func init() {
	if os.Getenv("EHLOG") != "" {
		azlog.SetListener(func(e azlog.Event, s string) { fmt.Printf("%s [%s] %s\n", time.Now().Format("15:04:05.000"), e, s) })
	}
}
