package safefile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/windows"
)

// The security descriptors Windows gives (here as SDDL) are read into what
// the rules judge, entry by entry, and judged as dacl_test.go's layouts.
func TestFromSecurityDescriptor(t *testing.T) {
	for _, tc := range []struct {
		name, sddl string
		rights     uint32
		t          aclTarget
		who        string // "" when no problem
	}{
		{"private", "O:" + tUser + "D:P(A;;FA;;;" + tUser + ")(A;;FA;;;SY)(A;;FA;;;BA)", fileAllAccessOthers, aclFile, ""},
		{"under C:\\", "O:" + tUser + "D:AI(A;OICIID;FA;;;BA)(A;OICIID;FA;;;SY)(A;OICIID;0x1200a9;;;BU)(A;OICIID;0x1301bf;;;AU)", fileChangeRights, aclWayDir, "writable by <S-1-5-11>"},
		{"C:\\ on the way", "O:S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464D:(A;OICI;FA;;;BA)(A;OICI;FA;;;SY)(A;OICI;0x1200a9;;;BU)(A;OICIIO;SDGXGWGR;;;AU)(A;;LC;;;AU)", dirChangeRights, aclWayDir, ""},
		{"users read a key", "O:BAD:(A;;FA;;;SY)(A;;FA;;;BA)(A;;FR;;;BU)", readRights, aclFile, "writable by <S-1-5-32-545>"},
		{"another owner", "O:" + tBob + "D:(A;;FA;;;" + tUser + ")", fileChangeRights, aclFile, "owned by <" + tBob + ">"},
		{"NULL DACL", "O:" + tUser + "D:NO_ACCESS_CONTROL", fileChangeRights, aclFile, "writable by <S-1-1-0>"},
		{"no DACL", "O:" + tUser, fileChangeRights, aclFile, "writable by <S-1-1-0>"},
		{"denied only", "O:" + tUser + "D:(D;;FA;;;WD)(A;;FA;;;" + tUser + ")", fileAllAccessOthers, aclFile, ""},
		{"generic write", "O:" + tUser + "D:(A;;GW;;;WD)", fileChangeRights, aclFile, "writable by <S-1-1-0>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sd, err := windows.SecurityDescriptorFromString(tc.sddl)
			if err != nil {
				t.Fatal(err)
			}
			d, err := fromSecurityDescriptor(sd)
			if err != nil {
				t.Fatal(err)
			}
			p, err := judgeACL(d, tUser, `C:\x`, tc.t, tc.rights, "writable", showSID)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.who == "" && p != nil:
				t.Fatalf("refused: %s", p.who)
			case tc.who != "" && (p == nil || !strings.HasPrefix(p.who, tc.who)):
				t.Fatalf("got %+v, want %q", p, tc.who)
			}
		})
	}
}

// What pamctl creates private passes CheckPrivate; a file that inherits
// an entry for Everyone does not, nor (as a secret) CheckPerms, and a
// second CreatePrivate of the same path is refused.
func TestPrivateFilesOnWindows(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := MkdirPrivate(dir); err != nil {
		t.Fatal(err)
	}
	if err := CheckPrivate("data dir", dir, 0o700); err != nil {
		t.Fatalf("a private dir: %v", err)
	}
	f, err := CreatePrivate(filepath.Join(dir, "key"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := CheckPrivate("key", f.Name(), 0o600); err != nil {
		t.Fatalf("a private file: %v", err)
	}
	if _, err := CreatePrivate(f.Name()); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("CreatePrivate over a file: %v", err)
	}
	if w, err := CheckPerms(f.Name(), Secret); w != "" || err != nil {
		t.Fatalf("CheckPerms of a private file: %q, %v", w, err)
	}

	open := dirWithDACL(t, "D:(A;OICI;FA;;;"+processUser()+")(A;OICI;FR;;;WD)")
	p := filepath.Join(open, "key")
	if err := os.WriteFile(p, []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := CheckPrivate("key", p, 0o600); !errors.Is(err, ErrExposed) || !strings.Contains(err.Error(), "icacls") {
		t.Fatalf("a file Everyone may read: %v", err)
	}
	if w, err := CheckPerms(p, Secret); err != nil || !strings.Contains(w, "readable") {
		t.Fatalf("CheckPerms of a secret Everyone may read: %q, %v", w, err)
	}
	if _, err := ReadFile(p); err != nil {
		t.Fatalf("reading a file others may only read: %v", err)
	}
}

// MkdirPrivate creates every missing parent private too (a parent that
// inherited C:\'s Authenticated Users: Modify would be refused on the way
// at the next start), and refuses a directory it finds there, whether it
// existed or another process created it first, when it passes on access
// to others (review r2 M2): what pamctl creates in it would inherit it.
func TestMkdirPrivateOnWindows(t *testing.T) {
	base := t.TempDir()
	deep := filepath.Join(base, "p", "q", "data")
	if err := MkdirPrivate(deep); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(base, "p"), filepath.Join(base, "p", "q"), deep} {
		sd, err := windows.GetNamedSecurityInfo(p, windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION)
		if err != nil {
			t.Fatal(err)
		}
		if ctl, _, err := sd.Control(); err != nil || ctl&windows.SE_DACL_PROTECTED == 0 {
			t.Errorf("%s: not created with a protected DACL (%v, %v)", p, ctl, err)
		}
		if err := CheckPrivate("directory", p, 0o700); err != nil {
			t.Error(err)
		}
	}
	if err := MkdirPrivate(deep); err != nil {
		t.Fatalf("MkdirPrivate of its own dir again: %v", err)
	}

	open := dirWithDACL(t, "D:(A;OICI;FA;;;"+processUser()+")(A;OIIO;FR;;;WD)")
	if err := MkdirPrivate(open); !errors.Is(err, ErrExposed) || !strings.Contains(err.Error(), "/remove:g *S-1-1-0") {
		t.Fatalf("a dir passing read access to Everyone on: %v", err)
	}
}

// dirWithDACL makes a directory whose protected DACL is sddl's.
func dirWithDACL(t *testing.T, sddl string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	sd, err := windows.SecurityDescriptorFromString(sddl)
	if err != nil {
		t.Fatal(err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		t.Fatal(err)
	}
	if err := windows.SetNamedSecurityInfo(dir, windows.SE_FILE_OBJECT, windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil); err != nil {
		t.Fatal(err)
	}
	return dir
}
