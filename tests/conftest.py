"""Shared pytest set-up: the `cuda` marker skips without a usable GPU build."""
import pytest
import torch


def pytest_collection_modifyitems(config, items):
    from mmvrwkv.ops import ext_has_cuda
    if torch.cuda.is_available() and ext_has_cuda():
        return
    skip = pytest.mark.skip(reason='needs a CUDA GPU and mmvrwkv._ext built with CUDA')
    for item in items:
        if 'cuda' in item.keywords:
            item.add_marker(skip)
