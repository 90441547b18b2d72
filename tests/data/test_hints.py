"""Colour hints at ¼ resolution: simulated (Ci et al. §3.1) and from painted strokes (§3.4)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from colorize.hints import simulate_hint, stroke_hint


def test_simulated_hint_is_the_masked_downsampled_target():
    target = torch.rand(3, 32, 48) * 2 - 1
    generator = torch.Generator().manual_seed(1)
    hint = next(
        h
        for h in (simulate_hint(target, std=0.5, generator=generator) for _ in range(50))
        if h[3].any()
    )
    assert hint.shape == (4, 8, 12) and hint.dtype == torch.float32
    mask = hint[3]
    assert set(mask.unique().tolist()) <= {0.0, 1.0} and mask.sum() > 0
    torch.testing.assert_close(hint[:3], F.avg_pool2d(target[None], 4)[0] * mask)


def test_simulated_hint_density_follows_the_paper():
    # B = R > |ξ|, ξ ~ N(1, 0.005): half the images empty (ξ > 1), else ≈ 0.4 % of the cells;
    # at 64×64 cells an image with ξ < 1 is rarely empty by chance
    generator = torch.Generator().manual_seed(0)
    target = torch.zeros(3, 256, 256)
    masks = torch.stack([simulate_hint(target, generator=generator)[3] for _ in range(300)])
    filled = masks.flatten(1).mean(1)
    assert 0.4 < (filled == 0).float().mean() < 0.65
    assert 0.002 < filled[filled > 0].mean() < 0.007


def test_simulated_hint_is_deterministic_for_a_generator():
    target = torch.rand(3, 16, 16)
    first = simulate_hint(target, std=0.3, generator=torch.Generator().manual_seed(5))
    assert torch.equal(
        first, simulate_hint(target, std=0.3, generator=torch.Generator().manual_seed(5))
    )


def test_a_painted_dot_lands_in_its_quarter_resolution_cell_with_its_colour():
    layer = np.zeros((64, 64, 4), np.uint8)
    layer[9, 21] = (255, 0, 0, 255)  # cell (9 // 4, 21 // 4) = (2, 5)
    hint = stroke_hint(layer, 64)
    assert hint.shape == (4, 16, 16)
    expected = torch.zeros(4, 16, 16)
    expected[:, 2, 5] = torch.tensor([1.0, -1.0, -1.0, 1.0])
    torch.testing.assert_close(hint, expected)


def test_thin_strokes_survive_and_colours_are_alpha_weighted():
    layer = np.zeros((32, 32, 4), np.uint8)
    layer[13, :] = (0, 0, 255, 255)  # a one-pixel line through row 3 of cells
    layer[0, 0] = (255, 0, 0, 255)
    layer[0, 1] = (0, 0, 255, 85)  # a third of the weight
    hint = stroke_hint(Image.fromarray(layer, "RGBA"), (32, 32))
    assert hint[3, 3].tolist() == [1.0] * 8 and hint[3].sum() == 9
    torch.testing.assert_close(
        hint[:3, 3, :], torch.tensor([-1.0, -1.0, 1.0])[:, None].expand(3, 8)
    )
    red, blue = 1 / (1 + 1 / 3), (1 / 3) / (1 + 1 / 3)
    torch.testing.assert_close(hint[:3, 0, 0], torch.tensor([red, 0.0, blue]) * 2 - 1)


def test_stroke_layer_is_mapped_onto_the_model_size():
    layer = np.zeros((100, 60, 4), np.uint8)
    layer[99, 59] = (0, 255, 0, 255)  # bottom-right pixel → last cell of an 8×4 grid
    hint = stroke_hint(layer, (32, 16))
    assert hint.shape == (4, 8, 4)
    assert hint[3].sum() == 1 and hint[3, 7, 3] == 1
    torch.testing.assert_close(hint[:3, 7, 3], torch.tensor([-1.0, 1.0, -1.0]))


def test_sparsify_clears_every_other_cell_like_the_paper():
    layer = np.full((16, 16, 4), 255, np.uint8)
    mask = stroke_hint(layer, 16, sparsify=True)[3]
    assert mask.tolist() == [[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]]


def test_stroke_hint_rejects_bad_layers_and_sizes():
    with pytest.raises(ValueError, match="RGBA uint8"):
        stroke_hint(np.zeros((8, 8, 3), np.uint8), 8)
    with pytest.raises(ValueError, match="RGBA uint8"):
        stroke_hint(np.zeros((8, 8, 4), np.float32), 8)
    with pytest.raises(ValueError, match="multiples of 4"):
        stroke_hint(np.zeros((8, 8, 4), np.uint8), 10)
    with pytest.raises(ValueError, match="multiples of 4"):
        simulate_hint(torch.zeros(3, 10, 12))
