package main

import (
	"fmt"
	"time"
)

// formatTime writes a time exactly, for JSON: RFC 3339 in UTC with as many
// fractional digits as it has, so parsing it gives the same instant.
func formatTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}

// ago tells a person how long before now t was, for example "3m12s ago".
// A time in the future, from a clock that runs ahead, reads "in 2s".
func ago(now, t time.Time) string {
	d := now.Sub(t)
	if d < 0 {
		return "in " + humanDuration(-d)
	}
	return humanDuration(d) + " ago"
}

// humanDuration rounds d to its two largest units: "450ms", "12s",
// "3m12s", "2h5m", "3d4h".
func humanDuration(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	s := int64(d.Round(time.Second) / time.Second)
	switch {
	case s >= 86400:
		return fmt.Sprintf("%dd%dh", s/86400, s%86400/3600)
	case s >= 3600:
		return fmt.Sprintf("%dh%dm", s/3600, s%3600/60)
	case s >= 60:
		return fmt.Sprintf("%dm%ds", s/60, s%60)
	}
	return fmt.Sprintf("%ds", s)
}

// humanSize formats a file size in binary units: "32 KiB".
func humanSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	value, prefix := float64(n)/unit, 0
	for value >= unit && prefix < 4 {
		value /= unit
		prefix++
	}
	return fmt.Sprintf("%.1f %ciB", value, "KMGTP"[prefix])
}
