"""Converting an official checkpoint file: what ``tools/model_converters/vrwkv2mmvrwkv.py``
runs.

Read the file through the gate (:func:`~.loading.load_checkpoint_file`; full unpickling only
on the user's ``unsafe_load``), find the weights (:mod:`.state_dict`), map the keys and pick
the reference model (:mod:`.conversion`), report every key that does not fit, refuse an
output that would leave the model uninitialised, and write ``{'state_dict', 'meta'}`` with
its digests (:func:`~.digest.add_digest`), atomically (:func:`~.atomic.atomic_path`).
"""
import os.path as osp
import sys
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

import mmvrwkv
from .atomic import atomic_path
from .conversion import (ConversionError, compact, convert_state_dict, find_config,
                         infer_arch, infer_family, reference_shapes)
from .digest import add_digest
from .errors import CheckpointError, UnsafeCheckpointError
from .loading import load_checkpoint_file
from .matching import StateDictMismatch, compare_state_dict, short_list
from .state_dict import find_state_dict, has_ema_weights

#: Lists in the report are cut after this many entries.
MAX_LISTED = 40
#: ``meta['converter']`` of the files written.
CONVERTER = 'tools/model_converters/vrwkv2mmvrwkv.py'
#: Where the report goes (one line a call).
Echo = Callable[[str], None]


def load_source(path: str, unsafe: bool = False) -> object:
    """Read SRC with mmvrwkv's safe loader; ``unsafe`` allows full unpickling of a file
    that is intact but needs more than the weights-only allow-list."""
    try:
        return load_checkpoint_file(path, map_location='cpu')
    except FileNotFoundError:
        raise ConversionError(f'source checkpoint not found: {path}') from None
    except UnsafeCheckpointError as err:
        if not unsafe:
            raise ConversionError(
                f'{err}\nIf you trust the origin of {path} completely, rerun with '
                '--unsafe-load.') from err
    except CheckpointError as err:  # empty, truncated, damaged: no option helps
        raise ConversionError(str(err)) from err
    print(f'WARNING: {path} is not weights-only; loading it with weights_only=False '
          '(--unsafe-load).', file=sys.stderr)
    try:
        return torch.load(path, map_location='cpu', weights_only=False)
    except Exception as err:  # noqa: BLE001
        raise ConversionError(f'cannot read {path}: {err}') from err


def unwrap(obj: object, ema: bool = False) -> Tuple[Dict[str, object], List[str]]:
    """Find the weights in a checkpoint; returns (state dict, wrapper path)."""
    try:
        return find_state_dict(obj, ema=ema)
    except ValueError as err:
        raise ConversionError(str(err)) from None


def save_converted(obj: dict, dst: str, overwrite: bool) -> None:
    """Write ``obj`` (with its digests, ``add_digest``) to ``dst`` atomically."""
    add_digest(obj)
    try:
        with atomic_path(dst, overwrite=overwrite) as tmp:
            torch.save(obj, tmp)
    except FileExistsError:
        raise ConversionError(f'{dst} exists (use --overwrite to replace it)') from None
    except OSError as err:
        raise ConversionError(str(err)) from err


def _mismatch_list(mismatch: StateDictMismatch) -> str:
    return short_list([f'{k} {list(s)} vs model {list(r)}' for k, s, r in mismatch.mismatched],
                      MAX_LISTED)


def _report(mismatch: StateDictMismatch, non_tensors: Sequence[str], strict: bool,
            echo: Echo) -> None:
    """Every entry that does not fit the reference model, one line a kind."""
    for key in non_tensors:
        echo(f'dropped non-tensor entry: {key}')
    if mismatch.unexpected:
        echo(f'unexpected keys ({len(mismatch.unexpected)}, not in the reference model'
             f'{"" if strict else ", dropped"}): {short_list(mismatch.unexpected, MAX_LISTED)}')
    if mismatch.mismatched:
        echo(f'shape mismatches ({len(mismatch.mismatched)}): {_mismatch_list(mismatch)}')
    if mismatch.missing:
        echo(f'missing keys ({len(mismatch.missing)}, in the model but not in the checkpoint): '
             f'{short_list(mismatch.missing, MAX_LISTED)}')


def _problems(mismatch: StateDictMismatch, strict: bool, allow_missing: bool) -> List[str]:
    """Why the output is refused (empty: it is written)."""
    missing, unexpected, mismatched = mismatch
    problems = []
    if (missing or mismatched) and not allow_missing:
        if missing:
            problems.append(f'{len(missing)} missing key(s): {short_list(missing, MAX_LISTED)}')
        if mismatched:
            problems.append(f'{len(mismatched)} shape mismatch(es): {_mismatch_list(mismatch)}')
        problems.append('the output would leave parameters of the model uninitialised '
                        '(check --arch/--config/--num-classes/--img-size, or pass '
                        '--allow-missing to write a partial model)')
    if unexpected and strict:
        problems.append(f'{len(unexpected)} unexpected key(s) with --strict: '
                        f'{short_list(unexpected, MAX_LISTED)}')
    return problems


def convert_file(src: str, dst: str, config: Optional[str] = None,
                 arch: Optional[str] = None, num_classes: Optional[int] = None,
                 img_size: Optional[int] = None, ema: bool = False, strict: bool = False,
                 allow_missing: bool = False, overwrite: bool = False,
                 unsafe_load: bool = False, echo: Echo = print) -> dict:
    """Convert the official checkpoint ``src`` into ``dst``; returns the ``meta`` written.

    The arguments are the converter's flags (``tools/model_converters/vrwkv2mmvrwkv.py
    --help``); the report goes to ``echo``. Raises :class:`ConversionError` for a refusal or
    a failure, ``dst`` untouched.
    """
    if osp.exists(dst) and not overwrite:
        raise ConversionError(f'{dst} exists (use --overwrite to replace it)')
    if osp.exists(dst) and osp.samefile(src, dst):
        raise ConversionError('SRC and DST are the same file')

    ckpt = load_source(src, unsafe=unsafe_load)
    src_sd, wrapper = unwrap(ckpt, ema=ema)
    echo(f'read {src}: {len(src_sd)} entries under '
         f'{"/".join(wrapper) or "the top level (raw state dict)"}')
    if not ema and has_ema_weights(ckpt):
        echo('note: the checkpoint also holds EMA weights; --ema converts those instead')

    converted, non_tensors = convert_state_dict(src_sd)
    if not config:
        family = infer_family(converted)
        echo(f'backbone family: {family.upper()} (from the spatial-mixer keys)')
        if not arch:
            arch = infer_arch(converted)
            echo(f'inferred --arch {arch} from the embedding width')
        config = find_config(arch, family)
    reference = reference_shapes(config, num_classes, img_size)
    mismatch = compare_state_dict(converted, reference)
    echo(f'reference: {config}'
         + (f' (num_classes={num_classes})' if num_classes else '')
         + (f' (img_size={img_size})' if img_size else '')
         + f': {len(reference)} tensors')
    _report(mismatch, non_tensors, strict, echo)
    problems = _problems(mismatch, strict, allow_missing)
    if problems:
        raise ConversionError('refusing to write ' + dst + ':\n  ' + '\n  '.join(problems))

    mismatched = {k for k, _, _ in mismatch.mismatched}
    drop = set(mismatch.unexpected) | mismatched
    state_dict = OrderedDict((k, compact(v)) for k, v in converted.items() if k not in drop)
    meta = dict(
        converted_from=osp.basename(src),
        source_wrapper='/'.join(wrapper),
        ema=bool(ema),
        converter=CONVERTER,
        reference_config=osp.basename(config),
        num_classes=num_classes,
        img_size=img_size,
        mmvrwkv_version=mmvrwkv.__version__,
        missing_keys=sorted(set(mismatch.missing) | mismatched),
        dropped_keys=sorted(drop - mismatched),
    )
    save_converted(dict(state_dict=state_dict, meta=meta), dst, overwrite)
    n_params = sum(v.numel() for v in state_dict.values())
    echo(f'wrote {dst}: {len(state_dict)} tensors, {n_params / 1e6:.2f} M values'
         + (f' ({len(meta["missing_keys"])} keys of the model missing)'
            if meta['missing_keys'] else ''))
    return meta
