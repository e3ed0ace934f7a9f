#!/usr/bin/env bash
# make demo: the main job end to end, on a local fake upstream.
# A throwaway vault stores a demo OpenAI key; the daemon invokes
# openai/chat-completions for the caller; we show what the caller saw next to
# what the upstream received. The caller never sees the key.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/bin/aivault-dev"
[ -x "$bin" ] || { echo "demo: $bin is missing; run 'make dev'" >&2; exit 1; }
tmp=$(mktemp -d /tmp/avdemo.XXXXXX)
chmod 0755 "$tmp"
up_pid=""
cleanup() {
  AIVAULT_DIR="$tmp/vault" HOME="$tmp/home" "$tmp/bin/aivault" daemon stop >/dev/null 2>&1 || true
  [ -n "$up_pid" ] && kill "$up_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
mkdir -p "$tmp/bin" "$tmp/home"
cp "$bin" "$tmp/bin/aivault"
ln -s aivault "$tmp/bin/aivaultd"
export PATH="$tmp/bin:$PATH"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "starting a fake HTTPS upstream (its own CA) that answers for api.openai.com and echoes what it receives"
(cd "$root" && go build -o "$tmp/bin/fakeupstream" ./test/fakeupstream/cmd/fakeupstream)
fakeupstream -dir "$tmp/up" >"$tmp/up.log" 2>&1 &
up_pid=$!
for _ in $(seq 1 200); do [ -s "$tmp/up/ready.json" ] && break; sleep 0.05; done
port=$(sed -n 's/.*"port": *\([0-9]*\).*/\1/p' "$tmp/up/ready.json" | head -1)
[ -n "$port" ] || { echo "demo: the fake upstream did not start" >&2; cat "$tmp/up.log" >&2; exit 1; }
echo "fake upstream on 127.0.0.1:$port"

export AIVAULT_DIR="$tmp/vault" HOME="$tmp/home"
# Test-build knobs, read by the daemon at start: send api.openai.com to the
# fake upstream and trust its CA.
export AIVAULT_DEV_RESOLVE="api.openai.com=127.0.0.1:$port" AIVAULT_DEV_CA_CERT_PATH="$tmp/up/ca.pem"
key="sk-demo-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"

step "operator: store the key (read from stdin, never echoed)"
printf '%s' "$key" | aivault secrets create --name OPENAI_API_KEY
aivault capability describe openai/chat-completions

step "operator: start the daemon (it holds the key; each request runs in a Landlock+seccomp worker)"
aivaultd >"$tmp/daemon.log" 2>&1 &
for _ in $(seq 1 200); do [ -S "$tmp/vault/run/aivaultd.sock" ] && break; sleep 0.05; done
aivault status

step "caller: invoke openai/chat-completions through the daemon"
body='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}'
aivault invoke openai/chat-completions --method POST --path /v1/chat/completions \
  --header 'Content-Type: application/json' --body "$body" | tee "$tmp/caller.out"
echo

step "what the upstream received (Authorization header)"
auth=$(grep -o '"Authorization":\["[^"]*"\]' "$tmp/up/log.jsonl" | tail -1)
echo "$auth"

step "checks"
if grep -qF "$key" "$tmp/caller.out"; then echo "FAIL: the caller saw the key" >&2; exit 1; fi
echo "PASS: the caller's output does not contain the key (the upstream's echo of it was scrubbed to [REDACTED])"
if ! grep -qF "Bearer $key" "$tmp/up/log.jsonl"; then echo "FAIL: the upstream did not receive the key" >&2; exit 1; fi
echo "PASS: the upstream received 'Authorization: Bearer <the key>'"
if grep -rqF "$key" "$tmp/vault" "$tmp/daemon.log"; then echo "FAIL: the key is in plaintext under the vault or in the daemon log" >&2; exit 1; fi
echo "PASS: the key appears nowhere in plaintext under the vault, its audit log or the daemon log"

step "the policy refuses what the capability does not allow (and nothing reaches the upstream)"
aivault invoke openai/chat-completions --method POST --path /v1/files --body '{}' || true
aivault invoke openai/chat-completions --method POST --path /v1/chat/completions \
  --header "Authorization: Bearer stolen" --body '{}' || true

step "operator: the audit log (tamper-evident chain)"
aivault audit --limit 5
aivault audit verify
echo
echo "demo: OK"
