package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/term"

	"github.com/pamctl/pamctl/broker/safefile"
)

// writeExportFile writes an export to path through fill. The export is
// evidence and may hold prompts' excerpts, so what it leaves is private to
// pamctl's user whatever was there before:
//   - a regular file (or none) is replaced whole by a new private file
//     (safefile.CreatePrivate beside it, then a rename) once fill has
//     written and synced everything: never the mode, owner or open
//     descriptors of a file someone left there, never a half-written
//     export in its place, and nothing left when fill fails;
//   - a symlink to a regular file is refused (replacing the link, or
//     writing through it, would each surprise someone);
//   - a character device (/dev/null, a terminal with toTerminal) is
//     written as it is; a terminal without toTerminal is refused, as
//     stdout is;
//   - a pipe or socket is written as it is only when pamctl's user (or
//     root) owns it: another user's FIFO would hand them the trail;
//   - a block device is refused.
//
// First of all, the way to path must be one no other local user may
// change (safefile.CheckWay: no directory others may write, unless
// sticky, no symlink of theirs on the way), or the export would land where
// they choose, or in a directory where they could replace it after.
func writeExportFile(path string, toTerminal bool, fill func(io.Writer) error) error {
	if err := safefile.CheckWay(path); err != nil {
		return withCode(ExitUsage, fmt.Errorf("--file: %w", err))
	}
	lfi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return err
	case lfi.Mode().IsRegular():
	case lfi.Mode()&fs.ModeSymlink != 0:
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
			return withCode(ExitUsage, fmt.Errorf("--file %s is a symbolic link to a regular file: name the file itself, or remove the link (an export replaces a file whole and never writes through a link)", path))
		}
		return writeExisting(path, toTerminal, fill) // /dev/stdout, /dev/fd/N
	case lfi.IsDir():
		return withCode(ExitUsage, fmt.Errorf("--file %s is a directory: name a file in it", path))
	default:
		return writeExisting(path, toTerminal, fill)
	}
	tmp, err := createTempBeside(path, randomSuffix)
	if err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	err = fill(tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// writeExisting writes an export into something that exists and is not a
// regular file: a character device, or a pipe or socket pamctl's user
// owns.
func writeExisting(path string, toTerminal bool, fill func(io.Writer) error) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	switch m := fi.Mode(); {
	case m&fs.ModeDevice != 0 && m&fs.ModeCharDevice == 0:
		return withCode(ExitUsage, fmt.Errorf("--file %s is a block device: write the export to a regular file", path))
	case m&fs.ModeCharDevice != 0:
	case m&(fs.ModeNamedPipe|fs.ModeSocket) != 0:
		if err := safefile.CheckOwner(path); err != nil {
			return withCode(ExitUsage, fmt.Errorf("--file %s is a pipe or socket another user may read from: %w", path, err))
		}
	default:
		return withCode(ExitUsage, fmt.Errorf("--file %s is %s: write the export to a regular file", path, safefile.Kind(m)))
	}
	fh, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer fh.Close()
	if term.IsTerminal(int(fh.Fd())) && !toTerminal {
		return withCode(ExitUsage, fmt.Errorf("--file %s is a terminal: audit export writes the exact hash-chained lines, which may hold bidi controls and invisible characters a terminal would obey or hide; write them to a regular file, or pass --to-terminal", path))
	}
	if err := fill(fh); err != nil {
		return err
	}
	return fh.Close()
}
