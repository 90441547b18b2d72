"""Datasets and training-time conditions (sample contract: `train.data.sample`)."""

from train.data.anime_pairs import AnimePairDataset
from train.data.image_folder import ImageFolderDataset
from train.data.openmoji import OpenMojiCrossReference, OpenMojiDataset
from train.data.sample import CONDITIONS, SampleOptions

__all__ = [
    "CONDITIONS",
    "AnimePairDataset",
    "ImageFolderDataset",
    "OpenMojiCrossReference",
    "OpenMojiDataset",
    "SampleOptions",
]
