"""Converts one ONNX model to .rknn with rknn-toolkit2 and reports, as one JSON object on stdout,
what happened. `shiftnas` (host/src/npu) runs it with the private RKNN Python (scripts/rknn-env).

    convert.py --version
    convert.py --onnx M.onnx --target rk3588 --dtype fp16|int8 [--calib LIST] [--out M.rknn]
               [--log FILE] [--simulate X.npy ... --sim-out DIR]

--calib is a text file with one NCHW float32 .npy path per line (int8 only). --simulate runs the
toolkit's simulator (`init_runtime()` without a target) on each input file, with the model built in
this process (the simulator cannot run an exported file). A file holds N >= 1 inputs stacked on
axis 0; each is run alone (the model's batch is 1) and output k of all N, stacked on axis 0 again,
goes to DIR/out_<i>_<k>.npy. The JSON: ok, toolkit_version, target, dtype, seconds (load + build + export),
npu_ops (how many), cpu_ops and output_reshapes ([{id, type, name}]), simulated ([[file, ...]]);
on failure also stage, error and log_tail. Exit status 0 whenever the JSON was written.
"""

import argparse
import contextlib
import importlib.metadata
import json
import os
import re
import shutil
import sys
import tempfile
import time
import traceback

# librknnc prints this on every successful build: it is noise (measured with 2.5.0).
SPURIOUS = "Unkown op target: 0"
# A row of the build log's "Network Layer Information Table":
# ID OpType DataType Target InputShape OutputShape Cycles RW FullName
ROW = re.compile(r"^D RKNN: \[[0-9:.]+\]\s+(\d+)\s+(\S+)\s+(\S+)\s+(NPU|CPU)\b.*?(\S+)\s*$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def toolkit_version():
    return importlib.metadata.version("rknn-toolkit2")


@contextlib.contextmanager
def captured(log_path):
    """Sends fds 1 and 2 (the toolkit's and librknnc's printing) to log_path for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def clean_log(path):
    """The log without colour codes and the spurious error lines."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    return [ANSI.sub("", l) for l in text.splitlines() if SPURIOUS not in l]


def placement(lines):
    """NPU op count, CPU ops and CPU reshapes feeding an output, from the layer table.

    InputOperator/OutputOperator rows are the runtime's I/O and always say CPU; they are skipped.
    A CPU `Reshape` right before an OutputOperator is the toolkit's own reshape of the classifier
    output (it rewrites Gemm into a conv and reshapes [1, n, 1, 1] back to [1, n]); it is reported
    apart, as output_reshapes.
    """
    rows = [m.groups() for m in map(ROW.match, lines) if m]
    if not rows:
        return None
    npu, cpu, tail = 0, [], []
    for i, (op_id, op_type, _dtype, target, name) in enumerate(rows):
        if op_type in ("InputOperator", "OutputOperator"):
            continue
        if target == "NPU":
            npu += 1
            continue
        op = {"id": int(op_id), "type": op_type, "name": name.split(":", 1)[-1]}
        nxt = rows[i + 1][1] if i + 1 < len(rows) else None
        (tail if op_type == "Reshape" and nxt == "OutputOperator" else cpu).append(op)
    return npu, cpu, tail


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--version", action="store_true")
    p.add_argument("--onnx")
    p.add_argument("--target", default="rk3588")
    p.add_argument("--dtype", choices=["fp16", "int8"], default="fp16")
    p.add_argument("--calib")
    p.add_argument("--out")
    p.add_argument("--log")
    p.add_argument("--simulate", nargs="*", default=[])
    p.add_argument("--sim-out")
    a = p.parse_args()
    if a.simulate and not a.sim_out:
        p.error("--simulate needs --sim-out")
    if a.version:
        print(json.dumps({"ok": True, "toolkit_version": toolkit_version()}))
        return
    # Absolute paths first: the toolkit runs in a scratch directory (it writes check*.onnx there).
    absp = lambda x: os.path.abspath(x) if x else x  # noqa: E731
    onnx_path, calib, out, sim_out = map(absp, (a.onnx, a.calib, a.out, a.sim_out))
    sims = [absp(s) for s in a.simulate]
    work = tempfile.mkdtemp(prefix="shiftnas-rknn-")
    log_path = absp(a.log) if a.log else os.path.join(work, "convert.log")
    res = {"ok": False, "toolkit_version": toolkit_version(), "target": a.target, "dtype": a.dtype}
    stage = "import"
    old_cwd = os.getcwd()
    try:
        os.chdir(work)
        with captured(log_path):
            import numpy as np
            import onnx
            from rknn.api import RKNN

            stage = "read_onnx"
            channels = onnx.load(onnx_path).graph.input[0].type.tensor_type.shape.dim[1].dim_value
            rknn = RKNN(verbose=True)  # verbose: the layer table (NPU vs CPU) is a debug print
            t0 = time.perf_counter()
            stage = "config"
            # Our exports take normalised input, so the NPU must not normalise again.
            check(rknn.config(mean_values=[[0.0] * channels], std_values=[[1.0] * channels],
                              target_platform=a.target), stage)
            stage = "load_onnx"
            check(rknn.load_onnx(model=onnx_path), stage)
            stage = "build"
            if a.dtype == "int8" and not calib:
                raise RuntimeError("int8 needs --calib, a list of NCHW .npy calibration inputs")
            check(rknn.build(do_quantization=a.dtype == "int8", dataset=calib), stage)
            if out:
                stage = "export_rknn"
                check(rknn.export_rknn(out), stage)
            res["seconds"] = time.perf_counter() - t0
            simulated = []
            if sims:
                stage = "init_runtime"
                check(rknn.init_runtime(), stage)  # no target: the simulator
                stage = "inference"
                os.makedirs(sim_out, exist_ok=True)
                for i, s in enumerate(sims):
                    x = np.load(s)
                    rows = []
                    for j in range(x.shape[0]):
                        outs = rknn.inference(inputs=[x[j:j + 1]], data_format="nchw")
                        if outs is None:
                            raise RuntimeError(f"the simulator returned nothing for input {j} of {s}")
                        rows.append(outs)
                    files = []
                    for k in range(len(rows[0])):
                        files.append(os.path.join(sim_out, f"out_{i}_{k}.npy"))
                        y = np.concatenate([np.asarray(r[k], dtype=np.float32) for r in rows], axis=0)
                        np.save(files[-1], y)
                    simulated.append(files)
            rknn.release()
        lines = clean_log(log_path)
        placed = placement(lines)
        if placed is None:
            stage = "placement"
            raise RuntimeError("no layer table in the toolkit's build log: cannot tell NPU ops from CPU ops")
        res["npu_ops"], res["cpu_ops"], res["output_reshapes"] = placed
        res["simulated"] = simulated
        res["ok"] = True
    except Exception as e:  # reported as JSON; the host names the model and the stage
        res["stage"] = stage
        res["error"] = f"{type(e).__name__}: {e}".strip()
        res["traceback"] = traceback.format_exc()
        res["log_tail"] = clean_log(log_path)[-40:] if os.path.exists(log_path) else []
    finally:
        os.chdir(old_cwd)
        shutil.rmtree(work, ignore_errors=True)
    if a.log and os.path.exists(log_path):  # keep the cleaned log for the user
        lines = clean_log(log_path)
        with open(log_path, "w") as f:
            f.write("\n".join(lines) + "\n")
    print(json.dumps(res))


def check(ret, stage):
    """The toolkit returns non-zero (and logs why) instead of raising."""
    if ret != 0:
        raise RuntimeError(f"rknn {stage} returned {ret}")


if __name__ == "__main__":
    main()
