"""Thin-plate-spline warp of the self-augmented reference (Cao et al. §III-A)."""

import pytest
import torch

from train.data.tps import random_tps, tps_grid


def test_tps_with_strength_zero_is_exactly_the_identity():
    image = torch.rand(3, 17, 23)
    assert torch.equal(random_tps(image, 0.0), image)


def test_tps_grid_without_displacement_is_the_identity_grid():
    points = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0], [0.2, -0.3]])
    grid = tps_grid(points, points, 5, 7)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 5), torch.linspace(-1, 1, 7), indexing="ij")
    torch.testing.assert_close(grid, torch.stack([xs, ys], -1), atol=1e-6, rtol=0)


def test_tps_grid_maps_each_target_point_to_its_source():
    axis = torch.linspace(-1, 1, 5)  # control points on the pixel lattice of a 5×5 grid
    ys, xs = torch.meshgrid(axis, axis, indexing="ij")
    target = torch.stack([xs.reshape(-1), ys.reshape(-1)], 1)
    source = target + (torch.rand(target.shape) - 0.5) * 0.3
    grid = tps_grid(source, target, 5, 5)
    torch.testing.assert_close(grid.reshape(-1, 2), source, atol=1e-5, rtol=0)


def test_random_tps_moves_content_but_not_a_flat_image():
    image = torch.zeros(3, 32, 32)
    image[:, 10:20, 10:20] = 1
    generator = torch.Generator().manual_seed(0)
    warped = random_tps(image, 0.3, generator=generator)
    assert warped.shape == image.shape and not torch.allclose(warped, image)
    again = random_tps(image, 0.3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(warped, again)
    flat = torch.full((3, 16, 16), 0.25)
    torch.testing.assert_close(random_tps(flat, 0.3), flat)


def test_random_tps_rejects_bad_arguments():
    with pytest.raises(ValueError, match="strength"):
        random_tps(torch.zeros(3, 8, 8), -0.1)
    with pytest.raises(ValueError, match="image must be"):
        random_tps(torch.zeros(1, 3, 8, 8), 0.1)
