//go:build !unix && !windows

package safefile

import "os"

// accessOf: without Unix ownership, the mode bits are all there is.
func accessOf(os.FileInfo) access { return byOwner }

// foreignControl: without Unix ownership, no one is known to control it.
func foreignControl(os.FileInfo, string) (who, fix string) { return "", "" }
