//go:build linux

package crypt

import "golang.org/x/sys/unix"

// memlockLimit returns the soft RLIMIT_MEMLOCK.
func memlockLimit() (cur uint64, unlimited bool, err error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err != nil {
		return 0, false, err
	}
	return rl.Cur, rl.Cur == unix.RLIM_INFINITY, nil
}

// hasCapIPCLock reports whether the calling thread has CAP_IPC_LOCK in its
// effective set (then the kernel ignores RLIMIT_MEMLOCK for mlock).
func hasCapIPCLock() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[unix.CAP_IPC_LOCK/32].Effective&(1<<(unix.CAP_IPC_LOCK%32)) != 0
}
