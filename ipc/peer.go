package ipc

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// PeerCred is what the kernel says about the process at the other end of a
// unix socket: SO_PEERCRED (pid, uid, gid) and SO_PEERGROUPS (supplementary
// groups at connect time). File modes are never trusted for identity.
type PeerCred struct {
	PID, UID, GID int
	Groups        []int
	Comm, Exe     string
}

// ReadPeerCred asks the kernel for the peer's credentials.
func ReadPeerCred(c *net.UnixConn) (*PeerCred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var ucred *unix.Ucred
	var groups []int
	var cerr error
	err = raw.Control(func(fd uintptr) {
		ucred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if cerr != nil {
			return
		}
		groups, cerr = peerGroups(int(fd))
	})
	if err != nil {
		return nil, err
	}
	if cerr != nil {
		return nil, fmt.Errorf("peer credentials: %w", cerr)
	}
	pc := &PeerCred{PID: int(ucred.Pid), UID: int(ucred.Uid), GID: int(ucred.Gid), Groups: groups}
	if b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pc.PID), "comm")); err == nil {
		pc.Comm = strings.TrimSpace(string(b))
	}
	if exe, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pc.PID), "exe")); err == nil {
		pc.Exe = exe
	}
	return pc, nil
}

// peerGroups reads SO_PEERGROUPS, growing the buffer when the kernel says
// ERANGE.
func peerGroups(fd int) ([]int, error) {
	n := 64
	for range 4 {
		buf := make([]byte, 4*n)
		l := uint32(len(buf))
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafePointer(buf)), uintptr(unsafePointer32(&l)), 0)
		if errno == unix.ERANGE {
			n = int(l)/4 + 1
			continue
		}
		if errno != 0 {
			return nil, errno
		}
		out := make([]int, 0, l/4)
		for i := 0; i+4 <= int(l); i += 4 {
			out = append(out, int(nativeUint32(buf[i:i+4])))
		}
		return out, nil
	}
	return nil, fmt.Errorf("SO_PEERGROUPS: too many groups")
}

// InGroup reports whether the peer's primary or supplementary groups include gid.
func (p *PeerCred) InGroup(gid int) bool {
	if p.GID == gid {
		return true
	}
	for _, g := range p.Groups {
		if g == gid {
			return true
		}
	}
	return false
}
