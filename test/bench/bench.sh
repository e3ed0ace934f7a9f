#!/usr/bin/env bash
# make bench: the side-by-side benchmark (see docs/benchmarks/README.md).
# Installs nginx from Debian when it is missing and we are root; without it
# the nginx column says "not measured" and why. Extra arguments go to the Go
# program (e.g. -dur 4s, -out "" to write nothing).
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "bench: installing nginx (Debian) for the reverse-proxy comparison"
		apt-get update -qq >/dev/null 2>&1 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null 2>&1 ||
			echo "bench: nginx could not be installed; the nginx path will not be measured" >&2
	else
		echo "bench: nginx is not installed (run as root, or 'apt-get install nginx'); the nginx path will not be measured" >&2
	fi
fi
# nginx's package may start a system instance; the benchmark runs its own on
# another port and never touches that one.
exec go run ./test/bench -bin "${AIVAULT_BENCH_BINARY:-bin/aivault-dev}" "$@"
