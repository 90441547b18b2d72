"""`python -m train.speed`: the real loop, timed per speed option, on the tiny tagger config."""

from pathlib import Path

from train import speed

CONFIG = Path(__file__).resolve().parents[2] / "train" / "configs" / "tagger_tiny.toml"


def test_speed_table_compares_variants_of_the_real_loop(openmoji, tmp_path, capsys):
    out = tmp_path / "speed.md"
    code = speed.main(["--config", str(CONFIG), "--variant", "fp32", "--variant", "channels_last",
                       "--variant", "bf16", "--steps", "3", "--warmup", "1",
                       "--set", f"data.path={openmoji}", "--out", str(out)])  # fmt: skip
    assert code == 0, capsys.readouterr()
    table = out.read_text()
    assert "| fp32 | " in table and "| 1.00× |" in table
    assert "| channels_last | " in table and "| bf16 | " in table


def test_every_variant_sets_every_speed_option():
    """A config's own choice (a cpu profile's "auto" precision, its channels_last) must not
    leak into the variant named for its absence: the fp32 row once timed a profile's bf16."""
    for name, overrides in speed.VARIANTS.items():
        keys = {override.split("=")[0] for override in overrides}
        assert {"train.mixed_precision", "train.channels_last"} <= keys, name
    assert "train.mixed_precision=no" in speed.VARIANTS["fp32"]


def test_failing_variant_is_reported_not_hidden(tmp_path, capsys):
    code = speed.main(["--config", str(CONFIG), "--variant", "fp32", "--steps", "3",
                       "--warmup", "1", "--set", f"data.path={tmp_path / 'missing'}"])  # fmt: skip
    assert code == 1
    assert "| fp32 | failed: " in capsys.readouterr().out
