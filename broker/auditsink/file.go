package auditsink

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/pamctl/pamctl/broker/audit"
	"github.com/pamctl/pamctl/broker/safefile"
)

// fileTarget writes the export format of `pamctl audit export`, so every
// file verifies with `pamctl audit verify --file`:
//
//	{"range":{...}}  first line: the seq and hash of the event before the
//	                 file's first event (0 and the genesis hash for seq 1;
//	                 so the active file, which has no head yet, verifies)
//	{"seq":...}      the events, contiguous
//	{"head":{...}}   last line of a rotated file: the latest signed head
//	                 that falls inside it, when one does
//
// The active file never ends with a head (events follow); it rotates to
// PATH.1 (PATH.1 to PATH.2, …) when the next event would pass max_size, or
// when the next event does not follow the last one written (events pruned
// before delivery). Events already in the file (a batch resent after a
// crash) are skipped, so the file never holds a duplicate.
type fileTarget struct {
	path     string
	maxSize  int64
	maxFiles int

	f     *os.File
	size  int64
	first uint64     // first event seq in the active file
	last  audit.Link // last event written (Seq 0: none)
	held  *audit.SignedHead
}

func newFileTarget(c SinkConfig) (*fileTarget, error) {
	t := &fileTarget{path: c.Path, maxSize: c.MaxSize, maxFiles: c.MaxFiles}
	if t.maxSize <= 0 {
		t.maxSize = DefaultMaxSize
	}
	if t.maxFiles <= 0 {
		t.maxFiles = DefaultMaxFiles
	}
	if err := checkFileWay(t.path); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(t.path), 0o700); err != nil {
		return nil, fmt.Errorf("file: %w", err)
	}
	if err := t.open(); err != nil {
		return nil, err
	}
	return t, nil
}

// open opens the active file and learns where it ends.
func (t *fileTarget) open() error {
	f, err := openAppend(t.path, os.O_RDWR)
	if err != nil {
		return fmt.Errorf("file: %w", err)
	}
	t.f, t.size, t.first, t.last, t.held = f, 0, 0, audit.Link{}, nil
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("file: %w", err)
	}
	t.size = fi.Size()
	if t.size, err = cutTornLine(f, t.size); err != nil {
		return fmt.Errorf("file %s: %w", t.path, err)
	}
	if t.size == 0 {
		return nil
	}
	first, last, endsWithHead, err := scanEnds(f, t.size)
	if err != nil {
		return fmt.Errorf("file %s: %w (move it aside to start a new file)", t.path, err)
	}
	t.first, t.last = first, last
	if endsWithHead {
		// Rotated head written but the rename did not happen (crash).
		return t.rotate()
	}
	return nil
}

// cutTornLine drops a last line without its newline: what a crash in
// the middle of a batch left (a batch is several writes). That batch was
// never acknowledged (the cursor moves after Deliver returns), so it is
// sent again; a line in the middle that does not read is still damage
// (scanEnds). It returns the size of the file after the cut.
func cutTornLine(f *os.File, size int64) (int64, error) {
	end, err := completeLinesEnd(f, size)
	if err != nil || end == size {
		return end, err
	}
	if err := f.Truncate(end); err != nil {
		return 0, fmt.Errorf("cut the line a crash left unfinished: %w", err)
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	return end, nil
}

// completeLinesEnd returns where the file's last complete line ends: size,
// or less when a crash left a line without its newline.
func completeLinesEnd(f *os.File, size int64) (int64, error) {
	end := size
	buf := make([]byte, 4<<10)
	for end > 0 {
		n := min(int64(len(buf)), end)
		if _, err := f.ReadAt(buf[:n], end-n); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			end = end - n + int64(i) + 1
			break
		}
		end -= n
	}
	return end, nil
}

// checkFileWay refuses a file sink's path or the anchor file that another
// local user could write, or replace through a directory on its way
// (safefile.CheckWay and CheckPerms): the sink would append the trail to a
// file they had put there or could swap. The copy would still verify
// against the trail, but not be where the operator's collector reads it;
// heads could be dropped from the anchor file.
func checkFileWay(path string) error {
	if err := safefile.CheckWay(path); err != nil {
		return fmt.Errorf("file: %w", err)
	}
	if _, err := safefile.CheckPerms(path, false); err != nil {
		return fmt.Errorf("file: %w", err)
	}
	return nil
}

// checkFileTarget reports what would stop newFileTarget, creating and
// changing nothing: a directory in the path that is a file, a path that
// is a symlink or not a regular file, or an existing file that cannot be
// read or holds an event line that does not read (a last line a crash
// left unfinished is not an error: the sink cuts it). It does not judge
// whether the user serve runs as may create or write the file.
func checkFileTarget(c SinkConfig) error {
	for dir := filepath.Dir(c.Path); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err == nil {
			if !fi.IsDir() {
				return fmt.Errorf("file %s: %s is not a directory (%s)", c.Path, dir, safefile.Kind(fi.Mode()))
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
			return fmt.Errorf("file %s: %w", c.Path, err)
		}
		if parent := filepath.Dir(dir); parent == dir {
			break
		}
	}
	if err := checkOutputPath("file", c.Path); err != nil {
		return err
	}
	if err := checkFileWay(c.Path); err != nil {
		return err
	}
	f, err := os.OpenFile(c.Path, os.O_RDONLY|appendFlags, 0)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil // created at start
	case err != nil:
		return fmt.Errorf("file %s: %w", c.Path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("file %s: %w", c.Path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("file %s is not a regular file (%s): set the path of a file", c.Path, safefile.Kind(fi.Mode()))
	}
	end, err := completeLinesEnd(f, fi.Size())
	if err != nil {
		return fmt.Errorf("file %s: %w", c.Path, err)
	}
	if _, _, _, err := scanEnds(f, end); err != nil {
		return fmt.Errorf("file %s: %w (move it aside to start a new file)", c.Path, err)
	}
	return nil
}

// scanEnds reads the first event seq and the last event link of a file.
func scanEnds(f *os.File, size int64) (first uint64, last audit.Link, endsWithHead bool, err error) {
	sc := bufio.NewScanner(io.NewSectionReader(f, 0, size))
	sc.Buffer(make([]byte, 64<<10), audit.MaxLineBytes+1)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		endsWithHead = bytes.HasPrefix(line, []byte(`{"head":`))
		if !bytes.HasPrefix(line, []byte(`{"seq":`)) {
			continue
		}
		var e struct {
			Seq  uint64 `json:"seq"`
			Hash string `json:"hash"`
		}
		if err := json.Unmarshal(line, &e); err != nil {
			return 0, audit.Link{}, false, fmt.Errorf("unreadable event line: %w", err)
		}
		if first == 0 {
			first = e.Seq
		}
		last = audit.Link{Seq: e.Seq, Hash: e.Hash}
	}
	return first, last, endsWithHead, sc.Err()
}

func (t *fileTarget) Deliver(_ context.Context, recs []Record) error {
	w := bufio.NewWriterSize(t.f, 256<<10)
	for _, r := range recs {
		if r.Head != nil {
			if t.last.Seq != 0 && r.Head.Seq >= t.first && r.Head.Seq <= t.last.Seq {
				h := *r.Head
				t.held = &h
			}
			continue
		}
		e := r.Event
		if t.last.Seq != 0 && e.Seq <= t.last.Seq {
			continue // already written before a crash
		}
		line, err := r.Line()
		if err != nil {
			return err
		}
		if t.size > 0 && (e.Seq != t.last.Seq+1 || e.PrevHash != t.last.Hash || t.size+int64(len(line))+1 > t.maxSize) {
			if err := w.Flush(); err != nil {
				return t.writeErr(err)
			}
			if err := t.rotate(); err != nil {
				return err
			}
			w.Reset(t.f)
		}
		if t.size == 0 {
			start, _ := json.Marshal(map[string]audit.Link{"range": {Seq: e.Seq - 1, Hash: e.PrevHash}})
			w.Write(start)
			w.WriteByte('\n')
			t.size += int64(len(start)) + 1
		}
		if t.size == 0 || t.first == 0 {
			t.first = e.Seq
		}
		w.Write(line)
		w.WriteByte('\n')
		t.size += int64(len(line)) + 1
		t.last = audit.Link{Seq: e.Seq, Hash: e.Hash}
	}
	if err := w.Flush(); err != nil {
		return t.writeErr(err)
	}
	if err := t.f.Sync(); err != nil {
		return t.writeErr(err)
	}
	return nil
}

// writeErr reopens the file after a failed write so the next attempt
// starts from what is really on disk.
func (t *fileTarget) writeErr(err error) error {
	t.f.Close()
	if oerr := t.open(); oerr != nil {
		return fmt.Errorf("file %s: %w (and reopening: %v)", t.path, err, oerr)
	}
	return fmt.Errorf("file %s: %w", t.path, err)
}

// rotate closes the active file (with the held head as its last line) and
// shifts the rotated copies, keeping maxFiles files in all.
func (t *fileTarget) rotate() error {
	if h := t.held; h != nil && h.Seq >= t.first && h.Seq <= t.last.Seq {
		b, err := Record{Head: h}.Line()
		if err != nil {
			return err
		}
		if _, err := t.f.Write(append(b, '\n')); err != nil {
			return t.writeErr(err)
		}
	}
	if err := t.f.Sync(); err != nil {
		return t.writeErr(err)
	}
	t.f.Close()
	os.Remove(t.path + "." + strconv.Itoa(t.maxFiles-1))
	for i := t.maxFiles - 2; i >= 1; i-- {
		if err := os.Rename(t.path+"."+strconv.Itoa(i), t.path+"."+strconv.Itoa(i+1)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("file: rotate: %w", err)
		}
	}
	if err := os.Rename(t.path, t.path+".1"); err != nil {
		return fmt.Errorf("file: rotate: %w", err)
	}
	if d, err := os.Open(filepath.Dir(t.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return t.open()
}

func (t *fileTarget) Close() error {
	if t.f == nil {
		return nil
	}
	return t.f.Close()
}
