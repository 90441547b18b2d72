"""XDoG line extraction (Ci et al. §4.1 settings): known answers on simple images."""

import pytest
import torch

from colorize.xdog import XDoG, xdog


def _black_square(side: int = 32) -> torch.Tensor:
    image = torch.ones(3, side, side)
    image[:, 8:24, 8:24] = -1
    return image


def test_xdog_keeps_a_blank_page_white():
    assert torch.equal(xdog(torch.ones(3, 16, 16)), torch.ones(1, 16, 16))


def test_xdog_draws_the_dark_side_of_an_edge_and_leaves_flat_areas_white():
    sketch = xdog(_black_square(), 0.5)
    assert sketch.shape == (1, 32, 32)
    assert sketch.min() >= -1 and sketch.max() <= 1
    assert sketch[0, 16, 8] == -1 and sketch[0, 8, 16] == -1  # inside the edge: line
    assert sketch[0, 16, 7] == 1 and sketch[0, 2, 2] == 1  # paper side and far paper: white
    assert sketch[0, 16, 16] == 1  # a flat dark area far from edges: D = 0 ≥ ε, white


def test_xdog_batched_equals_unbatched():
    image = torch.rand(3, 20, 24) * 2 - 1
    torch.testing.assert_close(xdog(image[None], 0.4)[0], xdog(image, 0.4))


def test_xdog_module_draws_sigma_from_its_list_with_torch_rng():
    images = torch.stack([_black_square(), -_black_square()])
    fixed = XDoG(sigmas=(0.3,))(images)
    torch.testing.assert_close(fixed, xdog(images, 0.3))
    torch.manual_seed(3)
    first = XDoG()(images)
    torch.manual_seed(3)
    assert torch.equal(XDoG()(images), first)
    assert first.shape == (2, 1, 32, 32)


def test_xdog_rejects_bad_input():
    with pytest.raises(ValueError, match="image must be"):
        xdog(torch.ones(1, 8, 8))
    with pytest.raises(ValueError, match="sigma"):
        xdog(torch.ones(3, 8, 8), 0)
    with pytest.raises(ValueError, match="sigmas"):
        XDoG(sigmas=())
