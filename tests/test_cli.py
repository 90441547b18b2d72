"""`python -m colorize`: a folder of sketches with one reference, bad files skipped, inputs never
overwritten."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colorize.__main__ import main
from tests.test_pipeline import drawn_sketch, reference_image, right_half_stroke, write_tiny_weights

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return write_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture
def frames(tmp_path) -> Path:
    """frames/: two sketches of different sizes, a corrupt PNG and a text file."""
    folder = tmp_path / "frames"
    folder.mkdir()
    drawn_sketch().save(folder / "frame_001.png")
    drawn_sketch(80, 80).convert("RGB").save(folder / "frame_002.jpg", quality=95)
    (folder / "frame_003.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (folder / "notes.txt").write_text("not an image, and not picked up")
    reference_image().save(tmp_path / "reference.png")
    return folder


@pytest.mark.slow  # a fresh interpreter imports torch and the models: 5–10 s
def test_cli_colours_a_folder_skips_bad_files_and_shows_progress(weights, frames, tmp_path):
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "colorize", "--sketch", str(frames),
        "--reference", str(tmp_path / "reference.png"), "--method", "sga", "--out", str(out),
        "--size", "64", "--weights", str(weights),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["frame_001.png", "frame_002.png"]
    assert Image.open(out / "frame_001.png").size == (100, 60)
    assert Image.open(out / "frame_002.png").size == (80, 80)
    assert "skipped frame_003.png: sketch: frame_003.png is not a readable image" in result.stdout
    assert "wrote 2 image(s)" in result.stdout and "skipped 1" in result.stdout
    assert "colorizing" in result.stderr and "3/3" in result.stderr  # the tqdm bar


def test_cli_single_file_with_strokes_and_hints(weights, frames, tmp_path, capsys):
    Image.fromarray(right_half_stroke(), "RGBA").save(tmp_path / "strokes.png")
    out = tmp_path / "out"
    code = main([
        "--sketch", str(frames / "frame_001.png"), "--strokes", str(tmp_path / "strokes.png"),
        "--reference", str(tmp_path / "reference.png"), "--method", "hints", "--out", str(out),
        "--size", "64", "--weights", str(weights),
    ])  # fmt: skip
    assert code == 0
    assert "--reference is ignored" in capsys.readouterr().out
    coloured = np.asarray(Image.open(out / "frame_001.png"))
    assert tuple(coloured[30, 75]) == (0, 180, 60), "the stroke's region has its exact colour"


def test_cli_tags_and_no_snap(weights, frames, tmp_path):
    out = tmp_path / "out"
    code = main([
        "--sketch", str(frames / "frame_001.png"), "--reference", str(tmp_path / "reference.png"),
        "--method", "tags", "--tag", "color:blue=4", "--tag", "color:red=0.5", "--no-snap",
        "--out", str(out), "--size", "64", "--weights", str(weights), "--dtype", "bf16",
    ])  # fmt: skip
    assert code == 0 and (out / "frame_001.png").is_file()


def _refused(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_cli_refuses_to_write_into_the_input_folder(frames, tmp_path, capsys):
    reference = str(tmp_path / "reference.png")
    err = _refused(
        capsys, ["--sketch", str(frames), "--reference", reference, "--out", str(frames)]
    )
    assert "is the sketches' folder" in err
    single = str(frames / "frame_001.png")
    err = _refused(capsys, ["--sketch", single, "--reference", reference, "--out", str(frames)])
    assert "is the sketches' folder" in err


def test_cli_never_overwrites_an_input_even_with_overwrite(frames, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    reference_image().save(out / "frame_001.png")  # the reference sits where an output would go
    argv = ["--sketch", str(frames), "--reference", str(out / "frame_001.png"),
            "--out", str(out), "--overwrite"]  # fmt: skip
    assert "would overwrite the input" in _refused(capsys, argv)


def test_cli_refuses_existing_outputs_unless_overwrite(weights, frames, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "frame_001.png").write_bytes(b"an earlier result")
    argv = ["--sketch", str(frames / "frame_001.png"), "--reference",
            str(tmp_path / "reference.png"), "--out", str(out), "--size", "64",
            "--weights", str(weights)]  # fmt: skip
    assert "exists; choose an empty --out folder or pass --overwrite" in _refused(capsys, argv)
    assert main([*argv, "--overwrite"]) == 0
    assert Image.open(out / "frame_001.png").size == (100, 60)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--tag", "color:blue"], "--tag must be NAME=VALUE"),
        (["--tag", "color:blue=lots"], "--tag must be NAME=VALUE"),
        (["--reference", "missing.png"], "reference: no such file"),
        (["--device", "cpu", "--dtype", "fp16"], "fp16 needs a CUDA device"),
    ],
    ids=["tag-without-value", "tag-not-a-number", "missing-reference", "fp16-on-cpu"],
)
def test_cli_bad_arguments_are_named(weights, frames, tmp_path, capsys, extra, message):
    argv = ["--sketch", str(frames), "--out", str(tmp_path / "out"), "--weights", str(weights),
            *extra]  # fmt: skip
    assert message in _refused(capsys, argv)


def test_cli_missing_sketch_folder_and_empty_folder(tmp_path, capsys):
    err = _refused(capsys, ["--sketch", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert "neither a file nor a folder" in err
    (tmp_path / "empty").mkdir()
    err = _refused(capsys, ["--sketch", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert "holds no images" in err


def test_cli_all_files_bad_exits_1(weights, tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.png").write_text("nope")
    reference_image().save(tmp_path / "reference.png")
    reference = str(tmp_path / "reference.png")
    code = main(["--sketch", str(folder), "--reference", reference, "--out", str(tmp_path / "out"),
                 "--size", "64", "--weights", str(weights)])  # fmt: skip
    assert code == 1 and "skipped a.png" in capsys.readouterr().out
