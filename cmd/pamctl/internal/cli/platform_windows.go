package cli

import "net"

// listenAdmin binds the admin socket (AF_UNIX, Windows 10 1803 and
// later). Windows has no umask and a socket's mode bits mean nothing:
// who may connect is the socket file's DACL, which it inherits from the
// data dir, created private (safefile.MkdirPrivate: pamctl's user,
// SYSTEM and Administrators only) and refused at start when it is not
// (Config.CheckPrivate).
func listenAdmin(sock string) (net.Listener, error) { return net.Listen("unix", sock) }

// reloadHint says how to apply a changed config file by hand when its
// watch failed: Windows has no SIGHUP (signal.Notify for it never fires
// there), so serve reloads only on file changes.
const reloadHint = "restart pamctl serve to apply them (Windows has no SIGHUP to reload with)"

// fileOwner names the owner of the file at path for the trail; on
// Windows, where owners are SIDs and the DACL decides who may write
// (safefile), none: config.reloaded then carries no file_owner.
func fileOwner(string) string { return "" }
