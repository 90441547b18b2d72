"""train/run.py end to end on the tiny configs and a tiny OpenMoji folder prepared by the real CLI.

The CLI runs (`python train/run.py`, `accelerate launch`) are real subprocesses; the longer
checks call `train.run.train` in this process. Tiny models run the eager kernels on one
thread, which is several times faster than two threads for them on a shared 2-core machine.
"""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from colorize.models import SGAGenerator, Tagger
from train import run
from train.config import load_config

REPO = Path(__file__).resolve().parents[2]
TAGGER_TINY = REPO / "train" / "configs" / "tagger_tiny.toml"
SGA_TINY = REPO / "train" / "configs" / "sga_tiny.toml"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"


def _cli(*args, launcher: tuple[str, ...] = (sys.executable,),
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    environment = {**os.environ, "KERNELS_BACKEND": "eager", "OMP_NUM_THREADS": "1", **(env or {})}
    environment.pop("TRITON_INTERPRET", None)
    command = [*launcher, "train/run.py", *map(str, args), "--set", "log.tracker=jsonl"]
    return subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def _metrics(run_dir: Path) -> list[dict]:
    """The per-step records of logs/metrics.jsonl (each start or resume first logs the config)."""
    lines = (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert "config" in records[0]
    return [r for r in records if "config" not in r]


def _tiny(config: Path, data: Path, out: Path, *overrides: str):
    """A tiny config on `data` writing to `out`, logging to JSON lines even with tensorboard."""
    defaults = [f"data.path={data}", f"train.output_dir={out}", "log.tracker=jsonl"]
    return load_config(config, [*defaults, *overrides])


@pytest.fixture(scope="module")
def tagger_run(openmoji, tmp_path_factory) -> Path:
    """tagger_tiny trained 2 steps through the CLI; its weights are the sga feature network."""
    out = tmp_path_factory.mktemp("tagger_run")
    result = _cli(
        "--config", TAGGER_TINY, "--set", f"data.path={openmoji}",
        "--set", "train.steps=2", "--set", "log.every=1", "--output_dir", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


# ----------------------------------------------------------------------------------------------
# Both recipes through the CLI


def test_tagger_trains_two_steps_and_exports_reloadable_weights(tagger_run):
    records = _metrics(tagger_run)
    assert [r["step"] for r in records] == [1, 2]
    for record in records:
        assert all(math.isfinite(record[k]) for k in ("loss", "loss_color", "loss_sketch"))
    folder = tagger_run / "weights" / "tagger"
    assert (folder / WEIGHTS_FILE).is_file()
    tagger = Tagger.from_pretrained(folder)
    vocabulary = json.loads((folder / "tags.json").read_text())
    assert tagger.config.num_tags == len(vocabulary) > 0
    assert tagger.config.stage_channels == [8, 16, 16, 16]
    # the export is the trained model: the same tensors as the final checkpoint's
    checkpoint = load_file(tagger_run / "checkpoints" / "step_0000002" / "model.safetensors")
    for name, value in tagger.state_dict().items():
        torch.testing.assert_close(value, checkpoint[name], rtol=0, atol=0)
    assert load_config(tagger_run / "config.toml").train.steps == 2


def test_sga_trains_two_steps_and_exports_reloadable_weights(tagger_run, openmoji, tmp_path):
    result = _cli(
        "--config", SGA_TINY, "--output_dir", tmp_path,
        "--set", f"data.path={openmoji}",
        "--set", f"loss.feature_path={tagger_run / 'weights' / 'tagger'}",
        "--set", "train.steps=2", "--set", "log.every=1", "--set", "log.sample_every=2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "step 2 | loss_d" in result.stderr and "ms/it | lr 1.0e-04" in result.stderr
    assert "train.steps: 100000 -> 2" in result.stderr  # what differs from the defaults
    records = _metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2]
    names = ["loss_d_real", "loss_d_fake", "loss_g_adv", "loss_g_l1", "loss_g_perceptual",
             "loss_g_style"]  # fmt: skip
    assert all(math.isfinite(r[name]) for r in records for name in names)

    model = SGAGenerator.from_pretrained(tmp_path / "weights" / "sga").eval()
    sketch, reference = torch.rand(1, 1, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        image = model(sketch, reference=reference).image
    assert image.shape == (1, 3, 32, 32) and image.abs().max() <= 1
    # sample grid: 2 rows (log.num_samples) × (sketch, reference, output, target) at 32 px
    with Image.open(tmp_path / "samples" / "step_0000002.png") as grid:
        assert grid.size == (4 * 32, 2 * 32)


# ----------------------------------------------------------------------------------------------
# Loop behaviour (in process)


def test_sga_l1_to_target_goes_down_in_50_steps(tagger_run, openmoji, tmp_path):
    cfg = _tiny(SGA_TINY, openmoji, tmp_path,
                f"loss.feature_path={tagger_run / 'weights' / 'tagger'}",
                "train.steps=50", "log.every=1", "log.sample_every=0",
                "train.checkpoint_every=50")  # fmt: skip
    run.train(cfg)
    l1 = [r["loss_g_l1"] for r in _metrics(tmp_path)]
    assert len(l1) == 50
    first, last = sum(l1[:10]) / 10, sum(l1[-10:]) / 10
    assert last < 0.9 * first, (first, last)


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(
    tagger_run,
    openmoji,
    tmp_path,
):
    """3 + 3 steps with a stop and `--resume latest` in between = 6 steps straight, with 2
    batches per step (gradient accumulation), EMA on, and an epoch boundary (8 batches of 2
    images per epoch) in the resumed half."""
    common = [f"loss.feature_path={tagger_run / 'weights' / 'tagger'}", "log.sample_every=0",
              "train.gradient_accumulation_steps=2", "train.ema=true", "train.ema_decay=0.5",
              "train.checkpoint_every=1", "train.keep_checkpoints=2", "log.every=1"]  # fmt: skip
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    run.train(_tiny(SGA_TINY, openmoji, straight, *common, "train.steps=6"))
    run.train(_tiny(SGA_TINY, openmoji, stopped, *common, "train.steps=3"))
    progress = json.loads((stopped / "checkpoints" / "step_0000003" / "progress.json").read_text())
    seconds = progress.pop("seconds")  # training time so far, summed over resumes
    assert seconds > 0 and progress == {"step": 3, "epoch": 0, "batch": 6}
    run.train(_tiny(SGA_TINY, openmoji, stopped, *common, "train.steps=6"), resume="latest")
    summary = json.loads((stopped / run.SUMMARY_FILE).read_text())
    assert summary["steps"] == 6 and summary["seconds"] > seconds

    assert [r["step"] for r in _metrics(stopped)] == [1, 2, 3, 4, 5, 6]
    assert sorted(p.name for p in (stopped / "checkpoints").iterdir()) == [
        "step_0000005", "step_0000006"]  # fmt: skip
    for name in ("model.safetensors", "model_1.safetensors"):  # G and D with their BN/SN buffers
        a = load_file(straight / "checkpoints" / "step_0000006" / name)
        b = load_file(stopped / "checkpoints" / "step_0000006" / name)
        assert a.keys() == b.keys()
        for key in a:
            torch.testing.assert_close(b[key], a[key], rtol=0, atol=1e-6, msg=f"{name} {key}")
    exported = [load_file(p / "weights" / "sga" / WEIGHTS_FILE) for p in (straight, stopped)]
    for key in exported[0]:
        torch.testing.assert_close(exported[1][key], exported[0][key], rtol=0, atol=1e-6)


def test_nan_loss_stops_the_run_naming_loss_and_step_after_saving_state(
    openmoji,
    tmp_path,
):
    cfg = _tiny(TAGGER_TINY, openmoji, tmp_path, "loss.sketch=nan", "train.steps=5")
    with pytest.raises(run.NonFiniteLossError, match=r"^loss is nan at step 1; training state"):
        run.train(cfg)
    saved = tmp_path / "checkpoints" / "step_0000001-nonfinite"
    assert (saved / "model.safetensors").is_file() and (saved / "progress.json").is_file()
    assert run.checkpoints(tmp_path) == []  # never picked by --resume latest


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_run_has_finite_losses(tagger_run, openmoji, tmp_path, precision, caplog):
    """bf16 runs under CPU autocast; fp16 needs a GPU (GradScaler), so accelerate computes it
    in fp32 on a CPU and the run says so."""
    cfg = _tiny(SGA_TINY, openmoji, tmp_path, f"train.mixed_precision={precision}",
                f"loss.feature_path={tagger_run / 'weights' / 'tagger'}", "train.steps=2",
                "train.max_grad_norm=1.0", "log.every=1", "log.sample_every=2")  # fmt: skip
    run.train(cfg)
    records = _metrics(tmp_path)
    assert len(records) == 2
    assert all(math.isfinite(v) for r in records for k, v in r.items() if k.startswith("loss"))
    assert ("fp16 mixed precision needs a GPU" in caplog.text) == (precision == "fp16")


@pytest.mark.parametrize("native", [False, True])
def test_auto_precision_is_bf16_only_where_the_device_computes_it_natively(monkeypatch, native):
    monkeypatch.setattr(run, "native_bf16", lambda device: native)
    cpu = torch.device("cpu")
    assert run.resolve_precision("auto", cpu) == ("bf16" if native else "no")
    assert [run.resolve_precision(p, cpu) for p in ("no", "fp16", "bf16")] == ["no", "fp16", "bf16"]


def test_bf16_on_a_cpu_without_native_bf16_is_warned_about(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(run, "native_bf16", lambda device: False)
    warning = run.emulated_bf16("bf16", cpu)
    assert "is emulated" in warning and '"auto"' in warning
    assert run.emulated_bf16("no", cpu) is None
    monkeypatch.setattr(run, "native_bf16", lambda device: True)
    assert run.emulated_bf16("bf16", cpu) is None


def test_auto_precision_run_records_what_it_resolved_to(tagger_run, openmoji, tmp_path):
    cfg = _tiny(SGA_TINY, openmoji, tmp_path, "train.mixed_precision=auto", "train.steps=1",
                f"loss.feature_path={tagger_run / 'weights' / 'tagger'}", "log.sample_every=0")
    run.train(cfg)
    summary = json.loads((tmp_path / run.SUMMARY_FILE).read_text())
    expected = "bf16" if run.native_bf16(torch.device("cpu")) else "no"
    assert summary["mixed_precision"] == expected
    assert 'mixed_precision = "auto"' in (tmp_path / "config.toml").read_text()


def test_fp16_with_accumulation_and_two_optimizers_is_refused(tagger_run, openmoji, tmp_path):
    cfg = _tiny(SGA_TINY, openmoji, tmp_path, "train.mixed_precision=fp16",
                "train.gradient_accumulation_steps=2",
                f"loss.feature_path={tagger_run / 'weights' / 'tagger'}")  # fmt: skip
    with pytest.raises(ValueError, match="share one GradScaler"):
        run.train(cfg)


def test_cli_reports_bad_input_as_one_message_and_exit_code_2(tmp_path, capsys):
    assert run.main(["--config", str(SGA_TINY), "--set", "optim.lr=1"]) == 2
    assert "error: --set optim.lr=1: unknown key 'lr'" in capsys.readouterr().err
    missing = tmp_path / "no_dataset"
    argv = ["--config", str(SGA_TINY), "--set", f"data.path={missing}", "--output_dir",
            str(tmp_path / "run")]  # fmt: skip
    assert run.main(argv) == 2
    assert f"error: {missing} is not a prepared OpenMoji folder" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Two processes


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_cpu_run_completes(tagger_run, openmoji, tmp_path):
    """`accelerate launch` starts two DDP processes (torchrun, gloo on CPU: accelerate's own
    `--cpu` flag launches a single process, ACCELERATE_USE_CPU=1 makes each process a CPU rank)."""
    launcher = (sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                "--dynamo_backend", "no", "--main_process_port", str(_free_port()))  # fmt: skip
    result = _cli(
        "--config", SGA_TINY, "--output_dir", tmp_path,
        "--set", f"data.path={openmoji}",
        "--set", f"loss.feature_path={tagger_run / 'weights' / 'tagger'}",
        "--set", "train.steps=3", "--set", "log.every=1",
        launcher=launcher, env={"ACCELERATE_USE_CPU": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "2 process(es)" in result.stderr
    assert [r["step"] for r in _metrics(tmp_path)] == [1, 2, 3]
    assert (tmp_path / "checkpoints" / "step_0000003" / "random_states_1.pkl").is_file()
    assert (tmp_path / "weights" / "sga" / WEIGHTS_FILE).is_file()
