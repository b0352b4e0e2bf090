#!/usr/bin/env python
"""Convert an official Vision-RWKV checkpoint to the mmvrwkv / mmpretrain layout.

Official checkpoints (HuggingFace ``OpenGVLab/Vision-RWKV``) come in two flavours:

* mmcls 0.25 (VRWKV-T/S/B, ``vrwkv_{t,s,b}_in1k_224.pth``, and VRWKV6-T/S/B,
  ``vrwkv6_{t,s,b}_in1k_224.pth``): ``{'state_dict': {...}}`` with ``backbone.*`` and
  ``head.fc.*`` keys -- already the mmpretrain names (mmvrwkv's VRWKV6 keeps the official
  v6 parameter names ``att.time_maa_*``, ``att.time_decay*``, ``att.time_faaaa``, ``att.ln_x``);
* InternImage/timm codebase (VRWKV-L, ``vrwkv_l_in22k_192.pth``,
  ``vrwkv_l_22kto1k_384.pth``): ``{'model': {...}}`` (optionally also ``'model_ema'``) with
  ``backbone.*`` keys and an ``nn.Sequential`` MLP head ``head.0`` (Linear 1024->3072),
  ``head.1`` (Tanh), ``head.2`` (Linear 3072->classes).

Both are accepted, wrapped in ``state_dict`` / ``model`` / ``module`` (possibly nested) or raw,
with keys possibly prefixed ``module.`` (DDP) and with or without ``backbone.``. Keys are
mapped to an mmpretrain ``ImageClassifier``:

* ``backbone.*`` kept; bare backbone keys (``patch_embed.*``, ``pos_embed``, ``cls_token``,
  ``layers.*``, ``ln1.*``) get ``backbone.``;
* ``head.fc.*`` kept (``LinearClsHead``); a bare linear ``head.{weight,bias}`` becomes
  ``head.fc.*``;
* ``head.0.*`` -> ``head.layers.pre_logits.*`` and ``head.2.*`` -> ``head.layers.head.*``
  (mmpretrain ``VisionTransformerClsHead`` with ``hidden_dim``, as in the VRWKV-L config).

The result is compared, key by key and shape by shape, with the model built from a config
(``--config``, or ``--arch``, which picks the matching config of the checkpoint's family:
``configs/vrwkv`` for VRWKV, ``configs/vrwkv6`` for VRWKV6, the family being told by the
keys (``att.time_maa_x`` only exists in VRWKV6); without either, the arch is inferred from
the embedding width). A checkpoint
that would leave parameters of that model uninitialised (missing keys, shape mismatches) is
refused unless ``--allow-missing``; unexpected keys are reported and dropped (refused with
``--strict``). The output ``{'state_dict': ..., 'meta': {...}}`` loads with ``strict=True``
into the model of the config and with ``torch.load(weights_only=True)``; it is written
atomically and never over an existing file unless ``--overwrite``.

Examples::

    python tools/model_converters/vrwkv2mmvrwkv.py vrwkv_t_in1k_224.pth \\
        vrwkv-tiny_in1k_mmvrwkv.pth --arch tiny
    python tools/model_converters/vrwkv2mmvrwkv.py vrwkv_l_in22k_192.pth \\
        vrwkv-large_in22k-192px_mmvrwkv.pth --arch large --num-classes 21841
    python tools/model_converters/vrwkv2mmvrwkv.py vrwkv6_t_in1k_224.pth \\
        vrwkv6-tiny_in1k_mmvrwkv.pth --config configs/vrwkv6/vrwkv6-tiny_8xb128_in1k.py

Exit status: 0 written, 1 refused or failed (the reason on stderr), 2 bad arguments.
"""
import argparse
import functools
import os.path as osp
import sys
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch

import mmvrwkv
from mmvrwkv.engine.checkpoint import (CheckpointError, UnsafeCheckpointError, add_digest,
                                       atomic_path, compare_state_dict, load_checkpoint_file,
                                       short_list)
from mmvrwkv.models.checkpoint_utils import EMA_KEYS, find_state_dict

#: First name component of the keys of a bare VRWKV / VRWKV6 backbone state dict.
BACKBONE_ROOTS = frozenset(['patch_embed', 'pos_embed', 'cls_token', 'layers', 'ln1'])
#: ``--arch`` -> config in ``configs/vrwkv``.
ARCH_CONFIGS = {
    'tiny': 'vrwkv-tiny_8xb128_in1k.py',
    'small': 'vrwkv-small_8xb128_in1k.py',
    'base': 'vrwkv-base_16xb64_in1k.py',
    'large': 'vrwkv-large_in21k-pre_8xb128_in1k-384px.py',
}
#: ``--arch`` -> config in ``configs/vrwkv6`` (the family has no large model).
ARCH_CONFIGS_V6 = {
    'tiny': 'vrwkv6-tiny_8xb128_in1k.py',
    'small': 'vrwkv6-small_8xb128_in1k.py',
    'base': 'vrwkv6-base_16xb64_in1k.py',
}
#: Backbone family -> (config folder, ``--arch`` configs).
FAMILIES = {'vrwkv': ('vrwkv', ARCH_CONFIGS), 'vrwkv6': ('vrwkv6', ARCH_CONFIGS_V6)}
#: A key (after mapping) ending so exists only in VRWKV6 checkpoints.
V6_MARKER = '.att.time_maa_x'
#: Lists in the report are cut after this many entries.
MAX_LISTED = 40


class ConversionError(Exception):
    """A refusal or failure with a message for the user (exit status 1)."""


# --------------------------------------------------------------------------------------
# reading

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


# --------------------------------------------------------------------------------------
# key mapping

def map_key(key: str) -> str:
    """Official key -> mmpretrain ImageClassifier key (unknown keys pass unchanged)."""
    while key.startswith('module.'):
        key = key[len('module.'):]
    if key.startswith('backbone.'):
        return key
    if key.startswith('head.'):
        rest = key[len('head.'):]
        if rest.startswith(('fc.', 'layers.')):
            return key
        if rest in ('weight', 'bias'):  # a bare nn.Linear head
            return 'head.fc.' + rest
        if rest.startswith('0.'):  # nn.Sequential(Linear, Tanh, Linear)
            return 'head.layers.pre_logits.' + rest[2:]
        if rest.startswith('2.'):
            return 'head.layers.head.' + rest[2:]
        return key
    if key.split('.', 1)[0] in BACKBONE_ROOTS:
        return 'backbone.' + key
    return key


def convert_state_dict(src: Mapping[str, object]) -> Tuple['OrderedDict[str, torch.Tensor]',
                                                           List[str]]:
    """Map all keys; returns (converted tensors, non-tensor / duplicate entries dropped)."""
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    origin: Dict[str, str] = {}
    dropped: List[str] = []
    for key, value in src.items():
        if not isinstance(value, torch.Tensor):
            dropped.append(f'{key} (not a tensor: {type(value).__name__})')
            continue
        new_key = map_key(key)
        if new_key in out:
            raise ConversionError(
                f'keys {origin[new_key]!r} and {key!r} both map to {new_key!r}')
        origin[new_key] = key
        out[new_key] = value
    return out, dropped


# --------------------------------------------------------------------------------------
# reference model

def infer_family(converted: Mapping[str, torch.Tensor]) -> str:
    """'vrwkv6' when the checkpoint has VRWKV6 spatial mixers (``att.time_maa_x``), else
    'vrwkv'."""
    return 'vrwkv6' if any(k.endswith(V6_MARKER) for k in converted) else 'vrwkv'


def find_config(arch: str, family: str = 'vrwkv') -> str:
    """Path of the ``configs/<family>`` config of ``arch`` (source tree or installed
    package)."""
    folder, configs = FAMILIES[family]
    if arch not in configs:
        raise ConversionError(f'the {family.upper()} family has no {arch!r} model '
                              f'(--arch {" | ".join(configs)} for a {family.upper()} '
                              'checkpoint); use --config')
    name = configs[arch]
    here = osp.dirname(osp.abspath(__file__))
    candidates = [osp.join(here, '..', '..', 'configs', folder, name)]
    candidates.append(osp.join(osp.dirname(mmvrwkv.__file__), '.mim', 'configs', folder, name))
    for cand in candidates:
        if osp.isfile(cand):
            return osp.normpath(cand)
    raise ConversionError(f'config {name} for --arch {arch} not found (looked in '
                          f'{", ".join(osp.normpath(c) for c in candidates)}); use --config')


def reference_shapes(config: str, num_classes: Optional[int] = None,
                     img_size: Optional[int] = None) -> 'OrderedDict[str, torch.Size]':
    """Parameter/buffer shapes of the ImageClassifier built from ``config``."""
    key = (osp.abspath(config), osp.getmtime(config), num_classes, img_size)
    return OrderedDict(_reference_shapes_cached(*key))


@functools.lru_cache(maxsize=8)
def _reference_shapes_cached(config: str, mtime: float, num_classes: Optional[int],
                             img_size: Optional[int]) -> Tuple[Tuple[str, torch.Size], ...]:
    del mtime  # part of the cache key only
    try:
        from mmengine.config import Config
        from mmengine.registry import init_default_scope
        from mmengine.utils import import_modules_from_strings
    except ImportError as err:
        raise ConversionError(f'building the reference model needs mmengine: {err}') from err
    cfg = Config.fromfile(config)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    try:
        import mmpretrain.models  # noqa: F401
        from mmpretrain.registry import MODELS
    except ImportError as err:
        raise ConversionError(f'building the reference model needs mmpretrain: {err}') from err
    model_cfg = cfg.model
    if num_classes is not None:
        model_cfg.head.num_classes = num_classes
    if img_size is not None:
        model_cfg.backbone.img_size = img_size
    # Shapes only: drop what would load files, skip checkpointing and batch augments.
    model_cfg.backbone.pop('init_cfg', None)
    model_cfg.pop('train_cfg', None)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    try:  # shapes without allocating memory ...
        with torch.device('meta'):
            model = MODELS.build(model_cfg)
    except Exception:  # noqa: BLE001  ... unless a constructor needs real tensors
        model = MODELS.build(model_cfg)
    return tuple((k, v.shape) for k, v in model.state_dict().items())


def infer_arch(converted: Mapping[str, torch.Tensor]) -> str:
    """--arch from the patch-embedding width C (192 / 384 / 768 / 1024; for a VRWKV6
    checkpoint :func:`find_config` then refuses 1024, which that family does not have)."""
    widths = {192: 'tiny', 384: 'small', 768: 'base', 1024: 'large'}
    weight = converted.get('backbone.patch_embed.projection.weight')
    if weight is None or weight.ndim != 4 or int(weight.shape[0]) not in widths:
        shape = None if weight is None else list(weight.shape)
        raise ConversionError(
            'cannot infer the arch (backbone.patch_embed.projection.weight: '
            f'{shape}); pass --arch or --config')
    return widths[int(weight.shape[0])]


def _compact(t: torch.Tensor) -> torch.Tensor:
    """A tensor that owns exactly its data (so torch.save stores no foreign storage)."""
    t = t.detach()
    if (not t.is_contiguous()
            or t.untyped_storage().nbytes() != t.numel() * t.element_size()):
        t = t.contiguous().clone()
    return t


def save_atomic(obj: dict, dst: str, overwrite: bool) -> None:
    """Write ``obj`` (with its digests, ``add_digest``) to ``dst`` atomically."""
    add_digest(obj)
    try:
        with atomic_path(dst, overwrite=overwrite) as tmp:
            torch.save(obj, tmp)
    except FileExistsError:
        raise ConversionError(f'{dst} exists (use --overwrite to replace it)') from None
    except OSError as err:
        raise ConversionError(str(err)) from err


# --------------------------------------------------------------------------------------
# command line

def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Convert an official Vision-RWKV checkpoint to the mmvrwkv / '
        'mmpretrain layout ({"state_dict": ..., "meta": ...}).')
    parser.add_argument('src', help='official checkpoint (.pth)')
    parser.add_argument('dst', help='output file')
    ref = parser.add_mutually_exclusive_group()
    ref.add_argument('--arch', choices=sorted(ARCH_CONFIGS),
                     help='compare with the model of configs/vrwkv/' + ' | '.join(
                         f'{a}: {c}' for a, c in ARCH_CONFIGS.items())
                     + ' (of configs/vrwkv6/' + ' | '.join(
                         f'{a}: {c}' for a, c in ARCH_CONFIGS_V6.items())
                     + ' for a VRWKV6 checkpoint)')
    ref.add_argument('--config', help='compare with the model of this config (without '
                     '--arch or --config the arch is inferred from the embedding width)')
    parser.add_argument('--num-classes', type=int, default=None,
                        help='override the head size of the reference model '
                        '(e.g. 21841 for vrwkv_l_in22k_192.pth)')
    parser.add_argument('--img-size', type=int, default=None,
                        help='override the backbone img_size (pos-embed grid) of the '
                        'reference model')
    parser.add_argument('--ema', action='store_true',
                        help='convert the EMA weights (model_ema / state_dict_ema) instead')
    parser.add_argument('--strict', action='store_true',
                        help='refuse unexpected keys too (default: report and drop them)')
    parser.add_argument('--allow-missing', action='store_true',
                        help='write even if keys of the reference model are missing or have '
                        'another shape (shape-mismatched keys are dropped)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing DST')
    parser.add_argument('--unsafe-load', action='store_true',
                        help='if SRC is not weights-only, load it with weights_only=False '
                        '(runs code from the file: only for trusted files)')
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> None:
    if osp.exists(args.dst) and not args.overwrite:
        raise ConversionError(f'{args.dst} exists (use --overwrite to replace it)')
    if osp.exists(args.dst) and osp.samefile(args.src, args.dst):
        raise ConversionError('SRC and DST are the same file')

    ckpt = load_source(args.src, unsafe=args.unsafe_load)
    src_sd, wrapper = unwrap(ckpt, ema=args.ema)
    print(f'read {args.src}: {len(src_sd)} entries under '
          f'{"/".join(wrapper) or "the top level (raw state dict)"}')
    if not args.ema and isinstance(ckpt, Mapping) and any(
            isinstance(ckpt.get(k), Mapping) for k in EMA_KEYS):
        print('note: the checkpoint also holds EMA weights; --ema converts those instead')

    converted, non_tensors = convert_state_dict(src_sd)
    if not args.config:
        family = infer_family(converted)
        print(f'backbone family: {family.upper()} (from the spatial-mixer keys)')
        if not args.arch:
            args.arch = infer_arch(converted)
            print(f'inferred --arch {args.arch} from the embedding width')
    config = args.config if args.config else find_config(args.arch, family)
    reference = reference_shapes(config, args.num_classes, args.img_size)
    missing, unexpected, mismatched = compare_state_dict(converted, reference)

    print(f'reference: {config}'
          + (f' (num_classes={args.num_classes})' if args.num_classes else '')
          + (f' (img_size={args.img_size})' if args.img_size else '')
          + f': {len(reference)} tensors')
    for key in non_tensors:
        print(f'dropped non-tensor entry: {key}')
    if unexpected:
        print(f'unexpected keys ({len(unexpected)}, not in the reference model'
              f'{"" if args.strict else ", dropped"}): {short_list(unexpected, MAX_LISTED)}')
    if mismatched:
        print(f'shape mismatches ({len(mismatched)}): ' + short_list(
            [f'{k} {list(s)} vs model {list(r)}' for k, s, r in mismatched], MAX_LISTED))
    if missing:
        print(f'missing keys ({len(missing)}, in the model but not in the checkpoint): '
              f'{short_list(missing, MAX_LISTED)}')

    problems = []
    if (missing or mismatched) and not args.allow_missing:
        if missing:
            problems.append(f'{len(missing)} missing key(s): {short_list(missing, MAX_LISTED)}')
        if mismatched:
            problems.append(f'{len(mismatched)} shape mismatch(es): ' + short_list(
                [f'{k} {list(s)} vs model {list(r)}' for k, s, r in mismatched], MAX_LISTED))
        problems.append('the output would leave parameters of the model uninitialised '
                        '(check --arch/--config/--num-classes/--img-size, or pass '
                        '--allow-missing to write a partial model)')
    if unexpected and args.strict:
        problems.append(f'{len(unexpected)} unexpected key(s) with --strict: '
                        f'{short_list(unexpected, MAX_LISTED)}')
    if problems:
        raise ConversionError('refusing to write ' + args.dst + ':\n  ' + '\n  '.join(problems))

    drop = set(unexpected) | {k for k, _, _ in mismatched}
    state_dict = OrderedDict((k, _compact(v)) for k, v in converted.items() if k not in drop)
    meta = dict(
        converted_from=osp.basename(args.src),
        source_wrapper='/'.join(wrapper),
        ema=bool(args.ema),
        converter='tools/model_converters/vrwkv2mmvrwkv.py',
        reference_config=osp.basename(config),
        num_classes=args.num_classes,
        img_size=args.img_size,
        mmvrwkv_version=mmvrwkv.__version__,
        missing_keys=sorted(set(missing) | {k for k, _, _ in mismatched}),
        dropped_keys=sorted(drop - {k for k, _, _ in mismatched}),
    )
    save_atomic(dict(state_dict=state_dict, meta=meta), args.dst, args.overwrite)
    n_params = sum(v.numel() for v in state_dict.values())
    print(f'wrote {args.dst}: {len(state_dict)} tensors, {n_params / 1e6:.2f} M values'
          + (f' ({len(meta["missing_keys"])} keys of the model missing)'
             if meta['missing_keys'] else ''))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except ConversionError as err:
        print(f'ERROR: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
