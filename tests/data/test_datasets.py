"""The three datasets: the sample contract, condition selection, bad files, DataLoader batches."""

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from colorize.image_tensors import image_to_tensor
from train.data import (
    CONDITIONS,
    AnimePairDataset,
    ImageFolderDataset,
    OpenMojiCrossReference,
    OpenMojiDataset,
    SampleOptions,
)
from train.data.anime_pairs import split_pair

SIZE = 16


def check_contract(sample: dict, size: int, num_tags: int, conditions=CONDITIONS) -> None:
    """The sample contract of train.data.sample: keys, shapes, dtypes and value ranges."""
    shapes = {
        "sketch": (1, size, size), "target": (3, size, size), "reference": (3, size, size),
        "hint": (4, size // 4, size // 4), "palette": (27,), "tags": (num_tags,),
        "structure": (1, size, size), "colorific": (3, size, size),
    }  # fmt: skip
    assert set(sample) == {"sketch", "target", "meta", *conditions}
    assert isinstance(sample["meta"]["id"], str)
    for key, value in sample.items():
        if key == "meta":
            continue
        assert value.shape == shapes[key], key
        assert value.dtype == torch.float32, key
        low = 0 if key == "tags" else -1
        assert value.min() >= low and value.max() <= 1, key
    if "hint" in sample:
        mask = sample["hint"][3]
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(sample["hint"][:3], sample["hint"][:3] * mask)
    if "tags" in sample:
        assert sample["tags"][:12].sum() <= 1 + 1e-6


# ---------------------------------------------------------------- OpenMoji


def test_openmoji_sample_has_every_condition(openmoji_root):
    dataset = OpenMojiDataset(openmoji_root, "train", size=SIZE)
    vocabulary = json.loads((openmoji_root / "tags.json").read_text())
    assert dataset.vocabulary == vocabulary
    for index in range(3):
        check_contract(dataset[index], SIZE, len(vocabulary))


def test_openmoji_tags_and_palette_come_from_the_metadata(openmoji_root):
    dataset = OpenMojiDataset(openmoji_root, "train", size=SIZE, conditions=("tags", "palette"))
    index = next(i for i, item in enumerate(dataset.items) if item["hexcode"] == "1F44B-1F3FD")
    sample = dataset[index]
    tags = dict(zip(dataset.vocabulary, sample["tags"].tolist(), strict=True))
    assert tags["skintone:3"] == 1 and tags["skintone:1"] == 0
    assert tags["group:people-body"] == 1 and tags["subgroup:hand-fingers-open"] == 1
    assert tags["group:food-drink"] == 0
    assert tags["color:orange"] == pytest.approx(dataset.items[index]["color_shares"]["orange"])
    assert torch.equal(sample["palette"], torch.tensor(dataset.items[index]["palette"]))


def test_openmoji_conditions_are_selectable(openmoji_root):
    sample = OpenMojiDataset(openmoji_root, "val", size=SIZE, conditions=("hint",))[0]
    assert set(sample) == {"sketch", "target", "hint", "meta"}
    with pytest.raises(ValueError, match="unknown condition"):
        OpenMojiDataset(openmoji_root, "val", conditions=("strokes",))
    with pytest.raises(ValueError, match="multiple of 4"):
        OpenMojiDataset(openmoji_root, "val", size=30)
    with pytest.raises(ValueError, match="split must be"):
        OpenMojiDataset(openmoji_root, "dev")


def test_openmoji_without_augmentation_is_the_rendered_pair(openmoji_root):
    options = SampleOptions(tps_strength=0, brightness=0, contrast=0, saturation=0, hue=0)
    dataset = OpenMojiDataset(
        openmoji_root, "test", size=32, conditions=("reference",), augment=False, options=options
    )
    sample = dataset[0]
    item = dataset.items[0]
    color = image_to_tensor(Image.open(openmoji_root / item["color"]).convert("RGB"))
    sketch = image_to_tensor(Image.open(openmoji_root / item["sketch"]).convert("L"))
    assert torch.equal(sample["target"], color) and torch.equal(sample["sketch"], sketch)
    assert torch.equal(sample["reference"], sample["target"])  # TPS and jitter off
    assert (
        sample["sketch"].min() == -1 and sample["sketch"][0, 0, 0] == 1
    )  # black lines, white page


def test_openmoji_samples_are_deterministic_under_a_seed(openmoji_root):
    dataset = OpenMojiDataset(openmoji_root, "train", size=SIZE)
    torch.manual_seed(7)
    first = dataset[4]
    torch.manual_seed(7)
    second = dataset[4]
    for key in CONDITIONS:
        assert torch.equal(first[key], second[key]), key


def test_openmoji_colorific_is_another_drawing(openmoji_root):
    dataset = OpenMojiDataset(
        openmoji_root, "train", size=32, conditions=("colorific",), augment=False
    )
    index = next(i for i, item in enumerate(dataset.items) if item["hexcode"] == "1F44B-1F3FB")
    candidates = {
        h: image_to_tensor(Image.open(openmoji_root / "color" / f"{h}.png").convert("RGB"))
        for h in dataset.items[index]["similar"]
    }
    colorific = dataset[index]["colorific"]
    assert any(torch.equal(colorific, image) for image in candidates.values())


def test_openmoji_dataloader_batches(openmoji_root):
    dataset = OpenMojiDataset(openmoji_root, "train", size=SIZE)
    batch = next(iter(DataLoader(dataset, batch_size=4, shuffle=True)))
    assert batch["sketch"].shape == (4, 1, SIZE, SIZE) and batch["hint"].shape == (4, 4, 4, 4)
    assert batch["tags"].shape == (4, len(dataset.vocabulary)) and batch["palette"].shape == (4, 27)
    assert len(batch["meta"]["id"]) == 4


def test_openmoji_cross_reference_pairs(openmoji_root):
    pairs = OpenMojiCrossReference(openmoji_root, "train", size=SIZE)
    assert len(pairs) == 10  # two toned hands in train × 5 tones
    sample = pairs[0]
    assert sample["sketch"].shape == (1, SIZE, SIZE) and sample["reference"].shape == (
        3,
        SIZE,
        SIZE,
    )
    assert sample["meta"]["id"] != sample["meta"]["reference_id"]
    assert sample["meta"]["id"].split("-")[1] == sample["meta"]["reference_id"].split("-")[1]
    batch = next(iter(DataLoader(pairs, batch_size=5)))
    assert batch["target"].shape == (5, 3, SIZE, SIZE)


def test_openmoji_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not a prepared OpenMoji folder"):
        OpenMojiDataset(tmp_path)


# ---------------------------------------------------------------- anime pairs


def _pair_image(side: int, sketch_left: bool, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    color = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
    color[..., 0] = 230  # strongly saturated colour half
    sketch = np.full((side, side, 3), 255, np.uint8)
    sketch[side // 2, :] = 0
    sketch[:, side // 3] = 0
    halves = [sketch, color] if sketch_left else [color, sketch]
    return Image.fromarray(np.concatenate(halves, 1))


@pytest.mark.parametrize("sketch_left", [False, True], ids=["kaggle-order", "swapped"])
def test_split_pair_finds_the_sketch_half(sketch_left):
    image = _pair_image(24, sketch_left, 0)
    sketch, color = split_pair(image)
    array = np.asarray(image)
    expected_sketch = array[:, :24] if sketch_left else array[:, 24:]
    expected_color = array[:, 24:] if sketch_left else array[:, :24]
    assert sketch.mode == "L" and np.array_equal(np.asarray(sketch), expected_sketch[..., 0])
    assert np.array_equal(np.asarray(color), expected_color)


def test_split_pair_breaks_a_saturation_tie_by_white_paper():
    grey = np.full((8, 8, 3), 90, np.uint8)  # a monochrome "illustration"
    page = np.full((8, 8, 3), 255, np.uint8)
    page[4] = 0
    sketch, _ = split_pair(Image.fromarray(np.concatenate([grey, page], 1)))
    assert np.array_equal(np.asarray(sketch), page[..., 0])


@pytest.fixture
def anime_folder(tmp_path):
    for i in range(3):
        _pair_image(24, sketch_left=i == 1, seed=i).save(tmp_path / f"{i}.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return tmp_path


def test_anime_pairs_skip_a_corrupt_file_with_one_warning(anime_folder, caplog):
    dataset = AnimePairDataset(anime_folder, size=SIZE)
    assert len(dataset) == 4
    with caplog.at_level(logging.WARNING, logger="train.data.base"):
        samples = [dataset[i] for i in range(len(dataset))] + [dataset[3]]
    warnings = [r for r in caplog.records if "bad.png" in r.getMessage()]
    assert len(warnings) == 1
    assert samples[3]["meta"]["id"] == "0.png"  # index 3 (bad.png) falls through to the next file
    for sample in samples:
        check_contract(sample, SIZE, len(dataset.vocabulary))


def test_anime_pairs_dataloader_batches(anime_folder):
    dataset = AnimePairDataset(anime_folder, size=SIZE, conditions=("reference", "hint"))
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    assert batch["sketch"].shape == (4, 1, SIZE, SIZE) and batch["reference"].shape == (
        4,
        3,
        SIZE,
        SIZE,
    )
    assert batch["hint"].shape == (4, 4, SIZE // 4, SIZE // 4)


# ---------------------------------------------------------------- plain image folder


@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "sub").mkdir()
    for i, (h, w) in enumerate([(40, 48), (36, 36), (48, 30)]):
        array = np.full((h, w, 3), 255, np.uint8)
        array[5:-5, 5:-5] = rng.integers(0, 255, 3, dtype=np.uint8)
        Image.fromarray(array).save(tmp_path / ("sub" if i == 2 else ".") / f"{i}.jpg")
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    return tmp_path


def test_image_folder_makes_xdog_sketches_and_every_condition(image_folder, caplog):
    dataset = ImageFolderDataset(image_folder, size=SIZE)
    assert [dataset.item_id(i) for i in range(len(dataset))] == [
        "0.jpg",
        "1.jpg",
        "broken.png",
        "sub/2.jpg",
    ]
    with caplog.at_level(logging.WARNING):
        samples = [dataset[i] for i in range(len(dataset))]
    assert sum("broken.png" in r.getMessage() for r in caplog.records) == 1
    for sample in samples:
        check_contract(sample, SIZE, len(dataset.vocabulary))
        assert sample["sketch"].min() == -1 and sample["sketch"].max() == 1  # XDoG drew an edge


def test_image_folder_takes_a_learned_line_extractor(image_folder):
    class MeanLine(torch.nn.Module):
        def forward(self, images):
            return images.mean(1, keepdim=True)

    dataset = ImageFolderDataset(image_folder, size=SIZE, conditions=(), line_extractor=MeanLine())
    sample = dataset[0]
    torch.testing.assert_close(sample["sketch"], sample["target"].mean(0, keepdim=True))
    bad = ImageFolderDataset(image_folder, size=SIZE, conditions=(), line_extractor=lambda x: x)
    with pytest.raises(ValueError, match="line_extractor must map"):
        bad[0]


def test_image_folder_dataloader_batches(image_folder):
    dataset = ImageFolderDataset(image_folder, size=SIZE, conditions=("palette", "structure"))
    batch = next(iter(DataLoader(dataset, batch_size=4, num_workers=2)))
    assert batch["sketch"].shape == (4, 1, SIZE, SIZE) and batch["palette"].shape == (4, 27)
    assert batch["structure"].shape == (4, 1, SIZE, SIZE)


def test_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match=f"no images .* found in {tmp_path}"):
        ImageFolderDataset(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        AnimePairDataset(tmp_path / "missing")


def test_a_folder_of_only_bad_files_raises_instead_of_looping(tmp_path):
    (tmp_path / "a.png").write_bytes(b"junk")
    with pytest.raises(RuntimeError, match="no readable image"):
        ImageFolderDataset(tmp_path, size=SIZE)[0]
