//go:build !unix

package safefile

import "os"

// accessOf: without Unix ownership, the mode bits are all there is.
func accessOf(os.FileInfo) access { return byOwner }
