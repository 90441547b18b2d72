"""train.evaluate: finding saved weights, the protocols' helpers, the results table, and the
command end to end on a tiny OpenMoji folder (prepared by the real CLI) with tiny random-weight
models of every method and every baseline."""

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

import kernels
from colorize.models import GENERATORS, Tagger, build_generator, presets
from tests.data.conftest import openmoji_root  # noqa: F401  (the prepared fixture folder)
from tests.train.test_metrics import _alexnet_and_lpips_files, _MeanColour
from train.baselines import BASELINES
from train.data import OpenMojiDataset
from train.evaluate import (
    INCEPTION_ENV,
    ProtocolSamples,
    Subject,
    derangement,
    main,
    resolve_weights,
    select_indices,
    split_images,
    write_results,
)
from train.metrics import mse, psnr_of_mse, skin_mask, to_unit

REPO = Path(__file__).resolve().parents[2]
PROTOCOL_METRICS = {
    "self": {"psnr", "ssim", "ms_ssim"},
    "cross": {"psnr", "ssim", "delta_e00_skin", "delta_e76_skin"},
    "random": {"fid_tagger", "ndb", "jsd"},
}


@pytest.fixture(autouse=True)
def _eager_kernels():
    kernels.set_backend("eager")
    yield
    kernels.set_backend("auto")


def _args(root: Path, out: Path, protocol: str, *extra: str) -> list[str]:
    """The fixture's train split (the only one with cross-reference pairs) at 32 px."""
    return [
        "--data", str(root), "--split", "train", "--protocol", protocol, "--size", "32",
        "--out", str(out), "--limit", "4", "--ndb-bins", "4", "--batch-size", "2", *extra,
    ]  # fmt: skip


def _record(out: Path, name: str, protocol: str) -> dict:
    return json.loads((out / "eval" / f"{name}-{protocol}-32px.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# helpers


def test_resolve_weights_finds_the_generator_in_a_folder_or_a_run(tmp_path):
    run = tmp_path / "run"
    build_generator("hints", "small").save_pretrained(run / "weights" / "hints")
    folder = run / "weights" / "hints"
    assert resolve_weights(run) == ("hints", folder)
    assert resolve_weights(folder) == ("hints", folder)
    assert resolve_weights(run / "weights") == ("hints", folder)
    with pytest.raises(ValueError, match="found no saved 'sga' generator"):
        resolve_weights(folder, "sga")
    build_generator("csft", "small").save_pretrained(run / "weights" / "csft")
    with pytest.raises(ValueError, match="several generators.*--method"):
        resolve_weights(run)
    assert resolve_weights(run, "csft") == ("csft", run / "weights" / "csft")
    with pytest.raises(ValueError, match="does not exist"):
        resolve_weights(tmp_path / "missing")


def test_select_indices_is_a_fixed_sorted_subset():
    assert select_indices(5, None, 0) == [0, 1, 2, 3, 4]
    assert select_indices(5, 9, 0) == [0, 1, 2, 3, 4]
    subset = select_indices(100, 7, 3)
    assert subset == sorted(set(subset)) and len(subset) == 7 and max(subset) < 100
    assert subset == select_indices(100, 7, 3) != select_indices(100, 7, 4)
    with pytest.raises(ValueError, match="--limit"):
        select_indices(5, 0, 0)


def test_derangement_never_picks_the_image_itself():
    partner = derangement(50, 0)
    assert (partner != range(50)).all() and partner.min() >= 0 and partner.max() < 50
    assert (partner == derangement(50, 0)).all()
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1, 0)


def test_protocol_samples_are_fixed_by_the_seed(openmoji_root):  # noqa: F811
    by_reference = Subject("r", "baseline", "none", "", ("reference",), BASELINES["regions"])
    by_hint = Subject("h", "baseline", "none", "", ("hint",), BASELINES["regions-hints"])

    warped = ProtocolSamples("self", openmoji_root, "train", 32, by_reference, seed=0)
    first, again = warped.load(3), warped.load(3)
    assert torch.equal(first["reference"], again["reference"])
    assert not torch.equal(first["reference"], first["target"])  # a TPS warp of it
    reseeded = ProtocolSamples("self", openmoji_root, "train", 32, by_reference, seed=1).load(3)
    assert not torch.equal(reseeded["reference"], first["reference"])

    hinted = ProtocolSamples("self", openmoji_root, "train", 32, by_hint, seed=0)
    assert torch.equal(hinted.load(3)["hint"], hinted.load(3)["hint"])
    unhinted = ProtocolSamples("random", openmoji_root, "train", 32, by_hint, seed=0)
    assert not unhinted.load(3)["hint"].any()  # Ci et al. §4.3.1: automatic colorization

    shuffled = ProtocolSamples("random", openmoji_root, "train", 32, by_reference, seed=0)
    partner = int(shuffled.partner[2])
    assert partner != 2
    assert torch.equal(shuffled.load(2)["reference"], shuffled.dataset[partner]["target"])

    pairs = ProtocolSamples("cross", openmoji_root, "train", 32, by_reference, seed=0)
    batch = pairs.collate([pairs.load(i) for i in range(len(pairs))])
    assert skin_mask(to_unit(batch.default), to_unit(batch.target)).any(dim=(1, 2)).all()
    with pytest.raises(ValueError, match="does not apply"):
        ProtocolSamples("cross", openmoji_root, "train", 32, by_hint, seed=0)


def test_split_images_read_the_same_targets_as_the_dataset(openmoji_root):  # noqa: F811
    images = split_images(openmoji_root, "val", 32, "val")
    dataset = OpenMojiDataset(openmoji_root, "val", 32, conditions=(), augment=False)
    expected = to_unit(torch.stack([dataset[i]["target"] for i in range(len(dataset))]))
    assert torch.equal(images, expected)


def _fake_record(name: str, protocol: str, psnr_value: float | str, kind: str = "method") -> dict:
    return {
        "name": name, "kind": kind, "weights": "random" if kind == "method" else "none",
        "protocol": protocol, "dataset": "openmoji", "split": "test", "n": 3, "split_size": 9,
        "size": 32, "device": "CPU test", "date": "2026-01-01", "settings": {}, "notes": [],
        "metrics": {"psnr": psnr_value, "ssim": 0.5},
    }  # fmt: skip


def test_write_results_replaces_the_row_of_a_rerun(tmp_path):
    write_results(_fake_record("sga", "self", 11.11), tmp_path)
    write_results(_fake_record("baseline-white", "self", "inf", kind="baseline"), tmp_path)
    _, table = write_results(_fake_record("sga", "self", 22.22), tmp_path)
    text = table.read_text(encoding="utf-8")
    assert "22.22" in text and "11.11" not in text
    rows = [line for line in text.splitlines() if line.startswith("| sga ")]
    assert len(rows) == 1 and "| random |" in rows[0]
    assert "| baseline: white | non-learned | inf |" in text
    assert text.index("| sga ") < text.index("| baseline: white ")
    assert "cross-reference" not in text  # no cross records, no cross table


# ---------------------------------------------------------------------------------------------
# end to end


@pytest.mark.slow
def test_every_method_and_baseline_runs_every_protocol_that_applies(
    openmoji_root,  # noqa: F811
    tmp_path,
    capsys,
):
    out = tmp_path / "results"
    subjects = [("--random-init", "small", "--method", key) for key in GENERATORS]
    subjects += [("--baseline", key) for key in BASELINES]
    for subject in subjects:
        name = subject[-1] if subject[0] == "--random-init" else f"baseline-{subject[-1]}"
        for protocol, wanted in PROTOCOL_METRICS.items():
            code = main(_args(openmoji_root, out, protocol, *subject))
            printed = capsys.readouterr()
            if protocol == "cross" and name in ("hints", "baseline-regions-hints"):
                assert code == 2 and "does not apply" in printed.err
                continue
            assert code == 0, printed.err
            record = _record(out, name, protocol)
            assert record["n"] == 4 and record["size"] == 32 and record["split"] == "train"
            assert wanted <= set(record["metrics"])
            assert all(math.isfinite(record["metrics"][key]) for key in wanted)
            if name == "tags":
                assert math.isfinite(record["metrics"]["red_share_change"])
            if subject[0] == "--random-init":
                assert record["weights"] == "random" and "(random weights)" in printed.out
            else:
                assert record["weights"] == "none"
    table = (out / "eval" / "table.md").read_text(encoding="utf-8")
    assert table.count("| hints | random |") == 2 and table.count("| sga | random |") == 3
    assert table.count("| baseline: regions | non-learned |") == 3
    random_rows = [line for line in table.splitlines() if "/4 |" in line]  # NDB cells "k/4"
    assert len(random_rows) == len(GENERATORS) + len(BASELINES)
    assert all("†" in row for row in random_rows)  # FID on a random-init tagger is flagged


def test_white_baseline_psnr_matches_a_direct_computation(openmoji_root, tmp_path):  # noqa: F811
    assert main(_args(openmoji_root, tmp_path, "self", "--baseline", "white")) == 0
    dataset = OpenMojiDataset(openmoji_root, "train", 32, conditions=(), augment=False)
    samples = [dataset[i] for i in select_indices(len(dataset), 4, 0)]
    sketch = torch.stack([s["sketch"] for s in samples]).expand(-1, 3, -1, -1)
    target = torch.stack([s["target"] for s in samples])
    expected = psnr_of_mse(mse(to_unit(sketch), to_unit(target)).mean()).item()
    assert _record(tmp_path, "baseline-white", "self")["metrics"]["psnr"] == pytest.approx(expected)


def test_saved_weights_evaluate_as_trained_and_match_the_same_random_init(
    openmoji_root,  # noqa: F811
    tmp_path,
):
    torch.manual_seed(0)  # the seed --random-init uses
    build_generator("sga", "small").save_pretrained(tmp_path / "run" / "weights" / "sga")
    assert (
        main(_args(openmoji_root, tmp_path / "a", "cross", "--weights", str(tmp_path / "run"))) == 0
    )
    assert (
        main(
            _args(
                openmoji_root, tmp_path / "b", "cross", "--random-init", "small", "--method", "sga"
            )
        )
        == 0
    )
    trained, random = (
        _record(tmp_path / "a", "sga", "cross"),
        _record(tmp_path / "b", "sga", "cross"),
    )
    assert trained["weights"] == "trained" and trained["source"].endswith("weights/sga")
    assert trained["metrics"] == random["metrics"]


def test_snap_evaluates_the_apps_region_snapped_output_as_its_own_row(
    openmoji_root,  # noqa: F811
    tmp_path,
):
    torch.manual_seed(0)
    build_generator("hints", "small").save_pretrained(tmp_path / "hints")
    common = ["--weights", str(tmp_path / "hints")]
    assert main(_args(openmoji_root, tmp_path, "self", *common)) == 0
    assert main(_args(openmoji_root, tmp_path, "self", *common, "--snap")) == 0
    raw, snapped = _record(tmp_path, "hints", "self"), _record(tmp_path, "hints+snap", "self")
    assert snapped["metrics"]["psnr"] != raw["metrics"]["psnr"]
    assert any("snapped" in note for note in snapped["notes"])
    table = (tmp_path / "eval" / "table.md").read_text()
    assert table.index("| hints | trained") < table.index("| hints+snap | trained")
    with pytest.raises(SystemExit, match="2"):
        raise SystemExit(main(_args(openmoji_root, tmp_path, "self", "--baseline", "white",
                                    "--snap")))  # fmt: skip


def test_lpips_inception_and_tagger_come_from_local_files_or_are_skipped(
    openmoji_root,  # noqa: F811
    tmp_path,
    capsys,
    monkeypatch,
):
    monkeypatch.delenv("COLORIZE_LPIPS_WEIGHTS", raising=False)
    monkeypatch.delenv(INCEPTION_ENV, raising=False)
    assert main(_args(openmoji_root, tmp_path / "none", "self", "--baseline", "mean")) == 0
    assert "note: LPIPS skipped" in capsys.readouterr().out
    assert "lpips" not in _record(tmp_path / "none", "baseline-mean", "self")["metrics"]

    paths, _ = _alexnet_and_lpips_files(tmp_path)
    extra = ["--baseline", "mean", "--lpips-weights", *map(str, paths)]
    assert main(_args(openmoji_root, tmp_path / "lpips", "self", *extra)) == 0
    assert "LPIPS skipped" not in capsys.readouterr().out
    assert _record(tmp_path / "lpips", "baseline-mean", "self")["metrics"]["lpips"] > 0

    assert main(_args(openmoji_root, tmp_path / "none", "random", "--baseline", "mean")) == 0
    assert "note: Inception FID skipped" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript: the files' format
        torch.jit.script(_MeanColour()).save(str(tmp_path / "inception.pt"))
    monkeypatch.setenv(INCEPTION_ENV, str(tmp_path / "inception.pt"))
    tagger = Tagger(**{**presets("tagger", "small"), "num_tags": 8})
    tagger.save_pretrained(tmp_path / "tagger_run" / "weights" / "tagger")
    extra = ["--baseline", "mean", "--tagger", str(tmp_path / "tagger_run")]
    assert main(_args(openmoji_root, tmp_path / "files", "random", *extra)) == 0
    record = _record(tmp_path / "files", "baseline-mean", "random")
    assert record["metrics"]["fid_inception"] >= 0
    assert "tagger_run/weights/tagger" in record["settings"]["fid_features"]
    table = (tmp_path / "files" / "eval" / "table.md").read_text(encoding="utf-8")
    row = next(line for line in table.splitlines() if line.startswith("| baseline: mean "))
    assert "†" not in row


def test_the_command_runs_as_a_module(openmoji_root, tmp_path):  # noqa: F811
    env = {**os.environ, "KERNELS_BACKEND": "eager"}
    command = [sys.executable, "-m", "train.evaluate", *_args(openmoji_root, tmp_path, "cross")]
    result = subprocess.run([*command, "--baseline", "regions"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "delta_e00_skin" in result.stdout
    assert (tmp_path / "eval" / "table.md").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--random-init", "small"], "--random-init needs --method"),
        (["--baseline", "white", "--method", "sga"], "--baseline takes no"),
        ([], "give --weights PATH"),
        (["--weights", "nowhere"], "--weights nowhere does not exist"),
        (["--baseline", "mean", "--ndb-bins", "99"], "--ndb-bins 99 exceeds"),
    ],
)
def test_bad_input_is_named_without_a_traceback(
    openmoji_root,  # noqa: F811
    tmp_path,
    capsys,
    extra,
    message,
):
    protocol = "random" if "--ndb-bins" in extra else "self"
    assert main(_args(openmoji_root, tmp_path, protocol, *extra)) == 2
    assert message in capsys.readouterr().err
