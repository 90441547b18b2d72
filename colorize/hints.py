"""Colour-hint tensors at ¼ resolution (Ci et al. §3.1, §3.4): H = {Y_down · B, B}, 4 channels.

Training simulates hints by sampling random pixels of the 4× downsampled target (§3.1);
inference turns the strokes a user painted (an RGBA layer) into the same layout (§3.4).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

HINT_SCALE = 4  # hints live at 1/4 of the image side


def _check_side(height: int, width: int) -> None:
    if height % HINT_SCALE or width % HINT_SCALE or height < HINT_SCALE or width < HINT_SCALE:
        raise ValueError(f"image sides must be positive multiples of 4, got {height}x{width}")


def simulate_hint(
    target: torch.Tensor, *, std: float = 0.005, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Simulated user hint of Ci et al. §3.1 from a target image.

    Y_down is the target average-pooled 4×; B = R > |ξ| with R ~ U(0, 1) per pixel and one
    ξ ~ N(1, std) per image. As in the paper, about half of the images get no hint (ξ > 1) and
    the rest a sparse sample (on average 0.4 % of the cells for std = 0.005).

    Args:
        target: [3, H, W] RGB in [-1, 1], H and W multiples of 4.
    Returns:
        [4, H/4, W/4]: channels 0–2 = Y_down · B, channel 3 = B in {0, 1}.
    """
    if target.dim() != 3 or target.shape[0] != 3:
        raise ValueError(f"target must be [3, H, W], got {tuple(target.shape)}")
    _check_side(target.shape[1], target.shape[2])
    down = F.avg_pool2d(target[None].float(), HINT_SCALE)[0]
    xi = 1 + std * torch.randn((), generator=generator)
    mask = (torch.rand(down.shape[1:], generator=generator) > xi.abs()).float()[None]
    return torch.cat([down * mask, mask])


def stroke_hint(
    strokes: np.ndarray | Image.Image, size: int | tuple[int, int], *, sparsify: bool = False
) -> torch.Tensor:
    """Hint tensor from a painted stroke layer (uint8 [H, W, 4] RGBA; alpha > 0 = stroke).

    The layer covers the whole sketch and is mapped onto the hint grid of a model input of
    `size` (H', W') = a grid of H'/4 × W'/4 cells. The rule keeps thin strokes: a cell is on
    if any of its layer pixels is painted (max-pooling of the mask, Ci et al. §3.4), and its
    colour is the alpha-weighted mean of those painted pixels. With `sparsify`, every other
    cell in a checkerboard is cleared (§3.4: "remove half of the input pixels"), which makes
    user strokes as sparse as the simulated training hints.

    Returns:
        float32 [4, H'/4, W'/4]: RGB in [-1, 1] times the mask, then the mask in {0, 1}.
    """
    layer = np.asarray(strokes.convert("RGBA") if isinstance(strokes, Image.Image) else strokes)
    if layer.dtype != np.uint8 or layer.ndim != 3 or layer.shape[2] != 4:
        raise ValueError(
            f"strokes must be an RGBA uint8 [H, W, 4] layer, got {layer.dtype} {layer.shape}"
        )
    height, width = (size, size) if isinstance(size, int) else size
    _check_side(height, width)
    grid = (height // HINT_SCALE, width // HINT_SCALE)
    rgba = torch.from_numpy(layer.astype(np.float32)).permute(2, 0, 1)[None] / 255
    alpha = rgba[:, 3:]
    mask = F.adaptive_max_pool2d((alpha > 0).float(), grid)[0]
    weight = F.adaptive_avg_pool2d(alpha, grid)[0]
    color = F.adaptive_avg_pool2d(rgba[:, :3] * alpha, grid)[0] / weight.clamp_min(1e-12)
    if sparsify:
        rows = torch.arange(grid[0])[:, None]
        cols = torch.arange(grid[1])[None, :]
        mask = mask * ((rows + cols) % 2 == 0).float()
    return torch.cat([(color * 2 - 1) * mask, mask])
