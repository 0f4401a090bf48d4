//go:build !unix

package auditsink

// appendFlags: no O_NOFOLLOW here; the Lstat check at start remains.
const appendFlags = 0
