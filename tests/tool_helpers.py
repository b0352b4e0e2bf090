"""Helpers for tests that run tools/train.py and tools/test.py on the digits demo config, and
the one loader of scripts (tools, demos, drivers) for the tests: :func:`load_tool`."""
import glob
import importlib.util
import json
import os
import os.path as osp
import uuid

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# the classification demo config (its name carries the batch size, which may change)
CFG = sorted(glob.glob(osp.join(ROOT, 'configs', 'demo', 'vrwkv-tiny*digits.py')))[0]
CFG_NAME = osp.splitext(osp.basename(CFG))[0]


def load_tool(name, folder='tools'):
    """<folder>/<name>.py (relative to the repository root) as a module: tools, demos, .ci and
    test drivers are scripts, not a package. The tests' one way of loading a script."""
    module_name = f'_mmvrwkv_{folder}_{name}'.replace('/', '_').replace('.', '_')
    spec = importlib.util.spec_from_file_location(module_name,
                                                  osp.join(ROOT, folder, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def script_env(folder='tests', **extra) -> dict:
    """The environment for a ``python -c SCRIPT`` subprocess that imports helper modules of
    the tests: ``folder`` (relative to the repository root) first on PYTHONPATH, ``extra``
    variables set."""
    first = osp.join(ROOT, folder)
    path = os.environ.get('PYTHONPATH')
    env = dict(os.environ, PYTHONPATH=first + (os.pathsep + path if path else ''))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def tiny_options(data_root, n_train=16, batch=16, epochs=1, **extra):
    """--cfg-options for a fast run: 2 blocks, a subset, no workers, log every iteration."""
    opts = {
        'data_root': data_root,
        'model.backbone.depth': 2,
        'model.backbone.drop_path_rate': 0.0,
        'train_cfg.max_epochs': epochs,
        'train_cfg.val_interval': 1000,
        'default_hooks.logger.interval': 1,
        'experiment_name': f'test_{uuid.uuid4().hex[:8]}',  # unique logger/visualizer names
    }
    for split, n in (('train', n_train), ('val', 32), ('test', 32)):
        opts.update({f'{split}_dataloader.dataset.data_root': data_root,
                     f'{split}_dataloader.dataset.indices': n,
                     f'{split}_dataloader.num_workers': 0,
                     f'{split}_dataloader.persistent_workers': False})
    opts['train_dataloader.batch_size'] = batch
    opts.update(extra)
    return ['--cfg-options'] + [f'{k}={v}' for k, v in opts.items()]


def train_losses(work_dir):
    """Training losses in step order from the LocalVisBackend's scalars.json."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    assert files, f'no scalars.json under {work_dir}'
    steps = []
    with open(files[-1]) as f:
        for line in f:
            rec = json.loads(line)
            if 'loss' in rec:
                steps.append((rec['step'], rec['loss']))
    return steps


def write_tiny_config(path: str, depth: int = 2) -> str:
    """A config file that is the digits demo config (CFG) with ``depth`` blocks and no drop
    path: for entry points that take a config file but no --cfg-options (inferencers,
    get_model, the converter's --config, pytorch2onnx, the image demo). Returns ``path``."""
    with open(path, 'w') as f:
        f.write(f'_base_ = [{CFG!r}]\n'
                f'model = dict(backbone=dict(depth={int(depth)}, drop_path_rate=0.0))\n')
    return path


def tiny_cfg_dict(data_root: str, **kwargs) -> dict:
    """``tiny_options(data_root, **kwargs)`` as a dict for ``Config.merge_from_dict``, each
    value parsed as the tools' ``--cfg-options`` parse it (for building a Runner directly)."""
    from mmengine.config import DictAction
    pairs = (option.split('=', 1) for option in tiny_options(data_root, **kwargs)[1:])
    return {key: DictAction._parse_iterable(value) for key, value in pairs}
