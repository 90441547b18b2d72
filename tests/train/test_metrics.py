"""Each metric of train.metrics against a known answer: hand-computed cases, published test
data (CIEDE2000), closed forms (Fréchet distance of Gaussians) and brute-force references."""

import math
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from safetensors.torch import save_file

from train.metrics import (
    LPIPS,
    MS_SSIM_WEIGHTS,
    SSIM_K1,
    InceptionFeatures,
    NDBBins,
    delta_e76,
    delta_e2000,
    fid_from_features,
    finite_mean,
    frechet_distance,
    jensen_shannon,
    masked_delta_e,
    ms_ssim,
    ms_ssim_scales,
    mse,
    proportion_z,
    psnr,
    psnr_of_mse,
    skin_mask,
    srgb_to_lab,
    ssim,
    to_unit,
)

# ---------------------------------------------------------------------------------------------
# PSNR, SSIM, MS-SSIM


def test_psnr_of_identical_images_is_infinite():
    x = torch.rand(2, 3, 16, 16)
    assert torch.isinf(psnr(x, x.clone())).all()


def test_psnr_hand_computed():
    x = torch.zeros(2, 3, 4, 4)
    y = x.clone()
    y[0] += 0.1  # MSE 0.01 -> 20 dB
    y[1, :, :2] = 0.5  # half the pixels off by 0.5: MSE 0.125 -> 10·log10(8) dB
    torch.testing.assert_close(psnr(x, y), torch.tensor([20.0, 10 * math.log10(8)]).double())


def test_psnr_of_a_set_is_that_of_its_mean_mse():
    x = torch.zeros(2, 3, 4, 4)
    y = x.clone()
    y[1] += 0.2  # MSE 0 and 0.04: the mean 0.02 gives 10·log10(50) dB, not +inf
    assert psnr_of_mse(mse(x, y).mean()).item() == pytest.approx(10 * math.log10(50))
    assert torch.isinf(psnr_of_mse(0.0))


def test_to_unit_maps_model_range_onto_the_8_bit_grid():
    x = torch.tensor([-1.0, 0.0, 1.0, 2.0]).view(1, 1, 1, 4)
    torch.testing.assert_close(to_unit(x).flatten(), torch.tensor([0, 128 / 255, 1, 1]).double())


def test_ssim_of_identical_images_is_one():
    x = torch.rand(2, 3, 24, 24)
    torch.testing.assert_close(ssim(x, x.clone()), torch.ones(2).double())
    torch.testing.assert_close(ms_ssim(x, x.clone()), torch.ones(2).double())


def test_ssim_of_constant_images_is_the_luminance_term():
    a, b = 0.2, 0.6
    c1 = (SSIM_K1 * 1.0) ** 2
    expected = (2 * a * b + c1) / (a**2 + b**2 + c1)  # σ = 0: the contrast-structure term is 1
    x = torch.full((1, 3, 16, 16), a, dtype=torch.float64)
    y = torch.full((1, 3, 16, 16), b, dtype=torch.float64)
    torch.testing.assert_close(ssim(x, y), torch.tensor([expected]).double())


def _brute_force_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Direct Wang et al. SSIM of one channel with an explicit 2-D Gaussian per window."""
    coords = np.arange(11) - 5
    g = np.exp(-(coords**2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (window * px).sum(), (window * py).sum()
            vx = (window * (px - mx) ** 2).sum()
            vy = (window * (py - my) ** 2).sum()
            cov = (window * (px - mx) * (py - my)).sum()
            values.append(
                ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
            )
    return float(np.mean(values))


def test_ssim_matches_a_brute_force_window_by_window_computation():
    x = torch.rand(1, 1, 14, 15, dtype=torch.float64)
    y = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    expected = _brute_force_ssim(x[0, 0].numpy(), y[0, 0].numpy())
    assert ssim(x, y).item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize(
    ("side", "scales"),
    [(11, 1), (21, 1), (22, 2), (32, 2), (64, 3), (128, 4), (175, 4), (176, 5), (512, 5)],
)
def test_ms_ssim_scales_keep_the_window_inside_the_coarsest_scale(side, scales):
    assert ms_ssim_scales(side) == scales


def test_ms_ssim_rejects_images_smaller_than_the_window():
    with pytest.raises(ValueError, match="at least 11 px"):
        ms_ssim_scales(10)
    with pytest.raises(ValueError, match="do not fit"):
        ms_ssim(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), scales=3)


def test_ms_ssim_of_constant_images_is_the_weighted_luminance_of_the_last_scale():
    a, b = 0.3, 0.5
    c1 = (SSIM_K1 * 1.0) ** 2
    luminance = (2 * a * b + c1) / (a**2 + b**2 + c1)
    weights = np.array(MS_SSIM_WEIGHTS[:2])  # 32 px: two scales
    expected = luminance ** (weights[1] / weights.sum())
    x = torch.full((1, 3, 32, 32), a, dtype=torch.float64)
    y = torch.full((1, 3, 32, 32), b, dtype=torch.float64)
    assert ms_ssim(x, y).item() == pytest.approx(expected, rel=1e-12)


def test_ms_ssim_is_lower_for_more_noise():
    x = torch.rand(1, 3, 64, 64)
    mild = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    strong = (x + 0.3 * torch.randn_like(x)).clamp(0, 1)
    assert 1 > ms_ssim(x, mild).item() > ms_ssim(x, strong).item() >= 0


# ---------------------------------------------------------------------------------------------
# CIELAB


def test_srgb_to_lab_of_known_colours():
    rgb = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    expected = torch.tensor(
        [
            [100.0, 0.0, 0.0],
            [0.0, 0.0, 0.0],
            [53.2408, 80.0925, 67.2032],
            [32.2970, 79.1875, -107.8602],
        ]
    ).double()
    torch.testing.assert_close(srgb_to_lab(rgb), expected, atol=2e-3, rtol=0)


def test_delta_e76_is_the_euclidean_lab_distance():
    lab1 = torch.tensor([[50.0, 0.0, 0.0], [20.0, 1.0, 1.0]])
    lab2 = torch.tensor([[50.0, 3.0, 4.0], [20.0, 1.0, 1.0]])
    torch.testing.assert_close(delta_e76(lab1, lab2), torch.tensor([5.0, 0.0]).double())


# Sharma, Wu, Dalal 2005, "The CIEDE2000 color-difference formula", Table 1 (pairs 1, 2, 3, 7,
# 8, 17, 18, 19, 20, 25, 34): Lab 1, Lab 2, ΔE00
SHARMA_PAIRS = [
    ((50.0000, 2.6772, -79.7751), (50.0000, 0.0000, -82.7485), 2.0425),
    ((50.0000, 3.1571, -77.2803), (50.0000, 0.0000, -82.7485), 2.8615),
    ((50.0000, 2.8361, -74.0200), (50.0000, 0.0000, -82.7485), 3.4412),
    ((50.0000, 0.0000, 0.0000), (50.0000, -1.0000, 2.0000), 2.3669),
    ((50.0000, -1.0000, 2.0000), (50.0000, 0.0000, 0.0000), 2.3669),
    ((50.0000, 2.5000, 0.0000), (73.0000, 25.0000, -18.0000), 27.1492),
    ((50.0000, 2.5000, 0.0000), (61.0000, -5.0000, 29.0000), 22.8977),
    ((50.0000, 2.5000, 0.0000), (56.0000, -27.0000, -3.0000), 31.9030),
    ((50.0000, 2.5000, 0.0000), (58.0000, 24.0000, 15.0000), 19.4535),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


def test_delta_e2000_matches_sharma_test_data():
    lab1 = torch.tensor([p[0] for p in SHARMA_PAIRS])
    lab2 = torch.tensor([p[1] for p in SHARMA_PAIRS])
    expected = torch.tensor([p[2] for p in SHARMA_PAIRS]).double()
    torch.testing.assert_close(delta_e2000(lab1, lab2), expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(delta_e2000(lab2, lab1), expected, atol=1e-4, rtol=0)
    assert delta_e2000(lab1, lab1).abs().max() == 0


def test_skin_mask_keeps_yellow_pixels_that_change_with_the_tone():
    yellow = torch.tensor([252, 234, 43]) / 255
    default = torch.ones(1, 3, 4, 4)
    default[0, :, 0, :] = yellow[:, None]  # skin
    default[0, :, 1, :2] = yellow[:, None]  # a yellow shirt that keeps its colour
    default[0, :, 2, :] = torch.tensor([0.9, 0.5, 0.1])[:, None]  # hair that changes
    default[0, :, 3, :] = 0  # line
    toned = default.clone()
    toned[0, :, 0, :] = torch.tensor([0.98, 0.86, 0.74])[:, None]
    toned[0, :, 2, :] = 0.1
    expected = torch.zeros(1, 4, 4, dtype=torch.bool)
    expected[0, 0] = True
    assert torch.equal(skin_mask(default, toned), expected)


def test_masked_delta_e_averages_over_the_mask_and_gives_nan_without_pixels():
    x = torch.zeros(2, 3, 2, 2)
    y = torch.zeros(2, 3, 2, 2)
    y[0, :, 0, 0] = 1.0  # one white pixel against black: ΔE76 = 100 there
    mask = torch.zeros(2, 2, 2, dtype=torch.bool)
    mask[0, 0] = True  # two pixels, one of them differs
    de00, de76 = masked_delta_e(x, y, mask)
    assert de76[0].item() == pytest.approx(50.0, abs=1e-4)
    assert de00[0].item() == pytest.approx(100.0 / 2, abs=1e-4)  # ΔE00 = ΔL on the grey axis
    assert math.isnan(de76[1].item()) and math.isnan(de00[1].item())
    assert finite_mean(de76) == pytest.approx(50.0, abs=1e-4)
    assert math.isnan(finite_mean([math.nan]))


# ---------------------------------------------------------------------------------------------
# Fréchet distance


def test_fid_of_a_set_with_itself_is_zero():
    features = torch.randn(300, 16) * torch.linspace(0.1, 3, 16) + 5
    assert abs(fid_from_features(features, features)) < 1e-8


def test_frechet_distance_of_diagonal_gaussians_has_the_closed_form():
    mu1, mu2 = np.zeros(2), np.array([1.0, 2.0])
    cov1, cov2 = np.diag([1.0, 4.0]), np.diag([4.0, 9.0])
    # ‖μ1 − μ2‖² = 5; Σ (σ1 − σ2)² = (1 − 2)² + (2 − 3)² = 2
    assert frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(7.0, abs=1e-12)


def test_frechet_distance_matches_the_sqrtm_formula_for_correlated_gaussians():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    cov1, cov2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    root = scipy.linalg.sqrtm(cov1 @ cov2).real
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(cov1 + cov2 - 2 * root)
    assert frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-9)


def test_fid_of_samples_approaches_the_distance_of_their_gaussians():
    rng = np.random.default_rng(1)
    mu1, mu2 = np.array([0.0, 1.0, -1.0]), np.array([0.5, 0.0, -1.0])
    cov1 = np.array([[1.0, 0.5, 0.0], [0.5, 2.0, 0.3], [0.0, 0.3, 0.5]])
    cov2 = np.diag([0.5, 1.0, 1.5])
    x = rng.multivariate_normal(mu1, cov1, size=100_000)
    y = rng.multivariate_normal(mu2, cov2, size=100_000)
    assert fid_from_features(x, y) == pytest.approx(
        frechet_distance(mu1, cov1, mu2, cov2), rel=0.03
    )


def test_frechet_distance_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="covariances"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError, match="N >= 2"):
        fid_from_features(np.zeros((1, 4)), np.zeros((5, 4)))


# ---------------------------------------------------------------------------------------------
# NDB and JSD


def test_jensen_shannon_known_answers():
    # m = (0.75, 0.25): ½[½ln(⅔) + ½ln 2] + ½[ln(4/3)]
    expected = 0.5 * (0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(2)) + 0.5 * math.log(1 / 0.75)
    assert jensen_shannon([0.5, 0.5], [1.0, 0.0]) == pytest.approx(expected, abs=1e-12)
    assert jensen_shannon([3, 1], [3, 1]) == 0
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(math.log(2))


def test_proportion_z_hand_computed():
    # p1 = 0.5 of 100, p2 = 0.54 of 50: pooled 77/150
    pooled = 77 / 150
    expected = (0.5 - 0.54) / math.sqrt(pooled * (1 - pooled) * (1 / 100 + 1 / 50))
    z = proportion_z(np.array([0.5, 0.0]), 100, np.array([0.54, 0.0]), 50)
    assert z[0] == pytest.approx(expected, rel=1e-12) and z[1] == 0


def _two_clusters(left: int, right: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(0, 0.1, (left, 2)), rng.normal(10, 0.1, (right, 2))])


def test_ndb_and_jsd_on_a_toy_case():
    bins = NDBBins.fit(_two_clusters(50, 50), 2, seed=0)
    assert sorted(bins.proportions) == [0.5, 0.5]

    same = bins.score(_two_clusters(50, 50))
    assert (same.ndb, same.bins, same.jsd) == (0, 2, 0.0)

    close = bins.score(_two_clusters(27, 23))  # |z| = 0.46 < 1.96
    assert close.ndb == 0 and 0 < close.jsd < 0.01

    collapsed = bins.score(_two_clusters(100, 0))  # every sample in one bin: |z| = 8.2
    assert collapsed.ndb == 2 and collapsed.different.all()
    assert collapsed.jsd == pytest.approx(jensen_shannon([0.5, 0.5], [1.0, 0.0]), abs=1e-12)


def test_ndb_rejects_more_bins_than_samples():
    with pytest.raises(ValueError, match="bins"):
        NDBBins.fit(np.zeros((3, 2)), 4)


# ---------------------------------------------------------------------------------------------
# networks from local weight files


def _alexnet_and_lpips_files(tmp_path):
    """Random weights under torchvision's AlexNet key names (a .pth with an extra classifier
    key, as torchvision ships) and lpips' linear-layer names (a .safetensors)."""
    reference = LPIPS()
    state = reference.state_dict()
    backbone = {k: torch.randn_like(v) * 0.1 for k, v in state.items() if k.startswith("features")}
    backbone["classifier.1.weight"] = torch.zeros(2, 2)
    lins = {k: torch.rand_like(v) for k, v in state.items() if k.startswith("lin")}
    torch.save(backbone, tmp_path / "alexnet.pth")
    save_file(lins, tmp_path / "alex_lin.safetensors")
    return [tmp_path / "alexnet.pth", tmp_path / "alex_lin.safetensors"], lins


def test_lpips_loads_local_files_and_is_zero_for_identical_images(tmp_path):
    paths, lins = _alexnet_and_lpips_files(tmp_path)
    lpips = LPIPS.from_files(paths)
    torch.testing.assert_close(lpips.lin0.model[1].weight, lins["lin0.model.1.weight"])
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    y = (x + 0.5 * torch.randn_like(x)).clamp(-1, 1)
    assert torch.equal(lpips(x, x.clone()), torch.zeros(2))
    assert (lpips(x, y) > 0).all()


def test_lpips_names_the_missing_weights(tmp_path):
    paths, _ = _alexnet_and_lpips_files(tmp_path)
    with pytest.raises(ValueError, match="lin0.model.1.weight"):
        LPIPS.from_files(paths[:1])
    with pytest.raises(ValueError, match="does not exist"):
        LPIPS.from_files([tmp_path / "missing.pth"])


class _MeanColour(torch.nn.Module):
    """Stands in for the Inception TorchScript: uint8 images -> per-channel means."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return x.float().mean(dim=(2, 3))


def test_inception_features_call_the_torchscript_file_with_uint8_images(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(_MeanColour()).save(str(tmp_path / "inception.pt"))
    features = InceptionFeatures(tmp_path / "inception.pt")
    images = torch.zeros(2, 3, 8, 8)
    images[1] = 1.0
    torch.testing.assert_close(features(images), torch.tensor([[0.0] * 3, [255.0] * 3]))
    with pytest.raises(ValueError, match="does not exist"):
        InceptionFeatures(tmp_path / "missing.pt")
