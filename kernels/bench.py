"""Benchmark the three ops: eager reference vs torch.compile vs PyTorch SDPA vs Triton, in one run.

    python -m kernels.bench --op all --device cuda --dtype bf16 --out results/

Every shape is first checked against the fp32 reference, then timed per provider and mode
(fwd, bwd, fwd+bwd). Rows go to results/kernels-<device>.json (raw) and .md (table); a
re-run replaces the rows it measures again. Ratios are only meaningful within one run on
one device. On a CPU the eager, compile and SDPA columns run and Triton is skipped: its
interpreter is for correctness, never for speed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from .reference import cbam_reference, cross_attention_reference, sga_attention_reference

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
MODES = ("fwd", "bwd", "fwd+bwd")
# Tolerance of each dtype against the fp32 reference in the pre-timing check.
CHECK_TOL = {torch.float32: 1e-3, torch.float16: 2e-2, torch.bfloat16: 6e-2}

# ----------------------------------------------------------------------------------------------
# Shapes and work formulas


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark shape of one op; `dims` is written into the table as-is."""

    op: str
    dims: dict

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.dims.items())


def _sweep(op: str, device: str, quick: bool) -> list[Case]:
    if quick:  # CI smoke run: tiny shapes, every code path
        return {
            "sga": [Case("sga", dict(B=1, N=64, M=48, C=16, Cv=16))],
            "cross": [Case("cross", dict(B=1, H=2, N=64, M=48, D=16))],
            "cbam": [Case("cbam", dict(B=1, C=16, H=8, W=8, r=4, k=7))],
        }[op]
    if device == "cuda":
        tokens = (256, 1024, 4096, 16384)
        return {
            "sga": [Case("sga", dict(B=4, N=n, M=n, C=256, Cv=256)) for n in tokens]
            + [Case("sga", dict(B=4, N=4096, M=1024, C=256, Cv=256))],
            "cross": [
                Case("cross", dict(B=4, H=8, N=n, M=n, D=d)) for d in (64, 128) for n in tokens
            ]
            + [Case("cross", dict(B=4, H=8, N=4096, M=1024, D=d)) for d in (64, 128)],
            "cbam": [
                Case("cbam", dict(B=16, C=64, H=256, W=256, r=16, k=7)),
                Case("cbam", dict(B=16, C=256, H=64, W=64, r=16, k=7)),
                Case("cbam", dict(B=16, C=128, H=128, W=128, r=16, k=7)),
            ],
        }[op]
    tokens = (256, 1024, 4096)  # a CPU sweep that finishes in minutes
    return {
        "sga": [Case("sga", dict(B=1, N=n, M=n, C=64, Cv=64)) for n in tokens],
        "cross": [Case("cross", dict(B=1, H=4, N=n, M=n, D=64)) for n in tokens],
        "cbam": [
            Case("cbam", dict(B=2, C=64, H=128, W=128, r=16, k=7)),
            Case("cbam", dict(B=2, C=256, H=32, W=32, r=16, k=7)),
        ],
    }[op]


def _sga_flops(B: int, N: int, M: int, C: int, Cv: int, mode: str) -> float:
    """Forward: x yᵀ (2NMC) + A v (2NMCv); backward: Aᵀ dz (2NMCv). Recompute is not counted."""
    fwd, bwd = 2.0 * B * N * M * (C + Cv), 2.0 * B * N * M * Cv
    return {"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd + bwd}[mode]


def _cross_attention_flops(B: int, H: int, N: int, M: int, D: int, mode: str) -> float:
    """Forward: q kᵀ and P v, 2·2NMD; backward 2.5× forward (4 matmuls + recomputing q kᵀ),
    the FlashAttention convention, so numbers compare with published ones."""
    fwd = 4.0 * B * H * N * M * D
    return {"fwd": fwd, "bwd": 2.5 * fwd, "fwd+bwd": 3.5 * fwd}[mode]


def _cbam_bytes(B: int, C: int, H: int, W: int, elt: int, mode: str) -> float:
    """Bytes that must move: forward reads x and writes y; backward reads x and dy, writes dx."""
    plane = B * C * H * W * elt
    return {"fwd": 2.0 * plane, "bwd": 3.0 * plane, "fwd+bwd": 5.0 * plane}[mode]


# ----------------------------------------------------------------------------------------------
# Problems: inputs, the reference and each provider's callable


@dataclasses.dataclass
class Problem:
    inputs: list[torch.Tensor]  # the tensors gradients flow to are marked requires_grad
    reference: Callable
    providers: dict[str, Callable]
    work: Callable[[str], float]  # mode -> flops or bytes
    unit: str  # "TFLOP/s" or "GB/s"


def _sdpa(backend):
    from torch.nn.attention import sdpa_kernel

    def run(q, k, v):
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v)

    return run


def _problem(case: Case, device: str, dtype: torch.dtype, providers: list[str]) -> Problem:
    import kernels

    d = case.dims
    randn = lambda *shape: torch.randn(*shape, device=device, dtype=dtype)  # noqa: E731
    if case.op == "sga":
        # scaled so that unscaled x yᵀ stays in a realistic range for any C
        x = randn(d["B"], d["N"], d["C"]) / d["C"] ** 0.5
        y = randn(d["B"], d["M"], d["C"]) / d["C"] ** 0.25
        v = randn(d["B"], d["M"], d["Cv"]).requires_grad_()
        reference, fused = sga_attention_reference, kernels.sga_attention
        inputs = [x, y, v]
        work = lambda mode: _sga_flops(**d, mode=mode)  # noqa: E731
        unit = "TFLOP/s"
    elif case.op == "cross":
        q = randn(d["B"], d["H"], d["N"], d["D"]).requires_grad_()
        k = randn(d["B"], d["H"], d["M"], d["D"]).requires_grad_()
        v = randn(d["B"], d["H"], d["M"], d["D"]).requires_grad_()
        reference, fused = cross_attention_reference, kernels.cross_attention
        inputs = [q, k, v]
        work = lambda mode: _cross_attention_flops(**d, mode=mode)  # noqa: E731
        unit = "TFLOP/s"
    else:
        B, C, H, W, r, ks = (d[key] for key in ("B", "C", "H", "W", "r", "k"))
        x = randn(B, C, H, W).requires_grad_()
        params = [
            randn(C // r, C) / C**0.5, randn(C // r) * 0.1,
            randn(C, C // r) / (C // r) ** 0.5, randn(C) * 0.1,
            randn(1, 2, ks, ks) / ks, randn(1) * 0.1,
        ]
        inputs = [x] + [p.requires_grad_() for p in params]
        reference, fused = cbam_reference, kernels.cbam
        elt = torch.finfo(dtype).bits // 8
        work = lambda mode: _cbam_bytes(B, C, H, W, elt, mode)  # noqa: E731
        unit = "GB/s"
    table: dict[str, Callable] = {}
    for name in providers:
        if name == "eager":
            table[name] = reference
        elif name == "compile":
            table[name] = torch.compile(reference, dynamic=False)
        elif name == "triton":
            table[name] = lambda *a, _f=fused: _f(*a, impl="triton")
        elif name.startswith("sdpa") and case.op == "cross":
            from torch.nn.attention import SDPBackend

            backends = {
                "sdpa-flash": SDPBackend.FLASH_ATTENTION,
                "sdpa-cudnn": SDPBackend.CUDNN_ATTENTION,
                "sdpa-efficient": SDPBackend.EFFICIENT_ATTENTION,
                "sdpa-math": SDPBackend.MATH,
            }
            if name == "sdpa":
                table[name] = F.scaled_dot_product_attention
            elif name in backends:
                table[name] = _sdpa(backends[name])
    return Problem(inputs, reference, table, work, unit)


# ----------------------------------------------------------------------------------------------
# Timing


def _time_cpu(fn: Callable, reps: int) -> tuple[float, float, float]:
    fn()  # warm-up (and compilation for torch.compile)
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e3)
    q = statistics.quantiles(samples, n=10) if len(samples) > 1 else samples * 9
    return statistics.median(samples), q[1], q[7]


def _time(fn: Callable, device: str, reps: int, grads: list[torch.Tensor]):
    """(p50, p20, p80) milliseconds; do_bench (with its L2 flush) on CUDA."""
    if device == "cuda":
        from triton.testing import do_bench

        p50, p20, p80 = do_bench(fn, quantiles=[0.5, 0.2, 0.8], grad_to_none=grads)
        return p50, p20, p80
    return _time_cpu(fn, reps)


def _mode_fn(fn: Callable, inputs: list[torch.Tensor], mode: str) -> Callable:
    grads = [t for t in inputs if t.requires_grad]
    if mode == "fwd":
        def run():
            with torch.no_grad():
                return fn(*inputs)
        return run
    out = fn(*inputs)
    dout = torch.randn_like(out)
    if mode == "bwd":
        return lambda: torch.autograd.grad(out, grads, dout, retain_graph=True)
    return lambda: torch.autograd.grad(fn(*inputs), grads, dout)


def _peak_mib(fn: Callable, device: str) -> float | None:
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def _max_error(fn: Callable, problem: Problem, expected: torch.Tensor | None) -> float | None:
    if expected is None:
        return None
    with torch.no_grad():
        out = fn(*problem.inputs)
    return (out.float() - expected).abs().max().item() / max(1.0, expected.abs().max().item())


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


# ----------------------------------------------------------------------------------------------
# Running and reporting


def _environment(device: str) -> dict:
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
            cwd=Path(__file__).resolve().parent, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    name = torch.cuda.get_device_name() if device == "cuda" else _cpu_name()
    return {
        "device": name,
        "torch": torch.__version__,
        "triton": triton_version,
        "python": platform.python_version(),
        "commit": commit,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return f"{platform.processor() or 'cpu'} ({torch.get_num_threads()} threads)"


def device_slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'h100-80gb-hbm3': a file-name friendly device name."""
    name = re.sub(r"^nvidia\s+", "", name.lower())
    name = re.sub(r"\(.*?\)", "", name)
    return re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "device"


def run_case(case, device, dtype, providers, modes, reps, log) -> list[dict]:
    """Check every provider on `case` against the fp32 reference, then time each mode."""
    rows = []
    problem = _problem(case, device, dtype, providers)
    try:
        ref_inputs = [t.detach().float() for t in problem.inputs]
        expected = problem.reference(*ref_inputs).float()
    except Exception as exc:  # noqa: BLE001 - an OOM of the reference leaves rows unchecked
        if not _is_oom(exc):
            raise
        expected = None
    for name, fn in problem.providers.items():
        try:
            error = _max_error(fn, problem, expected)
        except Exception as exc:  # noqa: BLE001
            if not _is_oom(exc):
                raise
            error = None
        tol = CHECK_TOL[dtype]
        for mode in modes:
            row = {
                "op": case.op, "shape": case.label, "dims": case.dims, "dtype": str(dtype)[6:],
                "provider": name, "mode": mode, "max_rel_error": error,
                "check": "unchecked" if error is None else ("ok" if error <= tol else "WRONG"),
            }
            try:
                run = _mode_fn(fn, problem.inputs, mode)
                grads = [t for t in problem.inputs if t.requires_grad]
                p50, p20, p80 = _time(run, device, reps, grads)
                peak = _peak_mib(run, device)
                per_s = problem.work(mode) / (p50 * 1e-3)
                rate = per_s / (1e12 if problem.unit == "TFLOP/s" else 1e9)
                row.update(ms_p50=p50, ms_p20=p20, ms_p80=p80, peak_mib=peak,
                           rate=rate, unit=problem.unit, status="ok")
            except Exception as exc:  # noqa: BLE001 - OOM is a result, anything else a bug
                if not _is_oom(exc):
                    raise
                row.update(status="OOM")
            finally:
                if device == "cuda":
                    torch.cuda.empty_cache()
            rows.append(row)
            log(_format_row(row))
    eager = {(r["mode"]): r.get("ms_p50") for r in rows if r["provider"] == "eager"}
    for row in rows:
        base = eager.get(row["mode"])
        row["speedup_vs_eager"] = base / row["ms_p50"] if base and row.get("ms_p50") else None
    return rows


def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _format_row(row: dict) -> str:
    head = f"{row['op']:5} {row['shape']:38} {row['provider']:14} {row['mode']:7}"
    if row["status"] != "ok":
        return f"{head} {row['status']}"
    return f"{head} {row['ms_p50']:9.3f} ms  {row['rate']:8.2f} {row['unit']}  check {row['check']}"


def markdown_table(rows: list[dict], env: dict) -> str:
    """The rows as one markdown table per op, with the run's device and versions on top."""
    lines = [
        f"# Kernel benchmark on {env['device']}",
        "",
        f"torch {env['torch']}, triton {env['triton']}, python {env['python']}, "
        f"commit {env['commit']}, {env['timestamp']}. Median of repeated runs "
        "(p20–p80 in brackets); speed-up is against `eager` in the same run.",
    ]
    for op in dict.fromkeys(r["op"] for r in rows):
        op_rows = [r for r in rows if r["op"] == op]
        unit = next((r["unit"] for r in op_rows if r.get("unit")), "")
        lines += [
            "", f"## {op}", "",
            f"| shape | dtype | mode | provider | ms p50 (p20–p80) | {unit} | peak MiB "
            "| vs eager | check |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in op_rows:
            if r["status"] != "ok":
                lines.append(f"| {r['shape']} | {r['dtype']} | {r['mode']} | {r['provider']} "
                             f"| {r['status']} | — | — | — | {r['check']} |")
                continue
            lines.append(
                f"| {r['shape']} | {r['dtype']} | {r['mode']} | {r['provider']} | "
                f"{r['ms_p50']:.3f} ({r['ms_p20']:.3f}–{r['ms_p80']:.3f}) | {r['rate']:.2f} | "
                f"{_fmt(r['peak_mib'], '.0f')} | {_fmt(r['speedup_vs_eager'], '.2f')}× "
                f"| {r['check']} |"
            )
    return "\n".join(lines) + "\n"


def _row_key(row: dict) -> tuple:
    return (row["op"], row["shape"], row["dtype"], row["provider"], row["mode"])


def write_results(rows: list[dict], env: dict, out: Path, name: str) -> tuple[Path, Path]:
    """Merge `rows` into out/kernels-<name>.json (same key: replaced) and rewrite the .md."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"kernels-{name}.json", out / f"kernels-{name}.md"
    old = json.loads(json_path.read_text())["rows"] if json_path.exists() else []
    fresh = {_row_key(r) for r in rows}
    merged = [r for r in old if _row_key(r) not in fresh] + [{**r, **env} for r in rows]
    json_path.write_text(json.dumps({"environment": env, "rows": merged}, indent=1) + "\n")
    md_path.write_text(markdown_table(merged, env))
    return json_path, md_path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m kernels.bench", description=__doc__.split("\n")[0])
    p.add_argument("--op", choices=("sga", "cross", "cbam", "all"), default="all",
                   help="which op to benchmark (default: all)")
    p.add_argument("--device", choices=("cuda", "cpu"), default=None,
                   help="default: cuda when available, else cpu")
    p.add_argument("--dtype", choices=tuple(DTYPES), default=None,
                   help="default: bf16 on cuda, fp32 on cpu")
    p.add_argument("--modes", default=",".join(MODES), help="comma list of fwd,bwd,fwd+bwd")
    p.add_argument("--providers", default=None,
                   help="comma list of eager,compile,sdpa[-flash|-cudnn|-efficient|-math],triton "
                        "(default: all that run on the device)")
    p.add_argument("--out", type=Path, default=Path("results"), help="output folder")
    p.add_argument("--name", default=None, help="device name in the file names (default: slug)")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions on cpu (cuda: do_bench)")
    p.add_argument("--quick", action="store_true", help="tiny shapes: a smoke run, not a benchmark")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda asked for, but torch sees no CUDA device")
    dtype = DTYPES[args.dtype or ("bf16" if device == "cuda" else "fp32")]
    modes = [m for m in args.modes.split(",") if m]
    if unknown := set(modes) - set(MODES):
        sys.exit(f"unknown modes {sorted(unknown)}; expected {MODES}")
    if args.providers:
        providers = [p for p in args.providers.split(",") if p]
    elif device == "cuda":
        providers = ["eager", "compile", "sdpa-flash", "sdpa-cudnn", "sdpa-efficient", "triton"]
    else:
        providers = ["eager", "compile", "sdpa"]
    if device != "cuda" and "triton" in providers:
        providers.remove("triton")
        print("triton: skipped; its kernels need a CUDA GPU to be timed "
              "(the CPU interpreter is for correctness tests only)")
    from ._common import triton_import_error

    if "triton" in providers and triton_import_error():
        sys.exit(f"triton provider asked for, but {triton_import_error()}")
    env = _environment(device)
    name = args.name or device_slug(env["device"] if device == "cuda" else "cpu")
    print(f"kernels.bench on {env['device']} | dtype {str(dtype)[6:]} | providers {providers}")
    ops = ("sga", "cross", "cbam") if args.op == "all" else (args.op,)
    rows = []
    from tqdm.auto import tqdm

    cases = [c for op in ops for c in _sweep(op, device, args.quick)]
    for case in tqdm(cases, desc="shapes", unit="shape"):
        rows += run_case(case, device, dtype, providers, modes, args.reps, tqdm.write)
    json_path, md_path = write_results(rows, env, args.out, name)
    print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    wrong = [r for r in rows if r["check"] == "WRONG"]
    if wrong:
        print(f"{len(wrong)} rows disagree with the fp32 reference: see the check column")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
