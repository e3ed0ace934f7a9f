package crypt

import "fmt"

// MinMemlock is the RLIMIT_MEMLOCK (in bytes) this package requires before it
// creates any memguard object: memguard's key coffer locks 3 pages, every
// opened Enclave one more, and a failed mlock makes memguard panic.
const MinMemlock = 64 << 10

// CheckMemlock reports ErrMemlock (with a message saying how to fix it) when
// the process may not lock at least MinMemlock bytes of memory. It passes when
// the limit is unlimited or the process has CAP_IPC_LOCK. Every function of
// this package that creates a memguard Enclave or LockedBuffer calls it first,
// so memguard's lazy key coffer is never created under a limit that would
// make it panic.
func CheckMemlock() error {
	cur, unlimited, err := memlockLimit()
	if err != nil {
		return fmt.Errorf("%w: reading RLIMIT_MEMLOCK: %w", ErrMemlock, err)
	}
	return checkMemlock(cur, unlimited, hasCapIPCLock())
}

// checkMemlock is the pure decision behind CheckMemlock.
func checkMemlock(cur uint64, unlimited, capIPCLock bool) error {
	if unlimited || capIPCLock || cur >= MinMemlock {
		return nil
	}
	return fmt.Errorf("%w: RLIMIT_MEMLOCK is %d bytes; aivault needs at least %d bytes (%d KiB) of lockable memory to keep keys out of swap: raise it with `ulimit -l %d` or LimitMEMLOCK=%dK in the systemd unit",
		ErrMemlock, cur, MinMemlock, MinMemlock>>10, MinMemlock>>10, MinMemlock>>10)
}
