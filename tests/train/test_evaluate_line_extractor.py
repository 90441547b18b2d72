"""train/evaluate_line_extractor.py: the line extractor's test against the drawn line art, its
baselines, and its model card."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from colorize.models import LineExtractor
from train import evaluate_line_extractor as evaluate_le
from train import publish, run
from train.config import load_config

REPO = Path(__file__).resolve().parents[2]


def _lines(*strokes: tuple[int, int]) -> torch.Tensor:
    """A 1×1×16×16 white page with ink at the given (row, column) pixels."""
    page = torch.ones(1, 1, 16, 16)
    for row, column in strokes:
        page[0, 0, row, column] = 0
    return page


def test_identical_drawings_score_perfectly_and_blank_paper_finds_nothing():
    truth = _lines((4, 4), (4, 5), (10, 2))
    same = evaluate_le.line_metrics(truth, truth)
    assert same["precision"] == same["recall"] == same["f1"] == 1.0
    assert same["l1"] == 0 and same["psnr"] == pytest.approx(100.0)
    blank = evaluate_le.line_metrics(torch.ones_like(truth), truth)
    assert blank["recall"] == blank["f1"] == 0.0
    assert blank["l1"] == pytest.approx(3 / 256)


def test_ink_one_pixel_off_is_a_hit_and_two_pixels_off_a_miss():
    truth = _lines((8, 8))
    near = evaluate_le.line_metrics(_lines((9, 9)), truth)
    assert near["precision"] == near["recall"] == 1.0
    assert near["f1_exact"] == 0.0 and evaluate_le.line_metrics(truth, truth)["f1_exact"] == 1.0
    far = evaluate_le.line_metrics(_lines((8, 10)), truth)
    assert far["precision"] == far["recall"] == far["f1"] == 0.0
    # two drawn pixels, one of them on the line: precision 1/2, recall 1
    half = evaluate_le.line_metrics(_lines((8, 8), (2, 2)), truth)
    assert (half["precision"], half["recall"]) == (0.5, 1.0)
    assert half["f1"] == pytest.approx(2 / 3)


def test_shapes_must_match():
    with pytest.raises(ValueError, match="differ"):
        evaluate_le.line_metrics(torch.ones(1, 1, 8, 8), torch.ones(1, 1, 8, 9))


@pytest.fixture(scope="module")
def line_run(openmoji, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("line_extractor")
    overrides = [f"data.path={openmoji}", f"train.output_dir={out}", "log.tracker=jsonl",
                 "train.steps=2", "log.every=1", "log.sample_every=0"]  # fmt: skip
    config = REPO / "train" / "configs" / "line_extractor_tiny.toml"
    return run.train(load_config(config, overrides))


def test_trained_extractor_and_baselines_are_scored_and_shown_in_the_card(
    line_run, openmoji, tmp_path, capsys
):
    weights, results = tmp_path / "weights", tmp_path / "results"
    assert publish.main([str(line_run), "--out", str(weights)]) == 0
    common = ["--data", str(openmoji), "--split", "train", "--size", "32", "--out", str(results)]
    assert evaluate_le.main(["--weights", str(weights / "line_extractor"), *common]) == 0
    for baseline in evaluate_le.BASELINES:
        assert evaluate_le.main(["--baseline", baseline, *common]) == 0
    assert "ink F1" not in capsys.readouterr().err
    folder = results / "eval"
    trained = json.loads((folder / "line_extractor-lines-32px.json").read_text())
    xdog = json.loads((folder / "baseline-xdog-lines-32px.json").read_text())
    white = json.loads((folder / "baseline-white-lines-32px.json").read_text())
    assert trained["n"] == 16 and trained["kind"] == "support" and xdog["kind"] == "baseline"
    for record in (trained, xdog, white):
        metrics = record["metrics"]
        assert 0 <= metrics["precision"] <= 1 and 0 <= metrics["recall"] <= 1
        assert 0 <= metrics["l1"] <= 1 and metrics["psnr"] > 0
    assert white["metrics"]["f1"] == 0 and xdog["metrics"]["f1"] > 0
    table = (folder / "table.md").read_text()  # the colorization table gets no such rows
    assert "line_extractor" not in table and "xdog" not in table
    assert publish.main([str(line_run), "--out", str(weights), "--results", str(results),
                         "--card-only"]) == 0  # fmt: skip
    card = (weights / "line_extractor" / "README.md").read_text()
    assert f"| **this model** | 32 | {trained['metrics']['l1']:.4f} |" in card
    assert "| baseline: xdog | 32 |" in card and "| baseline: white | 32 |" in card
    assert "python -m train.evaluate_line_extractor" in card


def test_a_folder_without_a_model_is_one_error_message(tmp_path, capsys):
    assert evaluate_le.main(["--weights", str(tmp_path), "--data", str(tmp_path)]) == 2
    assert "has no config.json" in capsys.readouterr().err


def test_a_folder_dataset_draws_its_sketches_with_a_trained_line_extractor(line_run, openmoji):
    extractor = line_run / "weights" / "line_extractor"
    data = load_config(REPO / "train" / "configs" / "sga_tiny.toml", [
        "data.kind=folder", f"data.path={openmoji / 'color'}", f"data.line_extractor={extractor}",
    ]).data  # fmt: skip
    dataset = run.build_dataset(data, ())
    sample = dataset[0]
    model = LineExtractor.from_pretrained(extractor).eval()
    with torch.no_grad():
        expected = model(sample["target"][None])[0].clamp(-1, 1)
    torch.testing.assert_close(sample["sketch"], expected)
    with pytest.raises(ValueError, match="brings its own sketches"):
        load_config(REPO / "train" / "configs" / "sga_tiny.toml",
                    [f"data.line_extractor={extractor}"])  # fmt: skip
    missing = replace(data, line_extractor=str(openmoji))
    with pytest.raises(ValueError, match="has no config.json"):
        run.build_dataset(missing, ())
