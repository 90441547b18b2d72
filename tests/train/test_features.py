"""FeatureNetwork: from a saved tagger, from torchvision-format VGG weights, and frozen-ness."""

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from colorize.models import Tagger
from colorize.models.tagger import PRESETS as TAGGER_PRESETS
from train.features import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LAYER_PRESETS,
    FeatureNetwork,
    VGGFeatures,
    vgg_layer_names,
)
from train.losses import contextual_loss, perceptual_loss, style_loss

SIZE = 32  # the small tagger's deepest stage has stride 16; VGG's relu5_x are at 1/16


def _tagger() -> Tagger:
    torch.manual_seed(0)
    tagger = Tagger(num_tags=8, **TAGGER_PRESETS["small"])
    # non-trivial BN statistics, so eval mode and train mode give different features
    with torch.no_grad():
        tagger.train()(torch.rand(4, 3, SIZE, SIZE) * 2 - 1)
    return tagger.eval()


def _image(batch: int = 2, channels: int = 3) -> torch.Tensor:
    return torch.rand(batch, channels, SIZE, SIZE) * 2 - 1


def _torchvision_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """Random weights under torchvision's keys: `features.N.*` for each conv plus a classifier."""
    torch.manual_seed(1)
    state = {}
    index, in_channels = 0, 3
    for name in vgg_layer_names(arch):
        if name.startswith("conv"):
            width = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}[int(name[4])]
            state[f"features.{index}.weight"] = torch.randn(width, in_channels, 3, 3) * 0.05
            state[f"features.{index}.bias"] = torch.randn(width) * 0.01
            in_channels = width
        index += 1
    state["classifier.0.weight"] = torch.randn(4, 8)  # ignored: only `features` is used
    return state


@pytest.fixture(scope="module")
def vgg19_files(tmp_path_factory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("vgg19")
    state = _torchvision_state_dict("vgg19")
    save_file(state, str(folder / "vgg19.safetensors"))
    torch.save(state, folder / "vgg19.pth")
    return {
        "state": state,
        "safetensors": folder / "vgg19.safetensors",
        "pth": folder / "vgg19.pth",
    }


# ----------------------------------------------------------------------------------------------
# Tagger


def test_from_tagger_module_returns_the_tagger_features_of_the_preset_layers():
    tagger = _tagger()
    phi = FeatureNetwork.from_tagger(tagger)
    image = _image()
    features = phi(image)
    assert tuple(features) == LAYER_PRESETS["tagger"]["perceptual"]
    with torch.no_grad():
        expected = tagger.features(image, list(features))
    for name, value in features.items():
        torch.testing.assert_close(value, expected[name])
    assert features["stage4"].shape == (
        2,
        tagger.feature_channels["stage4"],
        SIZE // 16,
        SIZE // 16,
    )
    # the caller's tagger is copied, not frozen in place
    assert all(p.requires_grad for p in tagger.parameters())


def test_from_tagger_folder_written_by_save_pretrained(tmp_path):
    tagger = _tagger()
    tagger.save_pretrained(tmp_path / "tagger")
    layers = LAYER_PRESETS["tagger"]["contextual"]
    phi = FeatureNetwork.from_config("tagger", path=tmp_path / "tagger", layers=layers)
    image = _image()
    with torch.no_grad():
        expected = tagger.features(image, list(layers))
    features = phi(image)
    assert tuple(features) == layers
    for name in layers:
        torch.testing.assert_close(features[name], expected[name])
    assert phi.presets("contextual") == layers


def test_grey_image_equals_its_three_channel_repeat():
    phi = FeatureNetwork.from_tagger(_tagger(), layers=["stage2"])
    grey = _image(channels=1)
    torch.testing.assert_close(phi(grey)["stage2"], phi(grey.repeat(1, 3, 1, 1))["stage2"])


def test_frozen_no_weight_grads_eval_always_but_input_gets_gradients():
    phi = FeatureNetwork.from_tagger(_tagger())
    phi.train()
    assert not phi.training and not any(m.training for m in phi.modules())
    assert not any(p.requires_grad for p in phi.parameters())
    buffers = {k: v.clone() for k, v in phi.state_dict().items()}
    image = _image().requires_grad_(True)
    loss = sum(f.square().mean() for f in phi(image).values())
    loss.backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert all(p.grad is None for p in phi.parameters())
    for name, value in phi.state_dict().items():  # BN running statistics untouched
        torch.testing.assert_close(value, buffers[name], msg=name)


def test_from_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="needs a path"):
        FeatureNetwork.from_config("tagger")
    with pytest.raises(ValueError, match="local torchvision vgg19 weights file"):
        FeatureNetwork.from_config("vgg19", path=None)
    with pytest.raises(ValueError, match="does not exist"):
        FeatureNetwork.from_config("vgg16", path=tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="no config.json"):
        FeatureNetwork.from_config("tagger", path=tmp_path)
    with pytest.raises(ValueError, match="unknown feature network kind 'resnet'"):
        FeatureNetwork.from_config("resnet", path=tmp_path)
    with pytest.raises(ValueError, match="unknown layers"):
        FeatureNetwork.from_tagger(_tagger(), layers=["relu1_1"])


# ----------------------------------------------------------------------------------------------
# VGG


def test_vgg_layer_names_follow_torchvision_indices():
    names = vgg_layer_names("vgg19")
    assert len(names) == 37 and len(vgg_layer_names("vgg16")) == 31
    assert names[:5] == ("conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1")
    assert names.index("relu5_4") == 35 and names.index("conv5_4") == 34
    assert vgg_layer_names("vgg16").index("relu4_3") == 22  # Johnson et al.'s features.22
    assert [k for k in VGGFeatures("vgg16").state_dict()][-1] == "features.28.bias"


def _reference_vgg(state: dict[str, torch.Tensor], image: torch.Tensor, upto: str) -> torch.Tensor:
    """Plain functional VGG-19 up to layer `upto` on an image in [-1, 1]."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    x = ((image + 1) / 2 - mean) / std
    for index, name in enumerate(vgg_layer_names("vgg19")):
        if name.startswith("conv"):
            w, b = state[f"features.{index}.weight"], state[f"features.{index}.bias"]
            x = F.conv2d(x, w, b, padding=1)
        elif name.startswith("relu"):
            x = F.relu(x)
        else:
            x = F.max_pool2d(x, 2)
        if name == upto:
            return x
    raise AssertionError(upto)


@pytest.mark.parametrize("file", ["safetensors", "pth"])
def test_vgg19_from_a_local_torchvision_file_matches_a_functional_reference(vgg19_files, file):
    phi = FeatureNetwork.from_config("vgg19", path=vgg19_files[file])
    assert phi.layers == LAYER_PRESETS["vgg19"]["perceptual"]
    image = _image()
    features = phi(image, layers=["relu1_1", "relu3_2", "relu5_4"])
    assert features["relu5_4"].shape == (2, 512, SIZE // 16, SIZE // 16)
    for name in ("relu1_1", "relu3_2", "relu5_4"):
        expected = _reference_vgg(vgg19_files["state"], image, name)
        torch.testing.assert_close(features[name], expected, rtol=1e-4, atol=1e-5)
    assert not any(p.requires_grad for p in phi.parameters())


def test_vgg_input_gets_gradients_and_bf16_autocast_runs(vgg19_files):
    phi = FeatureNetwork.from_vgg(vgg19_files["safetensors"], "vgg19", layers=["relu2_2"])
    image = _image(batch=1, channels=1).requires_grad_(True)
    phi(image)["relu2_2"].mean().backward()
    assert image.grad.abs().sum() > 0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = phi(image.detach())["relu2_2"]
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


def test_vgg_weights_of_the_wrong_depth_or_keys_are_rejected(vgg19_files, tmp_path):
    with pytest.raises(
        ValueError,
        match=r"not torchvision vgg16 weights \(another VGG depth\?\).*unexpected keys \['features",
    ):
        FeatureNetwork.from_config("vgg16", path=vgg19_files["safetensors"])
    partial = {k: v for k, v in vgg19_files["state"].items() if not k.startswith("features.34")}
    save_file(partial, str(tmp_path / "partial.safetensors"))
    with pytest.raises(
        ValueError, match=r"missing keys \['features.34.bias', 'features.34.weight'\]"
    ):
        FeatureNetwork.from_config("vgg19", path=tmp_path / "partial.safetensors")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="expected a state dict"):
        FeatureNetwork.from_config("vgg19", path=tmp_path / "list.pth")


def test_losses_on_tagger_features_reach_the_output_image_only():
    phi = FeatureNetwork.from_tagger(_tagger())
    target = _image()
    output = target.clone().requires_grad_(True)
    with torch.no_grad():
        real = phi(target)
    fake = phi(output)
    assert perceptual_loss(fake, real).item() == 0.0
    assert style_loss(fake, real).item() == 0.0
    assert contextual_loss(fake, real, layers=phi.presets("contextual")).item() < 1e-3
    (perceptual_loss(phi(output + 0.1), real) + style_loss(fake, phi(-target))).backward()
    assert output.grad.abs().sum() > 0
    assert all(p.grad is None for p in phi.parameters())
