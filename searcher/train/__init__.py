"""The trainer and its stability rule. Imports only PyTorch: a trial runs where only PyTorch is installed."""

from searcher.train.stability import Behavior, StabilityRule, judge
from searcher.train.trainer import EpochRecord, TrainResult, TrainSettings, resolve_device, train_trial

__all__ = ["Behavior", "EpochRecord", "StabilityRule", "TrainResult", "TrainSettings", "judge", "resolve_device", "train_trial"]
