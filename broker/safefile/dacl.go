package safefile

import (
	"fmt"
	"slices"
	"strings"
)

// On Windows the mode bits Go reports mean nothing (every file is 0666,
// or 0444 when read-only, every directory 0777): who may get at a file is
// its owner and its DACL. The rules that judge them are here, over a plain
// description of a security descriptor (descriptor), so that they build
// and are tested on every OS; perms_windows.go reads the descriptors
// (GetSecurityInfo) and applies them.
//
// Trusted are this process's user, SYSTEM, Administrators and
// TrustedInstaller (they own or control the system anyway), and OWNER
// RIGHTS when the owner is one of those. Every other SID (Everyone, Users,
// Authenticated Users, another user or group, even one pamctl's user is
// in: Users holds every local account) is "others".

// Access rights (winnt.h) the rules look at.
const (
	fileReadData        = 0x1 // FILE_LIST_DIRECTORY on a directory
	fileWriteData       = 0x2 // FILE_ADD_FILE
	fileAppendData      = 0x4 // FILE_ADD_SUBDIRECTORY
	fileWriteEA         = 0x10
	fileExecute         = 0x20 // FILE_TRAVERSE on a directory
	fileDeleteChild     = 0x40
	fileWriteAttributes = 0x100
	accessDelete        = 0x10000
	writeDAC            = 0x40000
	writeOwner          = 0x80000
	maximumAllowed      = 0x2000000
	genericAll          = 0x10000000
	genericExecute      = 0x20000000
	genericWrite        = 0x40000000
	genericRead         = 0x80000000
	// any access to the content of a file or directory pamctl keeps to
	// itself (CheckPrivate): read, write, execute, delete, its DACL or
	// owner. Reading attributes, extended attributes or the DACL is not.
	fileAllAccessOthers = fileReadData | fileWriteData | fileAppendData | fileWriteEA | fileExecute | fileDeleteChild | fileWriteAttributes | accessDelete | writeDAC | writeOwner | maximumAllowed | genericAll | genericExecute | genericWrite | genericRead
)

// ACE types and flags (winnt.h).
const (
	aceAllowed          = 0x0
	aceDenied           = 0x1
	aceDeniedObject     = 0x6
	aceAllowedCallback  = 0x9
	aceDeniedCallback   = 0xA
	aceDeniedCallbackOb = 0xC
	aceObjectInherit    = 0x1 // (OI): passed on to files created in a directory
	aceContainerInherit = 0x2 // (CI): passed on to directories created in it
	aceInheritOnly      = 0x8 // (IO): applies to children only, not to the object
)

// Well-known SIDs.
const (
	sidSystem           = "S-1-5-18"
	sidAdministrators   = "S-1-5-32-544"
	sidTrustedInstaller = "S-1-5-80-956008885-3418522649-1831038044-1853292631-2271478464"
	sidOwnerRights      = "S-1-3-4"
	sidCreatorOwner     = "S-1-3-0" // a placeholder for inheritance: matches no one
	sidEveryone         = "S-1-1-0"
)

// ace is one access control entry of a DACL.
type ace struct {
	Type, Flags uint8
	Mask        uint32
	SID         string
}

// descriptor is what the rules read of a security descriptor.
type descriptor struct {
	Owner  string // the owner's SID
	NoDACL bool   // no DACL or a NULL DACL: everyone may do anything
	ACEs   []ace
}

// trustedSID tells whether sid is this process's user (user) or one of
// the accounts that control the system anyway.
func trustedSID(sid, user string) bool {
	switch sid {
	case user, sidSystem, sidAdministrators, sidTrustedInstaller:
		return sid != ""
	}
	return false
}

// others lists, once each and in DACL order, the SIDs other than trusted
// ones that an allow entry applying to the object itself grants any of
// rights (the generic rights included as they map for files); with
// children, also those an entry passes on to what is created in the
// directory (OI, CI; inherit-only or not) grants any of rights. Deny
// entries are not subtracted: they can only narrow what is granted, and
// judging without them errs on the side of refusing. CREATOR OWNER is
// skipped: it grants no one on the object, and what is created inherits
// it as an entry for its creator (pamctl, when it creates a file there).
// An allow entry of a type the rules do not read (object ACEs, which
// files do not use) is reported as unreadable: what cannot be judged is
// refused.
func (d *descriptor) others(user string, rights uint32, children bool) (sids []string, err error) {
	if d.NoDACL {
		return []string{sidEveryone}, nil
	}
	ownerTrusted := trustedSID(d.Owner, user)
	for _, e := range d.ACEs {
		if e.Flags&aceInheritOnly != 0 && !(children && e.Flags&(aceObjectInherit|aceContainerInherit) != 0) {
			continue
		}
		switch e.Type {
		case aceAllowed, aceAllowedCallback:
		case aceDenied, aceDeniedCallback, aceDeniedObject, aceDeniedCallbackOb:
			continue
		default:
			return nil, fmt.Errorf("an access entry of type %#x pamctl does not read", e.Type)
		}
		if trustedSID(e.SID, user) || e.SID == sidCreatorOwner || (e.SID == sidOwnerRights && ownerTrusted) {
			continue
		}
		if e.Mask&rights != 0 && !slices.Contains(sids, e.SID) {
			sids = append(sids, e.SID)
		}
	}
	return sids, nil
}

// The rights that let others change what a path names.
const (
	// of a file or symlink: write its content, rename or delete it, or
	// change its DACL or owner; or write its attributes or extended
	// attributes: FILE_WRITE_ATTRIBUTES alone lets its holder set or
	// replace a reparse point (MS-FSA 2.1.5.10.37), so re-point a junction
	// or make a file one; extended attributes are data kept with the
	// file.
	fileChangeRights = fileWriteData | fileAppendData | fileWriteEA | fileWriteAttributes | accessDelete | writeDAC | writeOwner | maximumAllowed | genericAll | genericWrite
	// of a directory on the way: rename or delete it or a name in it, or
	// change its DACL or owner. Adding names (FILE_ADD_FILE,
	// FILE_ADD_SUBDIRECTORY, as on C:\ and C:\ProgramData) is not
	// refused: replacing a name needs DELETE on it or FILE_DELETE_CHILD
	// here, as a sticky directory lets others add but not replace.
	// Nor are FILE_WRITE_ATTRIBUTES and FILE_WRITE_EA: a directory
	// becomes a junction only while empty, and C:\ProgramData gives
	// Users (CI)(WD,AD,WEA,WA), so counting them would refuse every
	// folder under it.
	dirChangeRights = fileDeleteChild | accessDelete | writeDAC | writeOwner | maximumAllowed | genericAll
	// of a directory pamctl keeps its files in (CheckOwner): change it
	// as a directory on the way, add names to it, or change it or
	// what it holds as a file.
	ownDirChangeRights = dirChangeRights | fileChangeRights
	// of a secret: read it (executing a file reads it too).
	readRights = fileReadData | fileExecute | maximumAllowed | genericAll | genericExecute | genericRead
)

// What judgeACL judges.
type aclTarget int

const (
	// a file, or a symlink or junction on the way: its own entries.
	aclFile aclTarget = iota
	// a directory on the way: its own entries. What it passes on reaches
	// only the names created in it later, each judged when it is met.
	aclWayDir
	// a directory pamctl creates its files in (the data dir, CheckOwner,
	// CheckPrivate): its own entries and those it passes on (OI, CI,
	// inherit-only or not), which the database, spool, audit segment and
	// admin socket pamctl creates there inherit.
	aclOwnDir
)

// ownerRule is what CheckOwner judges one of pamctl's own files (a
// directory when dir) as, and for which rights: a file for what changes
// it, a directory for what changes it or what it holds, or what it passes
// on to what pamctl creates there.
func ownerRule(dir bool) (aclTarget, uint32) {
	if dir {
		return aclOwnDir, ownDirChangeRights
	}
	return aclFile, fileChangeRights
}

// privateRule is ownerRule for CheckPrivate: any access at all.
func privateRule(dir bool) (aclTarget, uint32) {
	if dir {
		return aclOwnDir, fileAllAccessOthers
	}
	return aclFile, fileAllAccessOthers
}

// aclProblem is what the rules found wrong with a descriptor: who, and
// the icacls command that fixes it (names is how SIDs are shown).
type aclProblem struct {
	who string // "owned by X", "writable by A, B", ...
	fix string
}

// judgeACL applies the rules to the descriptor of path (what t says it
// is) for rights (fileChangeRights, dirChangeRights, ownDirChangeRights,
// readRights or fileAllAccessOthers): a problem when it is owned by
// someone untrusted or grants others any of rights (for aclOwnDir, or
// passes them on to what is created in it). verb says what those rights
// let them do, for the message ("change", "read"). name shows a SID (an
// account name where one is known).
func judgeACL(d *descriptor, user, path string, t aclTarget, rights uint32, verb string, name func(string) string) (*aclProblem, error) {
	if !trustedSID(d.Owner, user) {
		q, ps := icaclsPath(path)
		fix := fmt.Sprintf("`icacls %s /setowner \"%s\"` from an elevated prompt (or recreate it as pamctl's user)", q, icaclsUser(user, ps))
		if ps {
			fix = fmt.Sprintf("`icacls %s /setowner \"%s\"` from an elevated PowerShell prompt, %s (or recreate it as pamctl's user)", q, icaclsUser(user, ps), notCmd)
		}
		return &aclProblem{who: "owned by " + name(d.Owner), fix: fix}, nil
	}
	sids, err := d.others(user, rights, t == aclOwnDir)
	if err != nil || len(sids) == 0 {
		return nil, err
	}
	shown := make([]string, len(sids))
	for i, s := range sids {
		shown[i] = name(s)
	}
	return &aclProblem{
		who: fmt.Sprintf("%s by %s (its access control list)", verb, strings.Join(shown, ", ")),
		fix: icaclsFix(path, user, t != aclFile, d.NoDACL, sids),
	}, nil
}

// icaclsUser names pamctl's user (its SID, user) for icacls: `*SID`, as
// icacls takes a SID, whatever the shell (%USERNAME% is cmd's alone, and
// the account the variable names need not be the one pamctl runs as);
// the logged-on user only when the SID could not be read: cmd's
// %USERNAME%, or PowerShell's ${env:USERNAME} when ps.
func icaclsUser(user string, ps bool) string {
	switch {
	case user != "":
		return "*" + user
	case ps:
		return "${env:USERNAME}"
	}
	return "%USERNAME%"
}

// shellExpanded holds what cmd or PowerShell expands inside double
// quotes, all legal in an NTFS name: cmd's %VAR% (and !VAR! under
// delayed expansion), PowerShell's $var, $(…) and backtick escapes, and
// the characters PowerShell takes for a double quote (U+201C, U+201D,
// U+201E) and so for the end of the string.
const shellExpanded = "%!$`\u201c\u201d\u201e"

// psSingleQuotes are the characters PowerShell takes for a single quote.
const psSingleQuotes = "'\u2018\u2019\u201a\u201b"

// notCmd is what a fix for a path in PowerShell's quotes says of cmd.
const notCmd = "not cmd: the path holds a character cmd or PowerShell would expand in double quotes"

// icaclsPath quotes path as one word of the icacls command a refusal
// shows (docs/deployment.md says to run it in cmd or PowerShell): in
// double quotes, read alike by both, when it holds nothing either expands
// there (shellExpanded; NTFS names hold no '"'); else in PowerShell's
// single quotes, where nothing is expanded, each single-quote character
// doubled (PowerShell reads two as the second), and ps is true: the
// command is PowerShell's only (cmd has no quotes that stop %VAR%).
func icaclsPath(path string) (word string, ps bool) {
	if !strings.ContainsAny(path, shellExpanded) {
		return `"` + path + `"`, false
	}
	var b strings.Builder
	b.WriteByte('\'')
	for _, r := range path {
		if strings.ContainsRune(psSingleQuotes, r) {
			b.WriteRune(r)
		}
		b.WriteRune(r)
	}
	b.WriteByte('\'')
	return b.String(), true
}

// icaclsFix is the command that leaves path to pamctl's user (its SID,
// user), SYSTEM and Administrators: inheritance off (inherited entries
// removed), full control granted to those, and the explicit entries of
// sids removed: all of them, those a directory only passes on included.
func icaclsFix(path, user string, dir bool, noDACL bool, sids []string) string {
	inh := ""
	if dir {
		inh = "(OI)(CI)"
	}
	q, ps := icaclsPath(path)
	var b strings.Builder
	fmt.Fprintf(&b, "`icacls %s /inheritance:r /grant:r \"%s:%sF\" \"*%s:%sF\" \"*%s:%sF\"", q, icaclsUser(user, ps), inh, sidSystem, inh, sidAdministrators, inh)
	if !noDACL {
		b.WriteString(" /remove:g")
		for _, s := range sids {
			b.WriteString(" *" + s)
		}
	}
	b.WriteString("`")
	if ps {
		b.WriteString(" in PowerShell (" + notCmd + ")")
	}
	return b.String()
}

// privateSDDL is the DACL pamctl gives what it creates for itself (its
// data dir, session, keys): protected (nothing inherited), full control
// for its user, SYSTEM and Administrators, no one else. Containers pass it
// on to what is created in them.
func privateSDDL(user string, dir bool) string {
	inh := ""
	if dir {
		inh = "OICI"
	}
	return fmt.Sprintf("D:P(A;%[1]s;FA;;;%[2]s)(A;%[1]s;FA;;;SY)(A;%[1]s;FA;;;BA)", inh, user)
}
