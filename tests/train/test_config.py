"""train.config: TOML configs in frozen dataclasses, typed `--set` overrides, clear errors."""

from dataclasses import replace
from pathlib import Path

import pytest

from train.config import (
    apply_override,
    default_config,
    differences,
    hyperparameters,
    load_config,
    to_toml,
)
from train.data import SampleOptions
from train.methods import METHODS

CONFIGS = Path(__file__).resolve().parents[2] / "train" / "configs"


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.toml")))
def test_every_shipped_config_loads_with_its_method_sections(name):
    cfg = load_config(CONFIGS / f"{name}.toml")
    recipe = METHODS[cfg.method]
    assert cfg.method == name.removesuffix("_tiny").removesuffix("_cpu")
    assert isinstance(cfg.optim, recipe.OptimConfig)
    assert isinstance(cfg.loss, recipe.LossConfig)
    assert isinstance(cfg.data.options, SampleOptions)


def test_sga_config_holds_cao_et_al_recipe():
    cfg = load_config(CONFIGS / "sga.toml")
    assert (cfg.loss.adv, cfg.loss.l1, cfg.loss.perceptual, cfg.loss.style) == (1, 30, 0.01, 50)
    assert (cfg.optim.lr_g, cfg.optim.lr_d, cfg.optim.betas) == (1e-4, 2e-4, (0.5, 0.999))
    assert (cfg.train.batch_size, cfg.train.steps, cfg.data.size) == (16, 250_000, 256)
    assert cfg.model.size == "paper"
    # the file restates the paper defaults of the recipe's dataclasses
    assert cfg.loss == METHODS["sga"].LossConfig()
    assert cfg.optim == METHODS["sga"].OptimConfig()


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*_cpu.toml")))
def test_cpu_profiles_train_the_small_preset_at_128_px_with_the_paper_losses(name):
    """The committed weights' recipes: small, 128 px, the paper's loss weights and optimiser
    (the documented exceptions: hints' pixel L1, hint density and decay point)."""
    cfg = load_config(CONFIGS / f"{name}.toml")
    paper = load_config(CONFIGS / f"{cfg.method}.toml")
    assert (cfg.model.size, cfg.data.size, cfg.data.split) == ("small", 128, "train")
    # the tagger's run is the one the other recipes read (runs/tagger/weights/tagger)
    assert cfg.train.output_dir == ("runs/tagger" if cfg.method == "tagger" else f"runs/{name}")
    assert 1000 <= cfg.train.steps * cfg.train.batch_size <= 200_000  # sized for ~100 minutes
    if cfg.method == "hints":
        assert cfg.loss.l1 > 0 == paper.loss.l1
        assert replace(cfg.loss, l1=0.0) == paper.loss
        assert replace(cfg.optim, decay_at=paper.optim.decay_at) == paper.optim
    else:
        # the profiles trained after the tagger was committed read it from weights/tagger
        if getattr(cfg.loss, "feature_path", None) == "weights/tagger":
            cfg = replace(cfg, loss=replace(cfg.loss, feature_path=paper.loss.feature_path))
        assert cfg.loss == paper.loss
        assert cfg.optim == paper.optim
    assert cfg.train.mixed_precision in ("no", "auto")  # never bf16 where it is emulated
    assert "Sized" in (CONFIGS / f"{name}.toml").read_text() or "sized" in (
        CONFIGS / f"{name}.toml").read_text()  # says what it was sized for


def test_tiny_configs_are_cpu_smoke_runs():
    for name in ("tagger_tiny", "sga_tiny"):
        cfg = load_config(CONFIGS / f"{name}.toml")
        assert 32 <= cfg.data.size <= 64 and cfg.train.batch_size == 2
        assert cfg.model.size == "small" and cfg.model.overrides


def test_overrides_are_typed_and_reach_nested_sections_and_tables():
    cfg = load_config(
        CONFIGS / "sga_tiny.toml",
        [
            "optim.lr_g=2e-4",
            "optim.lr_d=1",  # an int where a float is expected is fine
            "optim.betas=[0.9, 0.99]",
            "train.steps=7",
            "train.ema=true",
            "data.path=some/folder",  # a bare string
            "data.options.tps_strength=0.25",
            "model.overrides.num_res_blocks=2",
            "model.discriminator_overrides={ base_channels = 4 }",
        ],
    )
    assert cfg.optim.lr_g == 2e-4 and cfg.optim.lr_d == 1.0 and isinstance(cfg.optim.lr_d, float)
    assert cfg.optim.betas == (0.9, 0.99)
    assert cfg.train.steps == 7 and cfg.train.ema is True
    assert cfg.data.path == "some/folder"
    assert cfg.data.options.tps_strength == 0.25
    assert cfg.model.overrides == {"block_out_channels": [8, 16, 16], "num_res_blocks": 2}
    assert cfg.model.discriminator_overrides == {"base_channels": 4}


def test_a_string_key_keeps_text_that_looks_like_a_number():
    cfg = apply_override(default_config("tagger"), "train.output_dir=2024")
    assert cfg.train.output_dir == "2024"


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        pytest.param("optim.lr=1e-3", "unknown key 'lr'", id="unknown-key"),
        pytest.param("optimizer.lr_g=1e-3", "unknown key 'optimizer'", id="unknown-section"),
        pytest.param("train.steps=1.5", "expected int, got float", id="float-for-int"),
        pytest.param("train.steps=true", "expected int, got bool", id="bool-for-int"),
        pytest.param("train.ema=yes", "expected bool, got str", id="str-for-bool"),
        pytest.param("optim.betas=[0.5]", "expected tuple", id="short-tuple"),
        pytest.param("train.mixed_precision=fp8", "mixed_precision must be one of", id="choice"),
        pytest.param("train.steps=0", "steps must be > 0", id="range"),
        pytest.param("data=1", "name a key inside [data]", id="section-only"),
        pytest.param("data.options=1", "'options' is a section", id="set-a-section"),
        pytest.param("method=tagger", "method is fixed", id="method"),
        pytest.param("train.steps", "expected section.key=value", id="no-equals"),
        pytest.param("loss.feature_net=vgg16", "feature_net must be", id="recipe-check"),
    ],
)
def test_bad_overrides_name_the_key(assignment, message):
    with pytest.raises(ValueError, match="--set") as info:
        apply_override(default_config("sga"), assignment)
    assert message in str(info.value)


def test_bad_files_name_the_file_section_and_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('method = "sga"\n[optim]\nlr_g = 1e-4\nmomentum = 0.9\n')
    with pytest.raises(ValueError, match=r"bad.toml: \[optim\]: unknown key\(s\) \['momentum'\]"):
        load_config(path)
    path.write_text('method = "sga"\n[train]\nsteps = "ten"\n')
    with pytest.raises(ValueError, match=r"\[train\] steps: expected int, got str 'ten'"):
        load_config(path)
    path.write_text('method = "gan"\n')
    with pytest.raises(ValueError, match="unknown method 'gan'"):
        load_config(path)
    path.write_text("[train]\nsteps = 1\n")
    with pytest.raises(ValueError, match="missing the top-level key `method`"):
        load_config(path)
    path.write_text('method = "sga"\n[trian]\nsteps = 1\n')
    with pytest.raises(ValueError, match=r"unknown top-level key\(s\) \['trian'\]"):
        load_config(path)
    path.write_text('method = "sga"\n[train\n')
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_differences_list_exactly_the_changed_keys():
    base = load_config(CONFIGS / "sga.toml")
    cfg = load_config(CONFIGS / "sga.toml", ["optim.lr_g=3e-4", "model.overrides.x=1"])
    assert differences(cfg, base) == [
        "model.overrides: {} -> {'x': 1}",
        "optim.lr_g: 0.0001 -> 0.0003",
    ]
    assert "train.output_dir: 'runs/run' -> 'runs/sga'" in differences(base, default_config("sga"))


def test_saved_config_reads_back_equal(tmp_path):
    cfg = load_config(CONFIGS / "sga_tiny.toml", ["loss.style=nan", 'data.path=dir with "quotes"'])
    path = tmp_path / "config.toml"
    path.write_text(to_toml(cfg))
    again = load_config(path)
    assert differences(again, cfg) == []
    assert again.model.overrides == cfg.model.overrides


def test_hyperparameters_are_flat_scalars():
    values = hyperparameters(load_config(CONFIGS / "sga_tiny.toml"))
    assert values["optim.lr_g"] == 1e-4 and values["data.options.tps_grid"] == 4
    assert values["optim.betas"] == "[0.5, 0.999]"
    assert all(isinstance(v, (int, float, str, bool)) for v in values.values())
