"""`python -m train.prepare_openmoji` on the fixture package, and its split and pair rules."""

import json
import random
import shutil
import tarfile
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image

from train import prepare_openmoji
from train.prepare_openmoji import assign_splits, cross_reference_pairs, read_entries

from .conftest import FIXTURE_PACKAGE


def test_cli_renders_every_emoji_and_writes_metadata(openmoji_root):
    metadata = json.loads((openmoji_root / "metadata.json").read_text())
    items = metadata["items"]
    assert len(items) == 25 and sum(metadata["splits"].values()) == 25
    assert all(metadata["splits"][split] > 0 for split in ("train", "val", "test"))
    for item in items:
        with Image.open(openmoji_root / item["color"]) as color:
            assert color.size == (32, 32) and color.mode == "RGB"
        with Image.open(openmoji_root / item["sketch"]) as sketch:
            assert sketch.size == (32, 32) and sketch.mode == "L"
        assert len(item["palette"]) == 27 and all(-1 <= v <= 1 for v in item["palette"])
        assert 0.998 <= sum(item["color_shares"].values()) <= 1.0
        for key in (
            "hexcode",
            "annotation",
            "group",
            "subgroup",
            "tags",
            "skintone",
            "base_hexcode",
        ):
            assert key in item
    attribution = (openmoji_root / "ATTRIBUTION.md").read_text()
    assert "CC BY-SA 4.0" in attribution and "https://openmoji.org" in attribution


def test_cli_keeps_every_drawing_in_one_split(openmoji_root):
    items = json.loads((openmoji_root / "metadata.json").read_text())["items"]
    splits_of_base = defaultdict(set)
    for item in items:
        splits_of_base[item["base_hexcode"]].add(item["split"])
    assert all(len(s) == 1 for s in splits_of_base.values())
    split_of = {item["hexcode"]: item["split"] for item in items}
    base_of = {item["hexcode"]: item["base_hexcode"] for item in items}
    for item in items:  # colour-similar images: same split, other drawings
        assert all(
            split_of[h] == item["split"] and base_of[h] != item["base_hexcode"]
            for h in item["similar"]
        )


def test_cli_saves_the_tag_vocabulary(openmoji_root):
    vocabulary = json.loads((openmoji_root / "tags.json").read_text())
    assert vocabulary[:12] == [
        f"color:{c}"
        for c in (
            "red",
            "orange",
            "yellow",
            "green",
            "cyan",
            "blue",
            "purple",
            "pink",
            "brown",
            "black",
            "grey",
            "white",
        )
    ]
    assert "skintone:0" in vocabulary and "skintone:5" in vocabulary
    assert "group:people-body" in vocabulary and "subgroup:hand-fingers-open" in vocabulary
    assert len(vocabulary) == len(set(vocabulary))


def test_rerun_skips_finished_files_and_gives_the_same_metadata(tmp_path, capsys):
    argv = [
        "--out",
        str(tmp_path),
        "--size",
        "16",
        "--source",
        str(FIXTURE_PACKAGE),
        "--workers",
        "1",
    ]
    assert prepare_openmoji.main(argv) == 0
    png = tmp_path / "color" / "1F600.png"
    stamp = png.stat().st_mtime_ns
    first = (tmp_path / "metadata.json").read_text()
    assert prepare_openmoji.main(argv) == 0
    assert png.stat().st_mtime_ns == stamp
    assert (tmp_path / "metadata.json").read_text() == first
    assert "wrote 25 emoji at 16 px" in capsys.readouterr().out


def test_source_may_be_the_npm_tarball(tmp_path):
    tarball = tmp_path / "openmoji-17.0.0.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(FIXTURE_PACKAGE, arcname="package")
    metadata = prepare_openmoji.prepare(tmp_path / "out", size=8, source=tarball)
    assert len(metadata["items"]) == 25


def test_a_broken_svg_is_skipped_with_a_warning(tmp_path, capsys):
    package = tmp_path / "package"
    shutil.copytree(FIXTURE_PACKAGE, package)
    (package / "color" / "svg" / "1F600.svg").write_text("<svg")
    metadata = prepare_openmoji.prepare(tmp_path / "out", size=8, source=package)
    assert len(metadata["items"]) == 24
    assert "1F600" not in {item["hexcode"] for item in metadata["items"]}
    assert "skipped 1F600" in capsys.readouterr().err


def test_without_npm_or_source_the_cli_says_what_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(prepare_openmoji.shutil, "which", lambda name: None)
    assert prepare_openmoji.main(["--out", str(tmp_path), "--workers", "1"]) == 2
    message = capsys.readouterr().err
    assert "npm was not found" in message and "--source" in message


def test_read_entries_normalises_skin_tones():
    entries = {e["hexcode"]: e for e in read_entries(FIXTURE_PACKAGE)}
    assert entries["1F44B"]["skintone"] == [0]  # the default yellow of a toned emoji
    assert entries["1F44B-1F3FD"]["skintone"] == [3]
    assert entries["1F44B-1F3FD"]["base_hexcode"] == "1F44B"
    assert entries["1F600"]["skintone"] == [] and entries["1F600"]["base_hexcode"] == "1F600"


def _synthetic_entries(count: int = 2000) -> list[dict]:
    rng = random.Random(0)
    entries = []
    for g in range(count):
        for v in range(6 if rng.random() < 0.2 else 1):
            entries.append({"hexcode": f"{g}-{v}", "base_hexcode": f"{g}"})
        if len(entries) >= count:
            break
    return entries


def test_splits_are_grouped_deterministic_and_near_90_5_5():
    entries = _synthetic_entries()
    split_of = assign_splits(entries, seed=0)
    assert split_of == assign_splits(list(reversed(entries)), seed=0)
    assert split_of != assign_splits(entries, seed=1)
    counts = {
        s: sum(split_of[e["base_hexcode"]] == s for e in entries) for s in ("train", "val", "test")
    }
    assert 100 <= counts["val"] <= 106 and 100 <= counts["test"] <= 106
    with pytest.raises(ValueError, match="val"):
        assign_splits(entries, val=0.6, test=0.5)


def _person(base: str, subgroup: str, split: str) -> list[dict]:
    return [
        {"hexcode": f"{base}-{tone}", "base_hexcode": base, "subgroup": subgroup,
         "split": split, "skintone": [tone]}
        for tone in range(6)
    ]  # fmt: skip


def test_cross_reference_pairs_use_a_different_person_in_the_same_tone():
    items = (
        _person("A", "person", "train") + _person("B", "person", "train")
        + _person("C", "hand", "train") + _person("D", "person", "test")
    )  # fmt: skip
    pairs = cross_reference_pairs(items, seed=0)
    assert pairs["val"] == [] and pairs["test"] == []  # D has nobody to pair with in test
    train = pairs["train"]
    assert len(train) == 15  # 3 persons × 5 tones (tone 0 is the default yellow, not a tone)
    for pair in train:
        base, tone = pair["target"].split("-")
        assert pair["sketch"] == pair["target"] and pair["skintone"] == int(tone) > 0
        assert pair["reference"].split("-")[1] == tone and not pair["reference"].startswith(base)
        if base in "AB":  # a person of the same subgroup is preferred
            assert pair["reference"][0] in "AB"
    assert pairs == cross_reference_pairs(items, seed=0)


def test_metadata_palettes_match_the_images(openmoji_root):
    from colorize.palette import palette_kmeans

    items = json.loads((openmoji_root / "metadata.json").read_text())["items"]
    item = next(i for i in items if i["hexcode"] == "1F499")
    color = np.asarray(Image.open(openmoji_root / item["color"]).convert("RGB"))
    np.testing.assert_allclose(item["palette"], palette_kmeans(color).numpy(), atol=1e-4)
