"""The data set on its device, loaded once per process for all the cells (and inspections) that use it."""
from __future__ import annotations

import json

import torch

from experiments.config import to_dict
from experiments.data import datasets as data_mod


class DataCache:
    """The data set on its device, loaded once for all the cells of a process that use it."""

    def __init__(self):
        self._key, self._dataset = None, None

    def get(self, data, device: torch.device) -> data_mod.Dataset:
        key = (json.dumps(to_dict(data), sort_keys=True), str(device))
        if key != self._key:
            self._key, self._dataset = None, None  # the old split leaves the device before the new one comes
            ds = data_mod.load(data)
            self._dataset = data_mod.Dataset(ds.train.to(device), ds.test.to(device),
                                             ds.val.to(device) if ds.val is not None else None, ds.classes,
                                             ds.description)
            self._key = key
        return self._dataset
