"""Fixtures of the checkpoint tests: one real Runner checkpoint per model, made once per
session, and the small configs the entry points are run with."""
import os.path as osp

import pytest

from tool_helpers import CFG, load_tool, tiny_options, write_tiny_config


@pytest.fixture(scope='session')
def real_checkpoint(digits, tmp_path_factory):
    """epoch_1.pth of a 1-epoch tools/train.py run of the 2-block digits demo model
    (SafeCheckpointHook: digest, message hub, optimizer and scheduler state)."""
    work = str(tmp_path_factory.mktemp('real_run'))
    load_tool('train').main([CFG, '--work-dir', work] + tiny_options(digits))
    return osp.join(work, 'epoch_1.pth')


@pytest.fixture(scope='session')
def tiny_config(tmp_path_factory):
    """A config file: the digits demo config with 2 blocks (the model of real_checkpoint),
    for entry points that take a config file but no --cfg-options."""
    folder = tmp_path_factory.mktemp('tiny_config')
    return write_tiny_config(str(folder / 'vrwkv-tiny-depth2_digits.py'))


@pytest.fixture(scope='session')
def real_checkpoints(real_checkpoint, demo_case, tmp_path_factory):
    """``real_checkpoints(task)``: a real Runner checkpoint for the 'cls' model
    (real_checkpoint) or, for 'det' / 'seg', the same checkpoint carrying the initialised
    weights, dataset meta and config text of that demo model, as ``epoch_1.pth`` of its own
    folder (made once per session)."""
    from inference_helpers import CONFIGS, runner_checkpoint_like
    folder = tmp_path_factory.mktemp('real_checkpoints')
    made = {'cls': real_checkpoint}

    def get(task):
        if task not in made:
            (folder / task).mkdir()
            made[task] = runner_checkpoint_like(real_checkpoint, demo_case(task).checkpoint,
                                                CONFIGS[task], str(folder / task / 'epoch_1.pth'))
        return made[task]
    return get
