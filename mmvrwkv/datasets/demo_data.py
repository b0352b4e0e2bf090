"""Make a demo config's dataset when it is missing, so that the demo configs train and test
from any directory (``mim train mmvrwkv vrwkv-tiny-p2_1xb32-15e_digits.py`` included).

A demo config names the converter (the command line in ``tools/dataset_converters``) that
writes its data and the file whose presence marks a complete dataset (each converter writes
it last)::

    demo_data = dict(converter='make_digits_imagenet.py', out='data/digits',
                     done='meta/val.txt')

``out`` is relative to the current directory, like the config's ``data_root``.
``tools/train.py`` and ``tools/test.py`` call :func:`ensure_demo_data` before building the
Runner. Only a dataloader that reads from under ``out`` counts: a run whose
``--cfg-options`` point the loaders elsewhere generates nothing. In a single process a
missing dataset is written (the converter's command is printed, and run in this process);
in a distributed run (where several processes would write the same files at once) a missing
dataset is an error that names that command.
"""
import os.path as osp
import sys
from typing import Callable, Dict, List, Optional, Sequence

from . import digits, shapes

SPLITS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
#: ``demo_data.converter`` (a file in tools/dataset_converters) -> that command line's main.
CONVERTERS: Dict[str, Callable[[Optional[Sequence[str]]], Optional[int]]] = {
    'make_digits_imagenet.py': digits.main,
    'make_shapes_dataset.py': shapes.main,
}


def converters_dir() -> str:
    """``tools/dataset_converters`` of this installation (the checkout's, or the copy in
    ``mmvrwkv/.mim`` of an installed package), links resolved."""
    from mmvrwkv.apis import package_root
    return osp.realpath(osp.join(package_root(), 'tools', 'dataset_converters'))


def demo_data_command(spec: dict) -> List[str]:
    """The one command that writes the demo dataset ``spec`` describes."""
    if spec['converter'] not in CONVERTERS:
        raise ValueError(f"demo_data.converter must be the file name of a demo data converter "
                         f"({', '.join(CONVERTERS)}), got {spec['converter']!r}")
    return [sys.executable, osp.join(converters_dir(), spec['converter']), spec['out']]


def _data_roots(cfg) -> List[str]:
    """Absolute data roots of the config's dataloaders (wrapped datasets followed)."""
    roots = []
    for split in SPLITS:
        dataset = (cfg.get(split) or {}).get('dataset')
        while isinstance(dataset, dict):
            if dataset.get('data_root'):
                roots.append(osp.abspath(dataset['data_root']))
            dataset = dataset.get('dataset')
    return roots


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(osp.sep) + osp.sep)


def ensure_demo_data(cfg, distributed: bool = False) -> Optional[str]:
    """Write the config's demo dataset if its loaders need it and it is missing.

    Returns the folder written, or None when there was nothing to do (no ``demo_data`` in
    the config, loaders reading elsewhere, or the dataset complete). Raises
    ``FileNotFoundError`` naming the command when ``distributed`` and the data is missing,
    ``RuntimeError`` when the converter fails.
    """
    spec = cfg.get('demo_data')
    if not spec:
        return None
    for key in ('converter', 'out', 'done'):
        if not spec.get(key):
            raise ValueError(f'demo_data needs {key!r} (see {__file__}), got {dict(spec)}')
    out = osp.abspath(spec['out'])
    if not any(_inside(root, out) for root in _data_roots(cfg)):
        return None
    if osp.isfile(osp.join(out, spec['done'])):
        return None
    cmd = demo_data_command(spec)
    shown = ' '.join(cmd)
    if distributed:
        raise FileNotFoundError(
            f"the demo dataset is missing ({osp.join(out, spec['done'])} not found) and a "
            f"distributed run does not write it; make it once with\n    {shown}\n(from "
            f"the directory you train in), or run the config once without a launcher")
    print(f'demo dataset missing at {out}; writing it (the same as running: {shown})',
          flush=True)
    try:
        status = CONVERTERS[spec['converter']](cmd[2:]) or 0
    except SystemExit as e:  # argparse in the converter: its message is already on stderr
        status = e.code if isinstance(e.code, int) else 1
    except Exception as e:  # noqa: BLE001  (any failure of the converter, as its exit status)
        raise RuntimeError(f'writing the demo dataset failed ({type(e).__name__}: {e}): '
                           f'{shown}') from e
    if status != 0 or not osp.isfile(osp.join(out, spec['done'])):
        raise RuntimeError(f'writing the demo dataset failed (exit status {status}): {shown}')
    return out
