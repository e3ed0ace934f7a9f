package sandbox

/*
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#endif
#ifndef SYS_landlock_restrict_self
#define SYS_landlock_restrict_self 446
#endif

// The Landlock ABI, spelled out here because Debian 12's kernel headers
// predate ABI 4 (TCP rules) and 6 (scopes).
struct aivault_ll_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net;
	uint64_t scoped;
};
#define AIVAULT_LL_VERSION 1u

int aivault_early_abi = 0;   // > 0: the worker runs in a Landlock domain of this ABI
int aivault_early_errno = 0; // otherwise why not (0: not attempted)

static int aivault_is_worker(const char *a0) {
	const char *b = strrchr(a0, '/');
	return strcmp(b ? b + 1 : a0, "aivault-worker") == 0;
}

// aivault_early_landlock runs before the Go runtime starts any thread, in
// a process started as aivault-worker by the monitor (descriptor 3 is its
// job socket). It restricts the only thread there is with a ruleset that
// handles every access right the kernel knows and allows none: no file
// access, no TCP bind or connect, no abstract unix sockets or signals
// outside the domain. Every thread the runtime starts later inherits the
// domain, so no all-threads broadcast (libpsx) is needed. The Go side
// checks aivault_early_abi and fails closed if it is not set.
__attribute__((constructor)) static void aivault_early_landlock(int argc, char **argv, char **envp) {
	(void)envp;
	if (argc < 1 || argv == NULL || argv[0] == NULL || !aivault_is_worker(argv[0])) return;
	const char *insecure = getenv("AIVAULT_WORKER_INSECURE");
	if (insecure != NULL && strcmp(insecure, "1") == 0) return;
	struct stat st;
	if (fstat(3, &st) != 0 || !S_ISSOCK(st.st_mode)) return; // not the monitor's: Go refuses to run
	long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, AIVAULT_LL_VERSION);
	if (abi < 0) { aivault_early_errno = errno; return; }
	if (abi < 4) { aivault_early_errno = ENOSYS; return; }
	struct aivault_ll_attr attr;
	memset(&attr, 0, sizeof attr);
	attr.handled_access_fs = (1ull << 13) - 1;            // ABI 1: execute .. make_sym
	attr.handled_access_fs |= 1ull << 13;                 // ABI 2: refer
	attr.handled_access_fs |= 1ull << 14;                 // ABI 3: truncate
	if (abi >= 5) attr.handled_access_fs |= 1ull << 15;   // ABI 5: ioctl_dev
	attr.handled_access_net = (1ull << 0) | (1ull << 1);  // ABI 4: bind_tcp, connect_tcp
	if (abi >= 6) attr.scoped = (1ull << 0) | (1ull << 1); // ABI 6: abstract unix socket, signal
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) { aivault_early_errno = errno; return; }
	long fd = syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
	if (fd < 0) { aivault_early_errno = errno; return; }
	if (syscall(SYS_landlock_restrict_self, fd, 0) != 0) { aivault_early_errno = errno; close((int)fd); return; }
	close((int)fd);
	aivault_early_abi = (int)abi;
}

static int aivault_get_early_abi(void) { return aivault_early_abi; }
static int aivault_get_early_errno(void) { return aivault_early_errno; }
*/
import "C"

import "syscall"

// earlyLandlock reports the Landlock ABI the worker's constructor restricted
// the process with before the Go runtime started (0 if it did not, with the
// errno that stopped it, or 0 when it was not attempted).
func earlyLandlock() (abi int, errno syscall.Errno) {
	return int(C.aivault_get_early_abi()), syscall.Errno(C.aivault_get_early_errno())
}
