#!/usr/bin/env bash
# The GPU measurements, as one script for a machine with a CUDA card (about 6 minutes
# on an H100-class card; CI has no GPU and never runs it):
#   1. the CUDA tests (tests/test_solver_cuda.py), which skip everywhere else;
#   2. ours against the peers on the learned problem `mlp`, float32, batch 1 and 10,000:
#      time per step with CUDA events (the harness's timing on a cuda device);
#   3. the gradient suite on the card: the adjoint's memory curve as peak CUDA memory
#      (torch.cuda.max_memory_allocated per case), backprop and checkpoint beside it;
#   4. CUDA cases in worker processes (--isolate): each worker initialises CUDA itself (the
#      fork server that starts workers never touches the card), times with CUDA events and
#      sends its rows back; the peers in step 2 already run in workers by default;
#   5. training cases on the card (spiral and Table 1), CUDA peak per iteration;
#   6. a report faceted by device, compare on the card, the report's load time;
#   7. the executor benchmark on the machine's cores, and a Dask sweep of CUDA cases (needs
#      the dask extra: pip install -c constraints.txt -e '.[test,peers,dask]');
#   8. the engine on the card: shared steps (Hairer's and the PID controller) against a step
#      per trajectory and torchode, 10,000 Kepler orbits, float64, CUDA events.
#   9. the stiff solver on the card: rodas4 on 10,000 ROBER systems (rate constants spread over
#      a decade), float64 and float32, CUDA events, its Jacobian and LU counts.
# Runs go to ${OUT:-runs}/gpu-*; the report of each names the card (meta.json: device name,
# driver, CUDA and torch versions). Usage: OUT=/some/dir scripts/gpu-check.sh
# DEVICE=cpu BATCH=1,100 tries the same commands on a machine without a card.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs}
device=${DEVICE:-cuda}
batch=${BATCH:-1,10000}
if [[ $device == cuda* ]] && ! python -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
  echo "gpu-check: torch sees no CUDA device (torch $(python -c 'import torch; print(torch.__version__)'))" >&2
  exit 2
fi
python - <<'PY'
import torch
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"card: {p.name}, {p.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}, torch {torch.__version__}")
PY
if [[ $device == cuda* ]]; then
  python -m pytest -q tests/test_solver_cuda.py
fi
# 2. speed: solve only (no gradient), each solver at its default tolerance or step count
python -m harness run --device "$device" --dtype float32 --batch "$batch" --problems mlp \
  --solvers dopri5,dopri5-pt,rk4,euler,tde-dopri5,tde-rk4,tde-euler,to-dopri5 \
  --rtol 1e-5 --steps 64 --grad none --min-time 0.2 --case-timeout 120 \
  --out "$out/gpu-speed" --quiet
# 3. memory: the gradients suite (mlp, rk4 at 10..10000 steps, dopri5 at 1e-3..1e-8)
python -m harness run --suite gradients --device "$device" --case-timeout 120 \
  --out "$out/gpu-gradients" --quiet
# 4. isolation on the card
python -m harness run --device "$device" --dtype float32 --batch 1000 --problems mlp \
  --solvers dopri5,rk4 --rtol 1e-4 --steps 64 --isolate --no-report \
  --out "$out/gpu-isolated" --quiet
# 5. training on the card: the spiral (100 iterations) in each mode, and Table 1, with the CUDA
#    peak of every iteration in its records (cuda_peak_bytes)
python -m harness run --suite train --device "$device" --tasks spiral,digits --iterations 100 \
  --solvers dopri5,rk4,tde-dopri5 --out "$out/gpu-train" --quiet
# 6. the report of a run on both devices (work-precision faceted by device, CUDA-event times),
#    its load time in a browser where chromium is installed, and compare between two runs on
#    the card (same machine: times are compared; the deterministic figures must not change)
both=cpu; [[ $device == cpu ]] || both="cpu,$device"
python -m harness run --device "$both" --dtype float32 --batch 1000 --problems mlp,linear \
  --solvers dopri5,rk4,tde-dopri5 --rtol 1e-3,1e-5,1e-7 --grad none --out "$out/gpu-report-a" --quiet
python -m harness run --device "$both" --dtype float32 --batch 1000 --problems mlp,linear \
  --solvers dopri5,rk4,tde-dopri5 --rtol 1e-3,1e-5,1e-7 --grad none --out "$out/gpu-report-b" --quiet
python -m harness compare "$out/gpu-report-a" "$out/gpu-report-b" --out "$out/gpu-compare.html" || true
if command -v chromedriver >/dev/null 2>&1; then
  python scripts/report_load_time.py "$out/gpu-report-a/report.html" || true
fi
# 7. executors on the device machine's cores and card: the 10,000-case executor benchmark
#    (serial, process --jobs 2, a 2-worker LocalCluster), then a Dask sweep of CUDA cases on a
#    4-worker LocalCluster, each row naming the GPU it ran on (gpu_name, hardware)
python -m pytest tests/bench/test_bench_executors.py --benchmark-enable -q -s | tail -8 || true
python -m harness run --device "$device" --dtype float32 --batch 1000 --problems mlp,linear \
  --solvers dopri5,rk4 --rtol 1e-3,1e-5 --steps 64 --executor dask --jobs 4 --no-report \
  --out "$out/gpu-dask" --quiet
python - "$out/gpu-dask" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/results.jsonl")]
print("dask rows:", len(rows), "statuses:", sorted({r["status"] for r in rows}),
      "gpus:", sorted({str(r.get("gpu_name")) for r in rows}),
      "workers:", len({r["worker"] for r in rows}))
PY
python -m harness show "$out/gpu-train"
python -m harness show "$out/gpu-isolated"
python -m harness show "$out/gpu-speed" | head -40
python -m harness show "$out/gpu-gradients" | head -40
# 8. the engine on the card: dopri5 (hairer, pid), dopri5-pt and torchode on 10,000 Kepler orbits
#    (e spread over [0, 0.9]) at rtol 1e-6, float64; median of 5 with CUDA events, NFE beside
python - "$device" <<'PY'
import math, sys, torch
from harness import plugins, registry
plugins.discover()
dev = torch.device(sys.argv[1])
n = 10_000
e = torch.linspace(0.0, 0.9, n, dtype=torch.float64, device=dev)
y0 = torch.stack((1 - e, torch.zeros_like(e), torch.zeros_like(e), torch.sqrt((1 + e) / (1 - e))), -1)
t = torch.tensor([0.0, 20.0], dtype=torch.float64, device=dev)
def kepler(tt, y):
    q, p = y[..., :2], y[..., 2:]
    return torch.cat((p, -q / (q * q).sum(-1, keepdim=True) ** 1.5), -1)
runs = {"dopri5 hairer": ("dopri5", {}), "dopri5 pid": ("dopri5", {"controller": "pid"}),
        "dopri5-pt": ("dopri5-pt", {})}
if "to-dopri5" in registry.SOLVERS:
    runs["to-dopri5"] = ("to-dopri5", {})
for label, (name, kw) in runs.items():
    solver, times = registry.make_solver(name), []
    for _ in range(6):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); sol = solver.solve(kepler, y0, t, rtol=1e-6, atol=1e-6, **kw); b.record()
        torch.cuda.synchronize(); times.append(a.elapsed_time(b))
    print(f"engine {label:14s} {sorted(times[1:])[2]:9.1f} ms  nfe {sol.nfe}  {sol.status} "
          f"backend {sol.backend or '-'}")
PY
# 9. the stiff solver on the card: rodas4 on 10,000 ROBER systems whose rate constants spread
#    over a decade (each a [3] state of the batch [10000, 3]; one batched LU of [10000, 3, 3]
#    per step), float64 and float32; median of 5 with CUDA events, with NFE, njev, ndec
python - "$device" <<'PY'
import sys, torch
from solvers.builtin import rodas4
dev = torch.device(sys.argv[1])
n = 10_000
for dtype in (torch.float64, torch.float32):
    s = torch.logspace(0.0, 1.0, n, dtype=dtype, device=dev).unsqueeze(-1)  # 1 .. 10
    k = torch.tensor([0.04, 3e7, 1e4], dtype=dtype, device=dev) * s
    def rober(tt, y):
        a, b, c = y.unbind(-1)
        k1, k2, k3 = k.unbind(-1)
        return torch.stack((-k1 * a + k3 * b * c, k1 * a - k3 * b * c - k2 * b * b, k2 * b * b), -1)
    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=dtype, device=dev).repeat(n, 1)
    t = torch.tensor([0.0, 40.0], dtype=dtype, device=dev)
    solver, times = rodas4(), []
    for _ in range(6):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record(); sol = solver.solve(rober, y0, t, rtol=1e-5, atol=1e-11); b.record()
        torch.cuda.synchronize(); times.append(a.elapsed_time(b))
    print(f"rodas4 rober x{n} {str(dtype):14s} {sorted(times[1:])[2]:9.1f} ms  steps "
          f"{sol.n_steps}  nfe {sol.nfe}  {sol.counts}  {sol.status}")
PY
