"""train/publish.py (a finished tiny run becomes fp16 default weights with a model card) and
train/sample_grid.py (the README's grid of the published methods)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from colorize.models import SGAGenerator, Tagger
from train import evaluate, evaluate_tagger, publish, run, sample_grid
from train.config import load_config

REPO = Path(__file__).resolve().parents[2]
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"


def _train(config: str, data: Path, out: Path, *overrides: str) -> Path:
    defaults = [f"data.path={data}", f"train.output_dir={out}", "log.tracker=jsonl",
                "train.steps=2", "log.every=1", "log.sample_every=0"]  # fmt: skip
    return run.train(load_config(REPO / "train" / "configs" / config, [*defaults, *overrides]))


@pytest.fixture(scope="module")
def tagger_run(openmoji, tmp_path_factory) -> Path:
    return _train("tagger_tiny.toml", openmoji, tmp_path_factory.mktemp("tagger"))


def test_finished_run_writes_a_summary(tagger_run):
    summary = json.loads((tagger_run / run.SUMMARY_FILE).read_text())
    assert summary["method"] == "tagger" and summary["steps"] == 2
    assert summary["images"] == 2 * summary["batch_size"] == 4
    assert summary["seconds"] > 0 and summary["images_per_second"] > 0
    assert set(summary["final_losses"]) == {"loss", "loss_color", "loss_sketch"}
    assert summary["device"].startswith("CPU") and summary["size"] == 32


def test_publish_writes_fp16_weights_that_load_as_the_trained_model(tagger_run, tmp_path):
    assert publish.main([str(tagger_run), "--out", str(tmp_path), "--results",
                         str(tmp_path / "results")]) == 0  # fmt: skip
    folder = tmp_path / "tagger"
    saved = load_file(folder / WEIGHTS_FILE).values()
    assert {t.dtype for t in saved if t.is_floating_point()} == {torch.float16}
    trained = Tagger.from_pretrained(tagger_run / "weights" / "tagger").state_dict()
    loaded = Tagger.from_pretrained(folder).state_dict()
    for name, value in trained.items():
        assert loaded[name].dtype == value.dtype  # back in fp32
        torch.testing.assert_close(loaded[name], value.half().to(value.dtype), rtol=0, atol=0)
    vocabulary = (tagger_run / "weights" / "tagger" / "tags.json").read_text()
    assert (folder / "tags.json").read_text() == vocabulary
    assert load_config(folder / "train_tagger.toml").train.steps == 2
    [record] = json.loads((folder / publish.TRAINING_FILE).read_text())
    assert record["recipe"] == "tagger" and record["steps"] == 2 and record["parameters"] > 0
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlicense: cc-by-sa-4.0")
    assert "| steps × batch | 2 × 2 |" in card and "OpenMoji" in card and "CC BY-SA 4.0" in card
    assert "Not evaluated yet." in card


def test_tagger_scores_appear_in_its_card(tagger_run, openmoji, tmp_path):
    weights, results = tmp_path / "weights", tmp_path / "results"
    assert publish.main([str(tagger_run), "--out", str(weights)]) == 0
    code = evaluate_tagger.main(["--weights", str(weights / "tagger"), "--data", str(openmoji),
                                 "--split", "train", "--size", "32", "--out", str(results)])
    assert code == 0
    record = json.loads((results / "eval" / "tagger-tags-32px.json").read_text())
    metrics = record["metrics"]
    assert 0 < metrics["colour_map"] <= 1 and 0 < metrics["sketch_map"] <= 1
    assert 0 <= metrics["colour_colour_mae"] <= 1 and "sketch_colour_mae" not in metrics
    assert publish.main([str(tagger_run), "--out", str(weights), "--results", str(results),
                         "--card-only"]) == 0  # fmt: skip
    card = (weights / "tagger" / "README.md").read_text()
    assert f"| **this model** | 32 | {metrics['colour_map']:.3f} |" in card
    assert "python -m train.evaluate_tagger" in card


def test_average_precision_of_a_perfect_and_a_reversed_ranking():
    labels = np.array([1.0, 0.0, 1.0, 0.0])
    assert evaluate_tagger.average_precision(np.array([0.9, 0.1, 0.8, 0.2]), labels) == 1.0
    reversed_ap = evaluate_tagger.average_precision(np.array([0.1, 0.9, 0.2, 0.8]), labels)
    assert reversed_ap == pytest.approx((1 / 3 + 2 / 4) / 2)


def test_republishing_replaces_the_record_of_the_same_recipe(tagger_run, tmp_path):
    for _ in range(2):
        assert publish.main([str(tagger_run), "--out", str(tmp_path)]) == 0
    assert len(json.loads((tmp_path / "tagger" / publish.TRAINING_FILE).read_text())) == 1
    assert [p.name for p in (tmp_path / "tagger").glob("*.safetensors")] == [WEIGHTS_FILE]


@pytest.fixture(scope="module")
def published(tagger_run, openmoji, tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """sga_tiny and hints_tiny trained 2 steps and published into one weights folder."""
    root = tmp_path_factory.mktemp("published")
    tagger = tagger_run / "weights" / "tagger"
    runs = {
        "sga": _train("sga_tiny.toml", openmoji, root / "sga_run", f"loss.feature_path={tagger}"),
        "hints": _train("hints_tiny.toml", openmoji, root / "hints_run",
                        f"loss.feature_path={tagger}", f"model.tagger_path={tagger}"),
    }  # fmt: skip
    for run_dir in runs.values():
        assert publish.main([str(run_dir), "--out", str(root / "weights")]) == 0
    return root / "weights", runs


def test_card_shows_the_evaluation_next_to_the_baselines(published, openmoji, tmp_path):
    weights, runs = published
    sga_run, results = runs["sga"], tmp_path / "results"
    assert isinstance(SGAGenerator.from_pretrained(weights / "sga"), SGAGenerator)
    common = ["--data", str(openmoji), "--split", "train", "--size", "32", "--limit", "4",
              "--out", str(results), "--batch-size", "2", "--protocol", "self"]  # fmt: skip
    assert evaluate.main(["--weights", str(weights / "sga"), *common]) == 0
    assert evaluate.main(["--baseline", "white", *common]) == 0
    assert (results / "eval" / "sga-self-32px.json").is_file()

    assert publish.main([str(sga_run), "--out", str(weights), "--results", str(results),
                         "--card-only"]) == 0  # fmt: skip
    card = (weights / "sga" / "README.md").read_text()
    psnr = json.loads((results / "eval" / "sga-self-32px.json").read_text())["metrics"]["psnr"]
    assert f"| **this model** | 32 | {psnr:.2f} |" in card
    assert "| baseline: white | 32 |" in card
    assert 'method="sga"' in card  # the usage snippet


def test_unfinished_run_is_refused_with_a_reason(tmp_path, capsys):
    (tmp_path / "weights" / "sga").mkdir(parents=True)
    assert publish.main([str(tmp_path)]) == 2
    assert "must hold one exported model" in capsys.readouterr().err


def test_sample_grid_has_one_labelled_row_per_published_method(published, openmoji, tmp_path):
    weights, _ = published
    out = tmp_path / "grid.png"
    code = sample_grid.main(["--weights", str(weights), "--data", str(openmoji), "--split",
                             "train", "--size", "32", "--count", "2", "--out", str(out)])
    assert code == 0
    assert sample_grid.trained_methods(weights) == ["sga", "hints"]
    with Image.open(out) as grid:
        width, height = grid.size
        pixels = grid.convert("RGB")
        assert width == sample_grid.LABEL_WIDTH + 2 * (4 * 32 + sample_grid.GAP)
        assert height == sample_grid.HEADER + 2 * (32 + sample_grid.GAP)
        # the ground-truth panel of the first image in the sga row is the test image itself
        row, column = sample_grid.HEADER, sample_grid.LABEL_WIDTH + 3 * 32
        patch = pixels.crop((column, row, column + 32, row + 32))
        assert len(patch.getcolors(4096) or []) > 2  # a drawing, not blank paper


def test_sample_grid_without_weights_is_an_error(openmoji, tmp_path, capsys):
    code = sample_grid.main(["--weights", str(tmp_path), "--data", str(openmoji)])
    assert code == 2 and "holds no trained method" in capsys.readouterr().err


def test_card_reports_the_tag_edit_of_a_tags_model():
    from train.publish import evaluation_table

    common = {"protocol": "self", "size": 128, "n": 4, "dataset": "openmoji", "split": "test",
              "date": "2026-11-25", "device": "cpu"}  # fmt: skip
    records = [
        {**common, "kind": "method", "name": "tags", "settings": {"tag_edit": "color:red + 1.0"},
         "metrics": {"psnr": 20.0, "ssim": 0.9, "ms_ssim": 0.9, "red_share_change": 0.25}},
        {**common, "kind": "baseline", "name": "baseline-white", "settings": {},
         "metrics": {"psnr": 13.0, "ssim": 0.9, "ms_ssim": 0.8}},
    ]  # fmt: skip
    text = "\n".join(evaluation_table(records))
    assert "| **this model** | 128 | 20.00 | 0.900 | 0.900 |" in text
    assert "raising the reference's `color:red + 1.0` through the TagMapper" in text
    assert "by +0.250 on average" in text
