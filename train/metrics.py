"""Image-quality and distribution metrics of the papers' evaluations, written out and tested.

Per image (against a ground truth; images [B, 3, H, W] in [0, 1], data range 1):
    psnr        10·log10(1 / MSE) (Khang et al. Eq. 7); identical images give +inf, so a set is
                scored by `psnr_of_mse` of its mean MSE (torchmetrics' default reduction)
    ssim        Wang et al. 2004: 11×11 Gaussian window (σ 1.5), K1 0.01, K2 0.03, valid
                convolution, per channel then averaged (Cui et al. §4.4)
    ms_ssim     Wang et al. 2003 (Khang et al. Eq. 9, Cao et al. §IV): the 5-scale weights
                (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); small images keep only the finest scales
                whose coarsest side still holds the 11-px window, weights renormalised to sum 1
                (128 px -> 4 scales; see `ms_ssim_scales`)
    lpips       Zhang et al. 2018 v0.1, AlexNet backbone (Khang et al. Eq. 11), only from
                weight files on disk (`LPIPS.from_files`)
    ΔE          colour difference in CIELAB (D65): CIE76 (Euclidean) and CIEDE2000 (Sharma et al.
                2005), over the skin pixels of `skin_mask` for the cross-reference protocol

Over sets of images:
    frechet_distance   ‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2(Σ1Σ2)^½) (Khang et al. Eq. 12, FID) of any
                       feature vectors: the tagger's pooled features here, Inception's
                       (`InceptionFeatures`, a local TorchScript file) where one is on disk
    NDBBins            NDB and JSD of Richardson & Weiss 2018 (Cui et al. §4.4): k-means bins
                       fitted on training samples, a two-proportion z-test per bin, and the
                       Jensen–Shannon divergence (natural log, at most ln 2) of the bin histograms
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from scipy.stats import norm
from torch import nn

from colorize.kmeans import kmeans, nearest_centroid

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, finest first
D65_WHITE = (0.95047, 1.0, 1.08883)
_SRGB_TO_XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)
OPENMOJI_SKIN_YELLOW = (252, 234, 43)  # #FCEA2B: the default skin of OpenMoji people
SKIN_TOLERANCE = 10.0  # ΔE76: "is the default yellow" and "changed with the tone"


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(
            f"images must both be [B, C, H, W] of one shape, got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] model images as float64 in [0, 1] on the 8-bit grid: metrics see what a saved
    PNG holds, the same for every method and baseline."""
    return ((images.detach().double().clamp(-1, 1) + 1) * 127.5).round() / 255


# ---------------------------------------------------------------------------------------------
# PSNR, SSIM, MS-SSIM


def mse(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image [B] of [B, C, H, W] pairs."""
    _check_pair(x, y)
    return (x.double() - y.double()).pow(2).mean(dim=(1, 2, 3))


def psnr_of_mse(mse: torch.Tensor | float, data_range: float = 1.0) -> torch.Tensor:
    """10·log10(L² / MSE) in dB; +inf for an MSE of 0."""
    return 10 * torch.log10(data_range**2 / torch.as_tensor(mse, dtype=torch.float64))


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB per image of [B, C, H, W] pairs: 10·log10(L² / MSE); +inf where x == y."""
    return psnr_of_mse(mse(x, y), data_range)


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    window = torch.exp(-(coords**2) / (2 * sigma**2))
    return window / window.sum()


def _blur(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter per channel, 'valid' (no padding), as Wang et al."""
    C = x.shape[1]
    kernel = window.to(x)
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)


def _ssim_maps(
    x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, data_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(SSIM map, contrast-structure map), each [B, C, H−w+1, W−w+1] (Wang et al. 2004 Eq. 13)."""
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mu_x, mu_y = _blur(x, window), _blur(y, window)
    var_x = _blur(x * x, window) - mu_x**2
    var_y = _blur(y * y, window) - mu_y**2
    cov = _blur(x * y, window) - mu_x * mu_y
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return luminance * cs, cs


def _check_window(x: torch.Tensor, window_size: int) -> None:
    if min(x.shape[-2:]) < window_size:
        raise ValueError(
            f"images of {x.shape[-2]}x{x.shape[-1]} px are smaller than the {window_size}-px "
            "SSIM window"
        )


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    window_size: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
) -> torch.Tensor:
    """Mean SSIM per image [B] of [B, C, H, W] pairs (channels averaged); 1 where x == y."""
    _check_pair(x, y)
    _check_window(x, window_size)
    ssim_map, _ = _ssim_maps(
        x.double(), y.double(), _gaussian_window(window_size, sigma), data_range
    )
    return ssim_map.mean(dim=(1, 2, 3))


def ms_ssim_scales(side: int, window_size: int = SSIM_WINDOW) -> int:
    """How many of the 5 MS-SSIM scales fit an image of `side` px: the coarsest scale, side/2^(S−1),
    must still hold the window (the standard 5 scales need 176 px for an 11-px window)."""
    if side < window_size:
        raise ValueError(f"MS-SSIM needs images of at least {window_size} px, got {side}")
    scales = 1
    while scales < len(MS_SSIM_WEIGHTS) and side // 2**scales >= window_size:
        scales += 1
    return scales


def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    scales: int | None = None,
    window_size: int = SSIM_WINDOW,
    sigma: float = SSIM_SIGMA,
) -> torch.Tensor:
    """Multi-scale SSIM per image [B]: Π_j cs_j^w_j · ssim_S^w_S over S scales (2× average
    pooling between them), per channel then averaged; negative terms clamp to 0 (as
    pytorch-msssim) so the power stays real. S defaults to `ms_ssim_scales`."""
    _check_pair(x, y)
    scales = scales or ms_ssim_scales(min(x.shape[-2:]), window_size)
    if not 1 <= scales <= len(MS_SSIM_WEIGHTS):
        raise ValueError(f"scales must be in 1..{len(MS_SSIM_WEIGHTS)}, got {scales}")
    if min(x.shape[-2:]) // 2 ** (scales - 1) < window_size:
        raise ValueError(
            f"{scales} MS-SSIM scales do not fit {x.shape[-2]}x{x.shape[-1]} px images "
            f"(at most {ms_ssim_scales(min(x.shape[-2:]), window_size)})"
        )
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=torch.float64)
    weights = weights / weights.sum()
    window = _gaussian_window(window_size, sigma)
    x, y = x.double(), y.double()
    terms = []
    for j in range(scales):
        ssim_map, cs = _ssim_maps(x, y, window, data_range)
        if j < scales - 1:
            terms.append(cs.mean(dim=(2, 3)).clamp_min(0))  # (B, C)
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        else:
            terms.append(ssim_map.mean(dim=(2, 3)).clamp_min(0))
    stacked = torch.stack(terms)  # (S, B, C)
    return (stacked ** weights.view(-1, 1, 1)).prod(dim=0).mean(dim=1)


# ---------------------------------------------------------------------------------------------
# CIELAB colour differences


def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """CIELAB (D65, 2° observer) of sRGB colours [..., 3] in [0, 1], as float64 [..., 3]."""
    if rgb.shape[-1] != 3:
        raise ValueError(f"colours must be [..., 3], got {tuple(rgb.shape)}")
    c = rgb.double()
    linear = torch.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ torch.tensor(_SRGB_TO_XYZ, dtype=torch.float64).T
    t = xyz / torch.tensor(D65_WHITE, dtype=torch.float64)
    delta = 6 / 29
    f = torch.where(t > delta**3, t.clamp_min(0) ** (1 / 3), t / (3 * delta**2) + 4 / 29)
    fx, fy, fz = f.unbind(-1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-1)


def delta_e76(lab1: torch.Tensor, lab2: torch.Tensor) -> torch.Tensor:
    """CIE76 ΔE*ab: the Euclidean distance of Lab colours [..., 3] -> [...]."""
    return (lab1.double() - lab2.double()).pow(2).sum(-1).sqrt()


def delta_e2000(lab1: torch.Tensor, lab2: torch.Tensor) -> torch.Tensor:
    """CIEDE2000 ΔE00 of Lab colours [..., 3] -> [...] (k_L = k_C = k_H = 1), following the
    formulas and hue conventions of Sharma, Wu and Dalal 2005 (Eqs. 1–23)."""
    L1, a1, b1 = lab1.double().unbind(-1)
    L2, a2, b2 = lab2.double().unbind(-1)
    c_bar = (torch.hypot(a1, b1) + torch.hypot(a2, b2)) / 2
    g = 0.5 * (1 - torch.sqrt(c_bar**7 / (c_bar**7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = torch.hypot(a1p, b1), torch.hypot(a2p, b2)
    h1p = torch.rad2deg(torch.atan2(b1, a1p)) % 360  # atan2(0, 0) = 0, Sharma's convention
    h2p = torch.rad2deg(torch.atan2(b2, a2p)) % 360
    chroma_zero = c1p * c2p == 0

    dL = L2 - L1
    dC = c2p - c1p
    dh = h2p - h1p
    dh = torch.where(dh > 180, dh - 360, torch.where(dh < -180, dh + 360, dh))
    dh = torch.where(chroma_zero, torch.zeros_like(dh), dh)
    dH = 2 * torch.sqrt(c1p * c2p) * torch.sin(torch.deg2rad(dh / 2))

    L_bar = (L1 + L2) / 2
    c_bar_p = (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_bar = torch.where(
        (h1p - h2p).abs() <= 180,
        h_sum / 2,
        torch.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2),
    )
    h_bar = torch.where(chroma_zero, h_sum, h_bar)
    rad = torch.deg2rad
    T = (
        1
        - 0.17 * torch.cos(rad(h_bar - 30))
        + 0.24 * torch.cos(rad(2 * h_bar))
        + 0.32 * torch.cos(rad(3 * h_bar + 6))
        - 0.20 * torch.cos(rad(4 * h_bar - 63))
    )
    d_theta = 30 * torch.exp(-(((h_bar - 275) / 25) ** 2))
    r_c = 2 * torch.sqrt(c_bar_p**7 / (c_bar_p**7 + 25.0**7))
    s_l = 1 + 0.015 * (L_bar - 50) ** 2 / torch.sqrt(20 + (L_bar - 50) ** 2)
    s_c = 1 + 0.045 * c_bar_p
    s_h = 1 + 0.015 * c_bar_p * T
    r_t = -torch.sin(rad(2 * d_theta)) * r_c
    return torch.sqrt(
        (dL / s_l) ** 2 + (dC / s_c) ** 2 + (dH / s_h) ** 2 + r_t * (dC / s_c) * (dH / s_h)
    )


def skin_mask(
    default: torch.Tensor, toned: torch.Tensor, tolerance: float = SKIN_TOLERANCE
) -> torch.Tensor:
    """Skin pixels of an OpenMoji person: bool [B, H, W] from its default-yellow and its toned
    renderings [B, 3, H, W] in [0, 1] (the same line art).

    A pixel is skin where the default rendering shows the default skin yellow #FCEA2B
    (ΔE76 < tolerance, so shaded yellow counts but line pixels and anti-aliased edges do not)
    and the toned rendering differs from it (ΔE76 > tolerance, so yellow clothes that keep
    their colour and hair that changes with the tone are both left out).
    """
    _check_pair(default, toned)
    lab_default = srgb_to_lab(default.permute(0, 2, 3, 1))
    lab_toned = srgb_to_lab(toned.permute(0, 2, 3, 1))
    yellow = srgb_to_lab(torch.tensor(OPENMOJI_SKIN_YELLOW, dtype=torch.float64) / 255)
    is_yellow = delta_e76(lab_default, yellow) < tolerance
    return is_yellow & (delta_e76(lab_default, lab_toned) > tolerance)


def masked_delta_e(
    x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean ΔE00, mean ΔE76) per image [B] over the pixels of `mask` [B, H, W] between images
    [B, 3, H, W] in [0, 1]; NaN for an image whose mask is empty."""
    _check_pair(x, y)
    lab_x = srgb_to_lab(x.permute(0, 2, 3, 1))
    lab_y = srgb_to_lab(y.permute(0, 2, 3, 1))
    weight = mask.double()
    count = weight.sum(dim=(1, 2))
    de00 = (delta_e2000(lab_x, lab_y) * weight).sum(dim=(1, 2)) / count
    de76 = (delta_e76(lab_x, lab_y) * weight).sum(dim=(1, 2)) / count
    return de00, de76


# ---------------------------------------------------------------------------------------------
# Fréchet distance (FID)


def gaussian_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and unbiased covariance [D, D] (float64) of feature rows [N, D], N >= 2."""
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or len(array) < 2:
        raise ValueError(f"features must be [N, D] with N >= 2, got shape {array.shape}")
    return array.mean(axis=0), np.cov(array, rowvar=False).reshape(array.shape[1], -1)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(values.clip(min=0))) @ vectors.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Fréchet distance of N(μ1, Σ1) and N(μ2, Σ2): ‖μ1 − μ2‖² + Tr Σ1 + Tr Σ2 − 2 Tr (Σ1Σ2)^½.

    Tr (Σ1Σ2)^½ = Σ √λ(Σ1^½ Σ2 Σ1^½): the eigenvalues of a symmetric PSD matrix, which stays
    real and stable where Σ1Σ2 is singular (fewer samples than feature dimensions).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (len(mu1),) * 2:
        raise ValueError(
            f"need means [D] and covariances [D, D] of one D, got {mu1.shape}, {cov1.shape}, "
            f"{mu2.shape}, {cov2.shape}"
        )
    root1 = _psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    trace_sqrt = np.sqrt(np.linalg.eigvalsh((middle + middle.T) / 2).clip(min=0)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * trace_sqrt)


def fid_from_features(
    features1: np.ndarray | torch.Tensor, features2: np.ndarray | torch.Tensor
) -> float:
    """Fréchet distance of the Gaussians fitted to two feature sets [N1, D] and [N2, D]."""
    return frechet_distance(*gaussian_statistics(features1), *gaussian_statistics(features2))


# ---------------------------------------------------------------------------------------------
# NDB and JSD


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon divergence (natural log, 0 ≤ JSD ≤ ln 2) of two histograms (normalised)."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    if p.shape != q.shape or p.ndim != 1 or (p < 0).any() or (q < 0).any():
        raise ValueError(
            f"need two non-negative histograms of one length, got {p.shape}, {q.shape}"
        )
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nonzero = a > 0
        return float((a[nonzero] * np.log(a[nonzero] / m[nonzero])).sum())

    return (kl(p) + kl(q)) / 2


def proportion_z(p1: np.ndarray, n1: int, p2: np.ndarray, n2: int) -> np.ndarray:
    """Two-proportion z statistics (pooled standard error) per bin; 0 where both are 0 or 1."""
    pooled = (n1 * p1 + n2 * p2) / (n1 + n2)
    se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return np.divide(p1 - p2, se, out=np.zeros_like(pooled), where=se > 0)


@dataclass(frozen=True)
class NDBResult:
    """ndb: bins whose proportions differ significantly; bins: K; jsd: of the bin histograms."""

    ndb: int
    bins: int
    jsd: float
    different: np.ndarray


@dataclass(frozen=True)
class NDBBins:
    """k-means bins over training samples, Richardson & Weiss 2018 §4 (NDB, used by Cui et al.
    §4.4): `fit` clusters the training samples; `score` assigns new samples to the nearest
    centroid and tests each bin's proportion against the training proportion."""

    centroids: np.ndarray  # (K, D)
    proportions: np.ndarray  # (K,) of the training samples
    count: int  # training samples

    @classmethod
    def fit(cls, samples: np.ndarray, bins: int, *, seed: int = 0) -> NDBBins:
        """Bins from training samples [N, D] (N >= bins)."""
        samples = np.asarray(samples, np.float64)
        if samples.ndim != 2 or not 1 <= bins <= len(samples):
            raise ValueError(
                f"NDB needs samples [N, D] with N >= bins >= 1, got shape {samples.shape} and "
                f"{bins} bins"
            )
        centroids, labels = kmeans(samples, bins, seed=seed)
        counts = np.bincount(labels, minlength=bins)
        return cls(centroids, counts / len(samples), len(samples))

    def histogram(self, samples: np.ndarray) -> np.ndarray:
        """Share of `samples` [N, D] in each bin [K]."""
        samples = np.asarray(samples, np.float64)
        if samples.ndim != 2 or samples.shape[1] != self.centroids.shape[1] or not len(samples):
            raise ValueError(
                f"samples must be [N, {self.centroids.shape[1]}] with N >= 1, got {samples.shape}"
            )
        labels = nearest_centroid(samples, self.centroids)
        return np.bincount(labels, minlength=len(self.centroids)) / len(samples)

    def score(self, samples: np.ndarray, alpha: float = 0.05) -> NDBResult:
        """NDB (two-sided z-test at level `alpha` per bin) and JSD of `samples` [N, D]."""
        shares = self.histogram(samples)
        z = proportion_z(self.proportions, self.count, shares, len(samples))
        different = np.abs(z) > norm.ppf(1 - alpha / 2)
        return NDBResult(
            int(different.sum()), len(shares), jensen_shannon(self.proportions, shares), different
        )


def ndb_samples(images: torch.Tensor, side: int = 16) -> np.ndarray:
    """NDB sample vectors of images [B, 3, H, W] in [0, 1]: area-downsampled to side×side and
    flattened [B, 3·side²] (Richardson & Weiss bin pixels, not network features)."""
    return F.adaptive_avg_pool2d(images.double(), side).flatten(1).numpy()


# ---------------------------------------------------------------------------------------------
# Networks from weight files on disk (LPIPS, Inception)


def read_state_dicts(paths: Sequence[str | Path]) -> dict[str, torch.Tensor]:
    """Merge the tensors of `.safetensors` or `.pth`/`.pt` state-dict files (no pickled code:
    torch.load with weights_only); a ValueError names a missing file."""
    merged: dict[str, torch.Tensor] = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise ValueError(f"weight file {path} does not exist")
        if path.suffix == ".safetensors":
            merged.update(load_file(path))
        else:
            merged.update(torch.load(path, map_location="cpu", weights_only=True))
    return merged


class _LinearLayer(nn.Module):
    """LPIPS's 1×1 linear layer; `model.1` keeps the key names of the official weight files."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))


class LPIPS(nn.Module):
    """LPIPS v0.1 of Zhang et al. 2018 with the AlexNet backbone (Khang et al. Eq. 11):
    Σ_l mean_hw ‖w_l ⊙ (φ̂_l(x) − φ̂_l(y))‖², φ̂ = channel-normalised relu1…relu5 features.

    The backbone keys are torchvision's `alexnet` (`features.0.weight`, …) and the linear
    layers those of the lpips package (`lin0.model.1.weight`, …); load them with `from_files`.
    """

    CHANNELS = (64, 192, 384, 256, 256)
    TAPS = (1, 4, 7, 9, 11)  # indices of relu1 … relu5 in `features`

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        )  # fmt: skip
        for i, channels in enumerate(self.CHANNELS):
            self.add_module(f"lin{i}", _LinearLayer(channels))
        # the lpips package's input scaling of [-1, 1] images to the backbone's statistics
        self.register_buffer(
            "shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), False
        )
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), False)

    @classmethod
    def from_files(cls, paths: Sequence[str | Path]) -> LPIPS:
        """LPIPS from state-dict files (backbone and linear layers, in one or several files)."""
        state = read_state_dicts(paths)
        model = cls()
        wanted = model.state_dict()
        missing = sorted(set(wanted) - set(state))
        if missing:
            raise ValueError(
                f"LPIPS weights {[str(p) for p in paths]} lack {missing}; give torchvision's "
                "AlexNet state dict and the lpips v0.1 'alex' linear layers"
            )
        model.load_state_dict({key: state[key] for key in wanted})
        return model.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distance per image [B] of [B, 3, H, W] pairs in [-1, 1]; 0 where x == y."""
        _check_pair(x, y)
        x, y = (x - self.shift) / self.scale, (y - self.shift) / self.scale
        total = x.new_zeros(x.shape[0])
        last = 0
        for i, tap in enumerate(self.TAPS):
            block = self.features[last : tap + 1]
            x, y = block(x), block(y)
            last = tap + 1
            nx = x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            ny = y / (y.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            total = total + getattr(self, f"lin{i}").model((nx - ny) ** 2).mean(dim=(1, 2, 3))
        return total


class InceptionFeatures:
    """The 2048-d pool features of the FID Inception network (Heusel et al. 2017) from a local
    TorchScript file, e.g. `inception-2015-12-05.pt` of StyleGAN3 / clean-fid, which takes
    uint8 images [B, 3, H, W] and resizes them to 299 px itself."""

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"Inception weight file {path} does not exist")
        with warnings.catch_warnings():
            # TorchScript is the format these files are published in; loading stays supported
            warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
            self.model = torch.jit.load(str(path), map_location=device).eval()
        self.device = device

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Features [B, D] of images [B, 3, H, W] in [0, 1]."""
        pixels = (images.clamp(0, 1) * 255).round().to(torch.uint8).to(self.device)
        return self.model(pixels, return_features=True).float().cpu()


FeatureFunction = Callable[[torch.Tensor], torch.Tensor]


def batched_features(
    function: FeatureFunction, images: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """`function` applied to images [N, ...] in batches, concatenated [N, D]."""
    return torch.cat(
        [function(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    )


def finite_mean(values: Sequence[float] | torch.Tensor) -> float:
    """Mean of `values` leaving out NaNs (e.g. an image without skin pixels); NaN if none is left.
    An infinite PSNR (an exact reproduction) keeps the mean infinite, as it should."""
    array = np.asarray(values, np.float64)
    kept = array[~np.isnan(array)]
    return float(kept.mean()) if len(kept) else math.nan
