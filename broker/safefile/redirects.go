package safefile

import "os"

// reparseNameSurrogate is the bit of a reparse tag that says the reparse
// point names another file or directory (winnt.h
// IsReparseTagNameSurrogate): a symlink, a junction (mount point).
const reparseNameSurrogate = 0x20000000

// redirects tells whether a name the walk meets points elsewhere, from
// its Lstat mode m and, on Windows, its reparse tag (0 for a name that is
// no reparse point, and on every other OS): a symlink, or on Windows
// another name-surrogate reparse point (a junction, a mount point), which
// Go reports as irregular; os.Readlink reads a junction's target, and any
// it cannot read ends the walk (refused: cannotCheck). A reparse point of
// another kind (a OneDrive folder or placeholder file, a deduplicated,
// compressed or tiered file), irregular too, directory or not, is the
// directory or file it is: it is walked, or judged, as one, as Windows
// opens it as one.
func redirects(m os.FileMode, tag uint32) bool {
	return m&os.ModeSymlink != 0 || (m&os.ModeIrregular != 0 && tag&reparseNameSurrogate != 0)
}
