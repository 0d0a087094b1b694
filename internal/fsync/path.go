package fsync

import "os"

// Path opens the file or directory at path and syncs it; syncing a
// directory makes the entries just created in it durable.
func Path(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
