package safefile

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/windows"
)

// On Windows the rules read each file's, directory's and symlink's owner
// and DACL (GetSecurityInfo) and judge them with dacl.go's rules; the
// mode bits Go reports are not looked at. The way is judged by path
// (walk_path.go), then the file is opened by path and what was opened is
// judged again by its handle (judgeOpened).

// processUser is the SID of the user this process runs as ("" when it
// cannot be read: then only SYSTEM and Administrators are trusted, and
// pamctl's own files are refused, which says so).
var processUser = sync.OnceValue(func() string {
	u, err := windows.GetCurrentProcessToken().GetTokenUser()
	if err != nil {
		return ""
	}
	return u.User.Sid.String()
})

// accountName shows a SID as DOMAIN\name (SID), or the SID alone when it
// names no account this host can look up.
func accountName(sid string) string {
	s, err := windows.StringToSid(sid)
	if err != nil {
		return sid
	}
	account, domain, _, err := s.LookupAccount("")
	switch {
	case err != nil || account == "":
		return sid
	case domain == "":
		return account + " (" + sid + ")"
	}
	return domain + `\` + account + " (" + sid + ")"
}

// fromSecurityDescriptor reads the owner and DACL of sd for the rules.
func fromSecurityDescriptor(sd *windows.SECURITY_DESCRIPTOR) (*descriptor, error) {
	owner, _, err := sd.Owner()
	if err != nil {
		return nil, fmt.Errorf("read its owner: %w", err)
	}
	if owner == nil {
		return nil, errors.New("it has no owner")
	}
	d := &descriptor{Owner: owner.String()}
	dacl, _, err := sd.DACL()
	switch {
	case errors.Is(err, windows.ERROR_OBJECT_NOT_FOUND): // no DACL at all
		d.NoDACL = true
		return d, nil
	case err != nil:
		return nil, fmt.Errorf("read its access control list: %w", err)
	case dacl == nil: // a NULL DACL
		d.NoDACL = true
		return d, nil
	}
	for i := range uint32(dacl.AceCount) {
		var e *windows.ACCESS_ALLOWED_ACE
		if err := windows.GetAce(dacl, i, &e); err != nil {
			return nil, fmt.Errorf("read its access control entry %d: %w", i, err)
		}
		a := ace{Type: e.Header.AceType, Flags: e.Header.AceFlags, Mask: uint32(e.Mask)}
		switch a.Type {
		case aceAllowed, aceDenied, aceAllowedCallback, aceDeniedCallback:
			// Header, mask, then the SID: the layout of ACCESS_ALLOWED_ACE.
			a.SID = (*windows.SID)(unsafe.Pointer(&e.SidStart)).String()
		}
		d.ACEs = append(d.ACEs, a)
	}
	return d, nil
}

// securityOf reads the owner and DACL of the file or directory h.
func securityOf(h windows.Handle) (*descriptor, error) {
	sd, err := windows.GetSecurityInfo(h, windows.SE_FILE_OBJECT,
		windows.OWNER_SECURITY_INFORMATION|windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		return nil, err
	}
	return fromSecurityDescriptor(sd)
}

// securityAt reads the owner and DACL of what path names; of a symlink or
// junction itself, not its target, when link.
func securityAt(path string, link bool) (*descriptor, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, err
	}
	flags := uint32(windows.FILE_FLAG_BACKUP_SEMANTICS) // directories open only so
	if link {
		flags |= windows.FILE_FLAG_OPEN_REPARSE_POINT
	}
	h, err := windows.CreateFile(p, windows.READ_CONTROL,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE, nil, windows.OPEN_EXISTING, flags, 0)
	if err != nil {
		return nil, err
	}
	defer windows.CloseHandle(h)
	return securityOf(h)
}

// refusal judges d (of path, what t says it is) for rights and, when
// others hold them, returns CheckPerms' error: "<path>: <what> is <who>:
// <so>; run <fix>".
func refusal(d *descriptor, path, what, target string, t aclTarget, rights uint32, so string) error {
	p, err := judgeACL(d, processUser(), target, t, rights, "writable", accountName)
	if err != nil {
		return &foreignError{fmt.Sprintf("%s: pamctl cannot judge who may change %s (%v): recreate it with pamctl's user as its owner", path, what, err)}
	}
	if p == nil {
		return nil
	}
	return &foreignError{fmt.Sprintf("%s: %s is %s: %s; run %s", path, what, p.who, so, p.fix)}
}

func judgeFile(path, real string, fi os.FileInfo, secret bool) (string, error) {
	d, err := securityAt(real, false)
	if err != nil {
		return "", cannotCheck(path, err)
	}
	return judgeDescriptor(path, real, d, secret)
}

// judgeDescriptor is judgeFile's rules for a file whose descriptor is d.
func judgeDescriptor(path, real string, d *descriptor, secret bool) (string, error) {
	if err := refusal(d, path, "the file"+via(path, real), real, aclFile, fileChangeRights, "they could change it"); err != nil {
		return "", err
	}
	if !secret {
		return "", nil
	}
	p, err := judgeACL(d, processUser(), real, aclFile, readRights, "readable", accountName)
	if err != nil || p == nil {
		return "", err
	}
	return fmt.Sprintf("%s%s holds a secret and is %s: run %s", path, via(path, real), p.who, p.fix), nil
}

// judgeOpened judges the file open holds, as opened: whoever renamed
// another file to its path after the way was judged is caught here.
func judgeOpened(path, real string, f *os.File) error {
	d, err := securityOf(windows.Handle(f.Fd()))
	if err != nil {
		return cannotCheck(path, err)
	}
	_, err = judgeDescriptor(path, real, d, Public)
	return err
}

func dirRefusal(path, dir string, _ os.FileInfo) error {
	d, err := securityAt(dir, false)
	if err != nil {
		return cannotCheck(path, fmt.Errorf("directory %s: %w", dir, err))
	}
	return refusal(d, path, "directory "+dir, dir, aclWayDir, dirChangeRights, "they could put another file in its place")
}

func linkRefusal(path, l string, _ os.FileInfo) error {
	d, err := securityAt(l, true)
	if err != nil {
		return cannotCheck(path, fmt.Errorf("link %s: %w", l, err))
	}
	return refusal(d, path, "link "+l+" on its way", l, aclFile, fileChangeRights, "they could point it at another file")
}

func checkOwner(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	d, err := securityAt(path, false)
	if err != nil {
		return cannotCheck(path, err)
	}
	t, rights := ownerRule(fi.IsDir())
	p, err := judgeACL(d, processUser(), path, t, rights, "writable", accountName)
	if err != nil {
		return cannotCheck(path, err)
	}
	if p == nil {
		return nil
	}
	return &foreignError{fmt.Sprintf("%s is %s: they could change or read what pamctl keeps there; run %s", path, p.who, p.fix)}
}

func checkPrivate(what, path string, _ os.FileMode) error {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	d, err := securityAt(path, false)
	if err != nil {
		return &exposedError{fmt.Sprintf("%s %s: pamctl cannot read who may get at it (%v) and refuses it: check that pamctl's user owns it", what, path, err)}
	}
	t, rights := privateRule(fi.IsDir())
	p, err := judgeACL(d, processUser(), path, t, rights, "accessible", accountName)
	if err != nil {
		return &exposedError{fmt.Sprintf("%s %s: pamctl cannot judge who may get at it (%v) and refuses it: recreate it (pamctl creates it private)", what, path, err)}
	}
	if p == nil {
		return nil
	}
	return &exposedError{fmt.Sprintf("%s %s is %s; pamctl keeps secrets there and refuses it: run %s", what, path, p.who, p.fix)}
}

// privateAttributes are the security attributes of what pamctl creates
// private to its user (privateSDDL).
func privateAttributes(dir bool) (*windows.SecurityAttributes, error) {
	user := processUser()
	if user == "" {
		return nil, errors.New("cannot read the SID of the user pamctl runs as")
	}
	sd, err := windows.SecurityDescriptorFromString(privateSDDL(user, dir))
	if err != nil {
		return nil, err
	}
	sa := &windows.SecurityAttributes{SecurityDescriptor: sd}
	sa.Length = uint32(unsafe.Sizeof(*sa))
	return sa, nil
}

// mkdirOne creates the directory p with the private DACL (privateSDDL).
func mkdirOne(p string) error {
	sa, err := privateAttributes(true)
	if err != nil {
		return &os.PathError{Op: "mkdir", Path: p, Err: err}
	}
	u, err := windows.UTF16PtrFromString(p)
	if err != nil {
		return &os.PathError{Op: "mkdir", Path: p, Err: err}
	}
	if err := windows.CreateDirectory(u, sa); err != nil {
		return &os.PathError{Op: "mkdir", Path: p, Err: err} // ERROR_ALREADY_EXISTS is fs.ErrExist
	}
	return nil
}

// existingDirRefusal judges a directory MkdirPrivate found there: what
// pamctl creates in it with os.OpenFile or net.Listen inherits what it
// passes on, so it must pass CheckPrivate.
func existingDirRefusal(dir string, _ os.FileInfo) error {
	return checkPrivate("directory", dir, 0o700)
}

func createPrivate(path string) (*os.File, error) {
	sa, err := privateAttributes(false)
	if err != nil {
		return nil, &os.PathError{Op: "create", Path: path, Err: err}
	}
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, &os.PathError{Op: "create", Path: path, Err: err}
	}
	h, err := windows.CreateFile(p, windows.GENERIC_READ|windows.GENERIC_WRITE,
		windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE, sa,
		windows.CREATE_NEW, windows.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		return nil, &os.PathError{Op: "create", Path: path, Err: err}
	}
	return os.NewFile(uintptr(h), path), nil
}
