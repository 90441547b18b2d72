"""The tags (step 1), tags_mapper (step 2) and hints recipes through train/run.py.

Each tiny config trains through the real CLI (`python train/run.py` in a subprocess) on the
OpenMoji fixture prepared by the real CLI; the tagger they load is a tiny `Tagger` written by
`save_pretrained` (its weights need not be trained to test that they are loaded). Checks of
single functions (the fp32 gradient penalty, the warnings of `build`) run in this process.
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
from accelerate import Accelerator, PartialState
from PIL import Image

from colorize.models import HintsGenerator, Tagger, TagsGenerator, presets
from train import run
from train.config import load_config
from train.discriminators import build_discriminators
from train.losses import gradient_penalty
from train.methods import hints as hints_recipe
from train.methods import tags as tags_recipe
from train.methods import tags_mapper as mapper_recipe

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "train" / "configs"
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
TINY_TAGGER = {**presets("tagger", "small"), "stage_channels": [8, 16, 16, 16]}  # tagger_tiny


def _cli(config: str, out: Path, *overrides: str, launcher: tuple[str, ...] = (sys.executable,),
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess:  # fmt: skip
    """`train/run.py --config train/configs/<config>.toml` with `--set` overrides, to `out`."""
    environment = {**os.environ, "KERNELS_BACKEND": "eager", "OMP_NUM_THREADS": "1", **(env or {})}
    environment.pop("TRITON_INTERPRET", None)
    sets = [arg for override in (*overrides, "log.tracker=jsonl") for arg in ("--set", override)]
    command = [*launcher, "train/run.py", "--config", str(CONFIGS / f"{config}.toml"),
               "--output_dir", str(out), *sets]  # fmt: skip
    return subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def _metrics(run_dir: Path) -> list[dict]:
    """The per-step records of logs/metrics.jsonl (the first line holds the config)."""
    records = [json.loads(line) for line in (run_dir / "logs" / "metrics.jsonl").open()]
    return [r for r in records if "config" not in r]


def _assert_finite_losses(records: list[dict], steps: int) -> None:
    assert [r["step"] for r in records] == list(range(1, steps + 1))
    for record in records:
        losses = {k: v for k, v in record.items() if k.startswith("loss")}
        assert losses and all(math.isfinite(v) for v in losses.values()), record


def _inputs(size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    sketch = torch.rand(2, 1, size, size, generator=generator) * 2 - 1
    reference = torch.rand(2, 3, size, size, generator=generator) * 2 - 1
    return sketch, reference


@pytest.fixture(scope="module")
def tagger_folder(openmoji, tmp_path_factory) -> Path:
    """A tiny Tagger over the fixture's vocabulary, as tagger_tiny exports it."""
    vocabulary = json.loads((openmoji / "tags.json").read_text())
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("tagger") / "tagger"
    Tagger(num_tags=len(vocabulary), **TINY_TAGGER).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tags_run(openmoji, tagger_folder, tmp_path_factory) -> Path:
    """tags_tiny (step 1) trained 2 steps through the CLI; step 2 starts from its export."""
    out = tmp_path_factory.mktemp("tags_run")
    result = _cli("tags_tiny", out, f"data.path={openmoji}", f"model.tagger_path={tagger_folder}",
                  "train.steps=2", "log.every=1", "log.sample_every=2")  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


# ----------------------------------------------------------------------------------------------
# tags, step 1


def test_tags_trains_two_steps_and_exports_reloadable_weights(tags_run, tagger_folder):
    records = _metrics(tags_run)
    _assert_finite_losses(records, 2)
    assert {"loss_d", "loss_g_adv", "loss_g_l1", "loss_g_tv"} <= set(records[0])

    model = TagsGenerator.from_pretrained(tags_run / "weights" / "tags").eval()
    vocabulary = json.loads((tags_run / "weights" / "tags" / "tags.json").read_text())
    assert len(vocabulary) == model.config.num_tags  # the app's slider names
    assert model.mapper is None
    # the frozen reference encoder is the tagger of model.tagger_path, unchanged by training
    trained = Tagger.from_pretrained(tagger_folder).state_dict()
    for name, value in model.tagger.state_dict().items():
        torch.testing.assert_close(value, trained[name], rtol=0, atol=0, msg=name)
    sketch, reference = _inputs()
    with torch.no_grad():
        image = model(sketch, reference=reference).image
    assert image.shape == (2, 3, 32, 32) and image.abs().max() <= 1
    with pytest.raises(ValueError, match="no trained TagMapper"):
        model(sketch, reference=reference, tags=model.reference_tags(reference))
    with Image.open(tags_run / "samples" / "step_0000002.png") as grid:
        assert grid.size == (4 * 32, 2 * 32)  # sketch, reference, output, target


@pytest.mark.parametrize("method", ["tags", "hints"])
def test_empty_tagger_path_warns_and_keeps_a_random_frozen_tagger(
    method, openmoji, tagger_folder, caplog
):
    PartialState()  # accelerate's logger needs a state, as in a run
    overrides = [f"data.path={openmoji}", "model.tagger_path="]
    if method == "hints":  # the content loss's F2 still needs a tagger
        overrides.append(f"loss.feature_path={tagger_folder}")
    cfg = load_config(CONFIGS / f"{method}_tiny.toml", overrides)
    dataset = run.build_dataset(cfg.data, ())
    recipe = {"tags": tags_recipe, "hints": hints_recipe}[method]
    parts = recipe.build(cfg, dataset, steps_per_epoch=1)
    assert "model.tagger_path is empty" in caplog.text
    tagger = parts.models["g"].tagger
    assert tagger.architecture()["stage_channels"] == [8, 16, 16, 16]  # the tiny tagger_config
    assert not any(p.requires_grad for p in tagger.parameters())
    if method == "tags":  # tag vectors of the dataset's vocabulary, for step 2
        assert parts.models["g"].config.num_tags == len(dataset.vocabulary)


def test_tagger_path_that_is_not_a_tagger_is_a_clear_error(openmoji, tags_run, capsys):
    argv = ["--config", str(CONFIGS / "tags_tiny.toml"), "--set", f"data.path={openmoji}",
            "--set", f"model.tagger_path={tags_run / 'weights' / 'tags'}",
            "--output_dir", str(tags_run.parent / "not_a_tagger")]  # fmt: skip
    assert run.main(argv) == 2
    assert "holds a TagsGenerator, not a Tagger" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# tags_mapper, step 2


def test_tags_mapper_trains_the_mapper_and_exports_the_generator_with_it(
    tags_run, openmoji, tmp_path
):
    step1 = tags_run / "weights" / "tags"
    result = _cli("tags_mapper_tiny", tmp_path, f"data.path={openmoji}",
                  f"model.generator_path={step1}", "train.steps=2", "log.every=1",
                  "log.sample_every=2")  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = _metrics(tmp_path)
    _assert_finite_losses(records, 2)
    for record in records:
        assert record["loss"] == pytest.approx(record["loss_hybrid"] + record["loss_inv"])

    model = TagsGenerator.from_pretrained(tmp_path / "weights" / "tags").eval()
    assert (tmp_path / "weights" / "tags" / "tags.json").is_file()
    assert model.config.mapper_config["num_layers"] == 2 and model.mapper.omega is not None
    before = TagsGenerator.from_pretrained(step1).state_dict()
    after = model.state_dict()
    added = set(after) - set(before)
    assert added and all(name.startswith("mapper.") for name in added)
    for name, value in before.items():  # G frozen: every step-1 tensor exported as it was
        torch.testing.assert_close(after[name], value, rtol=0, atol=0, msg=name)

    sketch, reference = _inputs()
    with torch.no_grad():
        plain = model(sketch, reference=reference).image
        # the sliders at the reference's own values leave the codes alone: δ_b = φ(r_a), Eq. 10
        same = model(sketch, reference=reference, tags=model.reference_tags(reference)).image
        moved_tags = torch.zeros(2, model.config.num_tags)
        moved_tags[:, 0] = 5.0  # §4.4: tag values may exceed 1
        moved = model(sketch, reference=reference, tags=moved_tags).image
    torch.testing.assert_close(same, plain)
    assert (moved - plain).abs().max() > 0
    with Image.open(tmp_path / "samples" / "step_0000002.png") as grid:
        assert grid.size == (5 * 32, 2 * 32)  # sketch, r_a, r_t, G(x, δ_b), G(x, φ(r_t))


def test_tags_mapper_for_the_add_model_drops_the_inversion_loss_and_omega(
    openmoji, tagger_folder, tmp_path
):
    """M-Add (Yan et al. §3.5): the Add receiving block trains φ_map on L_hybrid alone (here
    with cls_t from the dataset's tag vectors)."""
    torch.manual_seed(0)
    generator = TagsGenerator.with_tagger(
        Tagger.from_pretrained(tagger_folder), encoder_channels=(8, 16), latent_channels=16,
        receiving_block="add",
    )  # fmt: skip
    generator.save_pretrained(tmp_path / "step1")
    cfg = load_config(CONFIGS / "tags_mapper_tiny.toml", [
        f"data.path={openmoji}", f"model.generator_path={tmp_path / 'step1'}",
        f"train.output_dir={tmp_path / 'run'}", "train.steps=1", "log.every=1",
        "log.sample_every=0", "log.tracker=jsonl", "loss.target_tags=dataset",
    ])  # fmt: skip
    run.train(cfg)
    (record,) = _metrics(tmp_path / "run")
    assert record["loss_inv"] > 0 and record["loss"] == pytest.approx(record["loss_hybrid"])
    model = TagsGenerator.from_pretrained(tmp_path / "run" / "weights" / "tags")
    assert model.mapper is not None and model.mapper.omega is None


@pytest.mark.parametrize(
    ("folder", "message"),
    [
        ("", "tags_mapper needs model.generator_path"),
        ("missing", "has no config.json"),
        ("tagger", "holds a Tagger, not a TagsGenerator"),
    ],
)
def test_tags_mapper_without_a_step1_generator_is_a_clear_error(
    folder, message, openmoji, tagger_folder, tmp_path, capsys
):
    path = {"": "", "missing": str(tmp_path / "missing"), "tagger": str(tagger_folder)}[folder]
    argv = ["--config", str(CONFIGS / "tags_mapper_tiny.toml"), "--set", f"data.path={openmoji}",
            "--set", f"model.generator_path={path}",
            "--output_dir", str(tmp_path / "run")]  # fmt: skip
    assert run.main(argv) == 2
    assert message in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# hints


def test_hints_trains_and_exports_reloadable_weights_with_the_lr_divided_halfway(
    openmoji, tagger_folder, tmp_path
):
    result = _cli("hints_tiny", tmp_path, f"data.path={openmoji}",
                  f"model.tagger_path={tagger_folder}", f"loss.feature_path={tagger_folder}",
                  "train.steps=4", "log.every=1", "log.sample_every=4", "loss.l1=0.5")  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = _metrics(tmp_path)
    _assert_finite_losses(records, 4)
    assert all(r["loss_d_gp"] > 0 and r["loss_d_drift"] > 0 for r in records)
    for r in records:  # L_G = L_cont + λ1 L_adv (+ the CPU profile's pixel L1 when loss.l1 > 0)
        parts = r["loss_g_content"] + 1e-4 * r["loss_g_adv"] + 0.5 * r["loss_g_l1"]
        assert r["loss_g"] == pytest.approx(parts, rel=1e-4)
    # the lr after each step: 1e-4 for steps 1–2, then 1e-5 (Ci et al. §4.1, 125k of 250k)
    assert [r["lr"] for r in records] == pytest.approx([1e-4, 1e-5, 1e-5, 1e-5])

    model = HintsGenerator.from_pretrained(tmp_path / "weights" / "hints").eval()
    trained = Tagger.from_pretrained(tagger_folder).state_dict()
    for name, value in model.tagger.state_dict().items():
        torch.testing.assert_close(value, trained[name], rtol=0, atol=0, msg=name)
    sketch, _ = _inputs()
    hint = torch.zeros(2, 4, 8, 8)
    with torch.no_grad():
        image = model(sketch, hint=hint).image
    assert image.shape == (2, 3, 32, 32) and image.abs().max() <= 1
    with Image.open(tmp_path / "samples" / "step_0000004.png") as grid:
        assert grid.size == (4 * 32, 2 * 32)  # sketch, hint, output, target


def test_gradient_penalty_of_a_prepared_critic_runs_in_fp32_under_bf16():
    """accelerate's prepared forward re-enters autocast; the recipe's critic call does not."""
    accelerator = Accelerator(mixed_precision="bf16", cpu=True)
    critic = build_discriminators("hints", "small", base_channels=8, cardinality=4,
                                  feature_channels=16, num_tail_stages=1)["critic"]  # fmt: skip
    critic = accelerator.prepare(critic)
    dtypes = []
    accelerator.unwrap_model(critic).score.register_forward_hook(
        lambda module, args, output: dtypes.append(args[0].dtype)
    )
    real, fake = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    features = torch.rand(2, 16, 2, 2)
    with accelerator.autocast():
        gradient_penalty(accelerator.unwrap_model(critic), real, fake, features)
        penalty = gradient_penalty(
            hints_recipe._critic_in_fp32(accelerator, critic), real, fake, features
        )
    assert dtypes == [torch.bfloat16, torch.float32]
    penalty.backward()  # double backward reaches every weight but the score's bias (∇_Ŷ drops it)
    for name, parameter in critic.named_parameters():
        assert (parameter.grad is None) == (name == "score.bias"), name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_hints_two_process_cpu_run_completes(openmoji, tagger_folder, tmp_path):
    """WGAN-GP under DDP (gloo, 2 CPU processes): the penalty calls the critic a third time,
    through its plain module, inside the critic's one backward."""
    launcher = (sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
                "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
                "--dynamo_backend", "no", "--main_process_port", str(_free_port()))  # fmt: skip
    result = _cli("hints_tiny", tmp_path, f"data.path={openmoji}",
                  f"model.tagger_path={tagger_folder}", f"loss.feature_path={tagger_folder}",
                  "train.steps=2", "log.every=1", "log.sample_every=0",
                  launcher=launcher, env={"ACCELERATE_USE_CPU": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "2 process(es)" in result.stderr
    _assert_finite_losses(_metrics(tmp_path), 2)
    assert (tmp_path / "checkpoints" / "step_0000002" / "random_states_1.pkl").is_file()
    assert (tmp_path / "weights" / "hints" / WEIGHTS_FILE).is_file()


# ----------------------------------------------------------------------------------------------
# The configs


def test_paper_configs_hold_the_paper_recipes():
    tags = load_config(CONFIGS / "tags.toml")
    assert tags.optim == tags_recipe.OptimConfig(lr_g=1e-4, lr_d=1e-4, betas=(0.5, 0.99))
    assert tags.loss == tags_recipe.LossConfig(adv=1, l1=100, tv=1e-4)  # Yan et al. Eq. (1)
    assert (tags.train.batch_size, tags.data.size) == (32, 384)  # §4.1
    assert tags.model.tagger_path == "runs/tagger/weights/tagger"

    mapper = load_config(CONFIGS / "tags_mapper.toml")
    assert mapper.optim == mapper_recipe.OptimConfig(lr=1e-4, betas=(0.5, 0.99))
    assert mapper.loss == mapper_recipe.LossConfig(hybrid=1, inversion=1, target_tags="tagger")
    assert (mapper.train.batch_size, mapper.data.size) == (32, 384)
    assert mapper.model.generator_path == "runs/tags/weights/tags"  # step 1's export

    hints = load_config(CONFIGS / "hints.toml")
    assert hints.optim == hints_recipe.OptimConfig(lr_g=1e-4, lr_d=1e-4, betas=(0.5, 0.9),
                                                   decay_at=0.5, decay_factor=0.1)  # fmt: skip
    assert (hints.loss.content, hints.loss.adv, hints.loss.gp, hints.loss.drift) == (
        1, 1e-4, 10, 1e-3)  # Ci et al. Eq. (2), (7)  # fmt: skip
    assert hints.loss == hints_recipe.LossConfig()  # the file and the recipe's defaults agree
    assert hints.loss.l1 == 0  # the pixel L1 is the CPU profile's addition, not the paper's
    assert (hints.train.batch_size, hints.train.steps, hints.data.size) == (4, 250_000, 512)
    assert hints.model.tagger_path == "runs/tagger/weights/tagger"

    for cfg in (tags, mapper, hints):
        assert cfg.model.size == "paper" and not cfg.model.overrides
        assert cfg.train.output_dir == f"runs/{cfg.method}"
        tiny = load_config(CONFIGS / f"{cfg.method}_tiny.toml")
        assert (tiny.data.size, tiny.train.batch_size, tiny.model.size) == (32, 2, "small")
