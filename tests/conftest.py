"""Shared pytest set-up: the `cuda` marker skips without a usable GPU build; fixtures that
several test files use (the digits dataset, the tools, a clean environment)."""
import os.path as osp

import pytest
import torch

from tool_helpers import load_tool


def pytest_collection_modifyitems(config, items):
    from mmvrwkv.ops import ext_has_cuda
    if torch.cuda.is_available() and ext_has_cuda():
        return
    skip = pytest.mark.skip(reason='needs a CUDA GPU and mmvrwkv._ext built with CUDA')
    for item in items:
        if 'cuda' in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope='session')
def digits(tmp_path_factory):
    """The demo's digits dataset, written once per session."""
    from mmvrwkv.datasets.digits import make_digits
    root = str(tmp_path_factory.getbasetemp() / 'digits')
    make_digits(root)
    return root


@pytest.fixture(scope='session')
def demo_case(digits, tmp_path_factory):
    """``demo_case(task)``: config, initialised checkpoint, images and data options of the
    cls / det / seg demo (tests/inference_helpers.py), made once per session and task."""
    from inference_helpers import demo_case as make_case, make_shapes
    work = str(tmp_path_factory.mktemp('demo_cases'))
    cases = {}

    def get(task):
        if task not in cases:
            if task != 'cls' and 'shapes' not in cases:
                cases['shapes'] = make_shapes(osp.join(work, 'shapes'))
            cases[task] = make_case(task, work, digits, cases.get('shapes'))
        return cases[task]
    return get


@pytest.fixture(scope='module')
def trainer():
    """tools/train.py as a module."""
    return load_tool('train')


@pytest.fixture(scope='module')
def evaluator():
    """tools/test.py as a module."""
    return load_tool('test')


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from a second thread, and on a busy shared machine a
    2-thread pool waits for descheduled threads in every op (20x slower runs)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def clean_env(monkeypatch):
    """parse_args sets LOCAL_RANK when it is missing: keep the test process's environment."""
    monkeypatch.setenv('LOCAL_RANK', 'unset')
    monkeypatch.delenv('LOCAL_RANK')
    monkeypatch.delenv('MMVRWKV_DIST_BACKEND', raising=False)
    return monkeypatch
