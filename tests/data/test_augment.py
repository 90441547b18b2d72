"""Paired crop/flip (sketch and target move together) and colour jitter."""

import pytest
import torch

from train.data.augment import color_jitter, paired_crop_flip


def test_paired_crop_flip_applies_one_window_and_flip_to_all_images():
    target = torch.arange(3 * 12 * 12, dtype=torch.float32).view(3, 12, 12)
    sketch = -target[:1]
    seen_flip = set()
    for seed in range(12):
        crop_target, crop_sketch = paired_crop_flip(
            [target, sketch], 8, generator=torch.Generator().manual_seed(seed)
        )
        assert crop_target.shape == (3, 8, 8) and crop_sketch.shape == (1, 8, 8)
        assert torch.equal(crop_sketch, -crop_target[:1])
        flipped = bool(crop_target[0, 0, 0] > crop_target[0, 0, 1])
        seen_flip.add(flipped)
        upright = crop_target.flip(-1) if flipped else crop_target
        top, left = divmod(int(upright[0, 0, 0]), 12)
        assert torch.equal(upright, target[:, top : top + 8, left : left + 8])
    assert seen_flip == {True, False}


def test_paired_crop_flip_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match="share H and W"):
        paired_crop_flip([torch.zeros(3, 8, 8), torch.zeros(1, 8, 9)], 4)
    with pytest.raises(ValueError, match="larger"):
        paired_crop_flip([torch.zeros(3, 8, 8)], 9)


def test_color_jitter_off_is_the_identity():
    image = torch.rand(3, 9, 9) * 2 - 1
    assert torch.equal(color_jitter(image), image)


def test_color_jitter_changes_colours_but_leaves_grey_grey():
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, 16, 16) * 2 - 1
    jittered = color_jitter(
        image, brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1, generator=generator
    )
    assert jittered.shape == image.shape and jittered.min() >= -1 and jittered.max() <= 1
    assert not torch.allclose(jittered, image)
    grey = torch.full((3, 4, 4), 0.2)  # no chroma: saturation and hue leave it unchanged
    torch.testing.assert_close(color_jitter(grey, saturation=0.5, hue=0.5), grey)
