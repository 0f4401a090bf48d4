package safefile

import "os"

// redirects tells whether a name the walk meets points elsewhere: a
// symlink, or on Windows another name-surrogate reparse point (a junction,
// a mount point), which Go reports as irregular and not a directory;
// os.Readlink reads a junction's target, and any it cannot read ends the
// walk (refused: cannotCheck). A directory that is a reparse point of
// another kind (a OneDrive folder) is irregular too but a directory: it is
// walked as one.
func redirects(m os.FileMode) bool {
	return m&os.ModeSymlink != 0 || (m&os.ModeIrregular != 0 && !m.IsDir())
}
