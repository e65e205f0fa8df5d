#!/usr/bin/env bash
# Per-model overhead of the board pool over a persistent agent session on loopback SSH:
# (host wall time per model) − (the agent's own timed runs), for 50 small distinct models.
# Target: ≤ 150 ms per model. Starts a throwaway sshd like the tests (private mount namespace,
# tmpfs /run, 127.0.0.1:PORT); never touches the machine's own sshd.
# Usage: scripts/bench/pool_overhead.sh   (after `source scripts/setup-deps`)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup-deps
cargo build -q --release -p shiftnas -p shiftnas-agent
T="${CARGO_TARGET_DIR:-target}/release"
W="$(mktemp -d)"; trap 'kill "$(cat "$W/sshd.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$W"' EXIT
ssh-keygen -q -t ed25519 -N '' -f "$W/host"; ssh-keygen -q -t ed25519 -N '' -f "$W/user"
cp "$W/user.pub" "$W/authorized_keys"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$W/sshd_config" <<CFG
Port $PORT
ListenAddress 127.0.0.1
HostKey $W/host
PidFile $W/sshd.pid
UsePAM no
StrictModes no
PasswordAuthentication no
PermitRootLogin yes
AuthorizedKeysFile $W/authorized_keys
Subsystem sftp internal-sftp
CFG
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$W/host.pub")" > "$W/known_hosts"
unshare -m --propagation private sh -c "mount -t tmpfs tmpfs /run && mkdir -p /run/sshd && exec /usr/sbin/sshd -D -e -f $W/sshd_config" 2>"$W/sshd.log" &
sleep 1
# 50 distinct models: the fixture model plus an unknown protobuf field (skipped by parsers).
"$SHIFTNAS_PYTHON" - "$W" <<'PY'
import sys
base = open("tests/fixtures/agent/conv_s.onnx", "rb").read()
for i in range(50):
    v, tail = i, b""
    while True:
        b = v & 0x7F; v >>= 7
        if v: tail += bytes([b | 0x80])
        else: tail += bytes([b]); break
    open(f"{sys.argv[1]}/m{i:02}.onnx", "wb").write(base + b"\xc0\x3e" + tail)
PY
cat > "$W/boards.toml" <<TOML
[[board]]
name = "loop"
host = "127.0.0.1"
port = $PORT
user = "$(id -un)"
identity = "$W/user"
known_hosts = "$W/known_hosts"
workdir = "$W/board"
agent = "$T/shiftnas-agent"
ort_lib = "$ORT_DYLIB_PATH"
warmup = 1
runs = 10
min_seconds = 0.0
TOML
"$T/shiftnas" board measure loop "$W"/m*.onnx --boards "$W/boards.toml" --cache "$W/l.sqlite" --json > "$W/out.json"
"$SHIFTNAS_PYTHON" - "$W/out.json" <<'PY'
import json, statistics, sys
rows = json.load(open(sys.argv[1]))
# The first model pays for deploy + connect; report the steady state separately.
over = [r["wall_ms"] - r["timed_ms"] for r in rows[1:]]
print(f"models: {len(rows)}  first (connect+deploy+load): {rows[0]['wall_ms']-rows[0]['timed_ms']:.1f} ms")
print(f"per-model overhead (wall - agent timed runs): median {statistics.median(over):.1f} ms, "
      f"mean {statistics.mean(over):.1f} ms, max {max(over):.1f} ms  (target <= 150 ms)")
PY
