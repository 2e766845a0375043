"""Datasets as uint8 tensors and device-resident batches. Imports only PyTorch, NumPy and the readers.

Pillow (image folders), SciPy (SVHN) and rich (download progress) are imported
only by the code paths that need them.
"""

from searcher.data.batches import DeviceData, DeviceSplit
from searcher.data.dataset import ImageDataset, Split
from searcher.data.registry import LOADERS, DatasetError, DatasetOptions, load_dataset

__all__ = ["LOADERS", "DatasetError", "DatasetOptions", "DeviceData", "DeviceSplit", "ImageDataset", "Split", "load_dataset"]
