"""The committed default weights (weights/<method>/) colour real test-split drawings.

Every method whose weights are in the repository is loaded the way a user gets it (a plain
`Colorizer()`, offline) and colours the four credited OpenMoji test-split fixtures
(tests/fixtures/openmoji_test/, never trained on) at 128 px: its raw output (no region snap)
must beat filling the drawing with white paper by at least 3 dB PSNR, and the app's status
must not call its weights random. Methods without committed weights are skipped by name.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import app
from colorize.image_tensors import image_to_tensor
from colorize.models import LineExtractor
from colorize.pipeline import DEFAULT_WEIGHTS, METHODS, Colorizer
from train.evaluate import red_share
from train.evaluate_line_extractor import line_metrics

FIXTURES = Path(__file__).parent / "fixtures" / "openmoji_test"
MARGIN_DB = 3.0
STROKES = {"hints"}  # methods that read colour strokes instead of a reference
LINE_F1 = 0.9  # ink F1 of the committed line extractor on the fixtures (see its card)


def _psnr(outputs: list[np.ndarray], truths: list[np.ndarray]) -> float:
    """PSNR of the mean squared error over all fixtures (as train.evaluate pools it)."""
    pairs = zip(outputs, truths, strict=True)
    errors = [((output.astype(np.float64) - truth) ** 2).mean() for output, truth in pairs]
    return 10 * math.log10(255**2 / np.mean(errors))


@pytest.fixture(scope="module")
def colorizer() -> Colorizer:
    return Colorizer(device="cpu")


@pytest.fixture(scope="module")
def fixtures() -> list[Path]:
    folders = sorted(p for p in FIXTURES.iterdir() if (p / "sketch.png").is_file())
    assert len(folders) == 4
    return folders


def test_fixtures_are_credited():
    credit = (FIXTURES / "README.md").read_text(encoding="utf-8")
    assert "OpenMoji" in credit and "CC BY-SA 4.0" in credit


@pytest.mark.parametrize("method", METHODS)
def test_committed_weights_beat_white_fill_by_3_db(method, colorizer, fixtures, monkeypatch):
    folder = DEFAULT_WEIGHTS / method
    if not (folder / "config.json").is_file():
        pytest.skip(f"no committed weights for {method} yet (weights/{method}/ is issue #11)")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "OpenMoji" in card and "CC BY-SA 4.0" in card  # the model card credits the data
    assert json.loads((folder / "training.json").read_text())[-1]["steps"] > 0

    outputs, truths = [], []
    for fixture in fixtures:
        condition = (
            {"strokes": fixture / "strokes.png"}
            if method in STROKES
            else {"reference": fixture / "reference.png"}
        )
        image, info = colorizer(fixture / "sketch.png", method=method, size=128, snap=False,
                                **condition)  # fmt: skip
        assert info["weights"] == str(folder)
        outputs.append(np.asarray(image.convert("RGB")))
        truths.append(np.asarray(Image.open(fixture / "color.png").convert("RGB")))
    white = [np.full_like(truth, 255) for truth in truths]
    learned, baseline = _psnr(outputs, truths), _psnr(white, truths)
    assert learned >= baseline + MARGIN_DB, (method, learned, baseline)
    assert "Untrained random weights" not in app._status(info)


def test_committed_tag_mapper_turns_a_raised_red_slider_into_red(colorizer, fixtures):
    """The tags weights' step-2 TagMapper: the sliders do what they say (Yan et al. §3.5)."""
    if not (DEFAULT_WEIGHTS / "tags" / "config.json").is_file():
        pytest.skip("no committed tags weights yet")
    if not colorizer.tag_names("tags"):
        pytest.skip("the committed tags weights have no TagMapper yet (step 2)")
    changes = []
    for fixture in fixtures:
        reference = fixture / "reference.png"
        start = colorizer.reference_tags(reference)["color:red"]
        call = dict(reference=reference, method="tags", size=128, snap=False)
        plain, _ = colorizer(fixture / "sketch.png", **call)
        redder, _ = colorizer(fixture / "sketch.png", **call, tags={"color:red": start + 1})
        images = torch.stack([image_to_tensor(im.convert("RGB")) for im in (plain, redder)])
        sketch = image_to_tensor(Image.open(fixture / "sketch.png").convert("L"))
        shares = red_share(images, torch.stack([sketch, sketch]))  # as train.evaluate measures
        changes.append(shares[1] - shares[0])
    assert np.mean(changes) > 0.05, changes  # the test split's mean: +0.26


def test_committed_line_extractor_draws_the_lines_of_test_drawings(fixtures):
    """weights/line_extractor (Cao et al. §III-A) turns the fixtures' colour images into line
    art closer to the artists' than blank paper is, finding most of their ink."""
    folder = DEFAULT_WEIGHTS / "line_extractor"
    if not (folder / "config.json").is_file():
        pytest.skip("no committed line extractor weights yet")
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "OpenMoji" in card and "CC BY-SA 4.0" in card
    model = LineExtractor.from_pretrained(folder).eval()
    colours = torch.stack([image_to_tensor(Image.open(f / "color.png").convert("RGB"))
                           for f in fixtures])  # fmt: skip
    truth = torch.stack([image_to_tensor(Image.open(f / "sketch.png").convert("L"))
                         for f in fixtures]).add(1).div(2)  # fmt: skip
    with torch.no_grad():
        drawn = model(colours).clamp(-1, 1).add(1).div(2)
    learned = line_metrics(drawn, truth)
    blank = line_metrics(torch.ones_like(truth), truth)
    assert learned["l1"] < 0.5 * blank["l1"], (learned, blank)
    assert learned["f1"] >= LINE_F1, learned
