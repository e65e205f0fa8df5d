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
# Run twice: the first run connects and deploys the agent and ORT library (hashes differ), the
# second finds them on the board (deploy skipped). Each prints the command's whole wall time too.
for run in 1 2; do
  t0=$(date +%s.%N)
  "$T/shiftnas" board measure loop "$W"/m*.onnx --boards "$W/boards.toml" --cache "$W/l.sqlite" --json > "$W/out.json"
  t1=$(date +%s.%N)
  "$SHIFTNAS_PYTHON" - "$W/out.json" "$run" "$t0" "$t1" <<'PY'
import json, statistics, sys
rows = json.load(open(sys.argv[1]))
run, total = sys.argv[2], (float(sys.argv[4]) - float(sys.argv[3])) * 1e3
assert len(rows) == 50 and all(r["board"] == "loop" for r in rows), "every model measured on loop"
assert len({r["model_sha256"] for r in rows}) == 50, "50 distinct models"
# Connect + deploy happen in Pool::new, before the first model's clock starts; the first model
# still pays the session's first load, so the steady state is reported without it.
over = [r["wall_ms"] - r["timed_ms"] for r in rows[1:]]
timed = [r["timed_ms"] for r in rows]
print(f"run {run}: 50 models, whole command {total:.0f} ms (process start, SSH connect, deploy "
      f"check, 50 models); first model overhead {rows[0]['wall_ms']-rows[0]['timed_ms']:.1f} ms; "
      f"agent timed runs median {statistics.median(timed):.1f} ms/model")
print(f"run {run}: per-model overhead (wall - agent timed runs), models 2-50: median "
      f"{statistics.median(over):.1f} ms, mean {statistics.mean(over):.1f} ms, "
      f"max {max(over):.1f} ms  (target <= 150 ms)")
PY
done
