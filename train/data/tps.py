"""Thin-plate-spline warps (Bookstein 1989) for the self-augmented reference (Cao et al. §III-A).

The reference for training is the ground truth warped by a random TPS, so a model must find
colours by correspondence rather than by position (Lee et al. 2020, used by every reference
method here). Control points form a regular grid over the image; each is moved by a uniform
random offset of at most `strength` (in units of the half image side, coordinates in [-1, 1]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _radial(r2: torch.Tensor) -> torch.Tensor:
    """TPS kernel U = r² log r², written on r² (0 at r = 0)."""
    return torch.where(r2 > 0, r2 * torch.log(r2.clamp_min(1e-30)), torch.zeros_like(r2))


def tps_grid(source: torch.Tensor, target: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Sampling grid [H, W, 2] (x, y in [-1, 1]) of the TPS f with f(target_i) = source_i.

    Used with `grid_sample`, the output pixel at target_i shows the input at source_i.
    Solves [[K, P], [Pᵀ, 0]] [w; a] = [source; 0] with K_ij = U(|t_i − t_j|), P_i = (1, t_i).

    Args:
        source, target: [N, 2] control points (x, y) in [-1, 1], N ≥ 3, not all on one line.
    """
    if source.shape != target.shape or source.dim() != 2 or source.shape[1] != 2:
        raise ValueError(
            "source and target must both be [N, 2], "
            f"got {tuple(source.shape)} and {tuple(target.shape)}"
        )
    t = target.double()
    n = t.shape[0]
    affine = torch.cat([torch.ones(n, 1, dtype=t.dtype), t], 1)  # (N, 3)
    system = torch.zeros(n + 3, n + 3, dtype=t.dtype)
    system[:n, :n] = _radial(torch.cdist(t, t) ** 2)
    system[:n, n:] = affine
    system[n:, :n] = affine.T
    rhs = torch.cat([source.double(), torch.zeros(3, 2, dtype=t.dtype)])
    coefficients = torch.linalg.solve(system, rhs)  # (N + 3, 2): w then a
    ys, xs = torch.meshgrid(
        torch.linspace(-1, 1, height, dtype=t.dtype),
        torch.linspace(-1, 1, width, dtype=t.dtype),
        indexing="ij",
    )
    points = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)  # (H*W, 2)
    basis = torch.cat(
        [_radial(torch.cdist(points, t) ** 2), torch.ones(len(points), 1, dtype=t.dtype), points], 1
    )  # (H*W, N + 3)
    return (basis @ coefficients).reshape(height, width, 2).float()


def random_tps(
    image: torch.Tensor,
    strength: float,
    *,
    grid: int = 4,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Warp [C, H, W] by a random TPS; strength 0 returns the image unchanged (a copy).

    Args:
        strength: largest control-point offset in [-1, 1] coordinates (0.1 = 5 % of the side).
        grid: control points per side (grid × grid, ≥ 2).
    Borders are extended (`padding_mode="border"`), which suits paper-white backgrounds.
    """
    if image.dim() != 3:
        raise ValueError(f"image must be [C, H, W], got {tuple(image.shape)}")
    if strength < 0 or grid < 2:
        raise ValueError(f"need strength >= 0 and grid >= 2, got strength={strength}, grid={grid}")
    if strength == 0:
        return image.clone()
    axis = torch.linspace(-1, 1, grid)
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    source = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)
    offsets = (torch.rand(source.shape, generator=generator) * 2 - 1) * strength
    sampling = tps_grid(source, source + offsets, image.shape[1], image.shape[2])
    warped = F.grid_sample(
        image[None].float(),
        sampling[None],
        mode="bilinear",
        padding_mode="border",
        align_corners=True,
    )
    return warped[0].to(image.dtype)
