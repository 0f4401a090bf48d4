package cli

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"golang.org/x/term"
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
//   - anything else that exists (a pipe, /dev/null, a terminal with
//     toTerminal) is opened for writing as it is; a terminal without
//     toTerminal is refused, as stdout is.
func writeExportFile(path string, toTerminal bool, fill func(io.Writer) error) error {
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
// regular file: a pipe, a device.
func writeExisting(path string, toTerminal bool, fill func(io.Writer) error) error {
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
