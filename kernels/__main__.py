"""`python -m kernels`: run the three ops on this machine, check them against the references.

It shows which path the dispatcher takes here and why, and the largest difference between
that path and the eager reference for the output and every gradient. `--interpret` runs the
Triton kernels on the CPU through Triton's interpreter (slow; for correctness only).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


def _compare(name, fused, reference, inputs) -> tuple[float, int]:
    """Run fused and reference from equal leaf inputs; return the worst relative error."""
    import torch

    a = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
    b = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
    out_a, out_b = fused(*a), reference(*b)
    dout = torch.randn_like(out_b)
    out_a.backward(dout)
    out_b.backward(dout)
    grads = [(x.grad, y.grad) for x, y in zip(a, b, strict=True) if y.grad is not None]
    pairs = [(out_a, out_b), *grads]
    worst = max(
        ((p.float() - q.float()).abs().max() / q.float().abs().max().clamp_min(1e-6)).item()
        for p, q in pairs
    )
    return worst, len(pairs) - 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels", description=__doc__.split("\n")[0])
    parser.add_argument("--interpret", action="store_true",
                        help="run the Triton kernels on CPU through Triton's interpreter")
    parser.add_argument("--backend", choices=("auto", "triton", "eager"), default="auto")
    args = parser.parse_args(argv)
    if args.interpret:  # must be set before triton is imported
        os.environ["TRITON_INTERPRET"] = "1"
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import torch

    import kernels
    from kernels._common import select_impl

    kernels.set_backend(args.backend)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    g = lambda *s, grad=True: torch.randn(*s, device=device).requires_grad_(grad)  # noqa: E731
    cases = {
        "sga_attention": (kernels.sga_attention, kernels.sga_attention_reference,
                          [g(2, 67, 32, grad=False), g(2, 45, 32, grad=False), g(2, 45, 24)]),
        "cross_attention": (kernels.cross_attention, kernels.cross_attention_reference,
                            [g(2, 4, 67, 32), g(2, 4, 45, 32), g(2, 4, 45, 32)]),
        "cbam": (kernels.cbam, kernels.cbam_reference,
                 [g(2, 32, 9, 11), g(8, 32), g(8), g(32, 8), g(32), g(1, 2, 7, 7), g(1)]),
    }
    print(f"torch {torch.__version__} on {device}; backend {kernels.get_backend()}")
    failed = False
    for name, (fused, reference, inputs) in cases.items():
        path = select_impl(name, tuple(inputs))
        worst, n_grads = _compare(name, fused, reference, inputs)
        ok = worst < 1e-4
        failed |= not ok
        print(f"{name:16} {path:6} output + {n_grads} gradient(s) vs reference: "
              f"max rel. error {worst:.1e} {'ok' if ok else 'MISMATCH'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
