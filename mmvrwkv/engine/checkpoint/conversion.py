"""Official Vision-RWKV weights -> an mmpretrain ``ImageClassifier`` of mmvrwkv.

The key map (:func:`map_key`), the backbone family and arch a checkpoint is of
(:func:`infer_family`, :func:`infer_arch`), the config of that arch (:func:`find_config`)
and the shapes of its model (:func:`reference_shapes`). Used by the converter command line
(through :mod:`.file_conversion`) and by the model hub's loader of the official URLs
(``mmvrwkv.apis.model_hub``). The layouts and the mapping are described in ``README.md``
beside this file. The architectures are the backbones' ``arch_zoo``: the ``--arch`` names,
which family has which, and the embedding width that tells them apart.
"""
import functools
import glob
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Tuple, Type

import torch

import mmvrwkv
from mmvrwkv.models.backbones import VRWKV, VRWKV6
from mmvrwkv.models.backbones.vrwkv import arch_names

#: First name component of the keys of a bare VRWKV / VRWKV6 backbone state dict.
BACKBONE_ROOTS = frozenset(['patch_embed', 'pos_embed', 'cls_token', 'layers', 'ln1'])
#: Backbone family -> its class (``arch_zoo``); the family is also its config folder and
#: the first part of its configs' names (``configs/vrwkv6/vrwkv6-tiny_*.py``).
FAMILIES: Dict[str, Type[VRWKV]] = {'vrwkv': VRWKV, 'vrwkv6': VRWKV6}
#: A key (after mapping) ending so exists only in VRWKV6 checkpoints.
V6_MARKER = '.att.time_maa_x'


class ConversionError(Exception):
    """A refusal or failure with a message for the user (the converter's exit status 1)."""


# ----------------------------------------------------------------------------- key mapping

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
    """Map all keys; returns (converted tensors, non-tensor entries dropped). Two keys that
    map to one raise :class:`ConversionError`."""
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


def compact(t: torch.Tensor) -> torch.Tensor:
    """A tensor that owns exactly its data (so torch.save stores no foreign storage)."""
    t = t.detach()
    if (not t.is_contiguous()
            or t.untyped_storage().nbytes() != t.numel() * t.element_size()):
        t = t.contiguous().clone()
    return t


# ----------------------------------------------------------------------------- architectures

def family_archs(family: str) -> List[str]:
    """The ``--arch`` names of ``family``: the full names of its ``arch_zoo``."""
    return arch_names(FAMILIES[family].arch_zoo)


def all_arch_names() -> List[str]:
    """The ``--arch`` names of every family, each once (VRWKV's order, then the others')."""
    return list(OrderedDict.fromkeys(a for family in FAMILIES for a in family_archs(family)))


def _width_names() -> Dict[int, str]:
    """Patch-embedding width -> ``--arch`` name, over every family."""
    return {int(FAMILIES[family].arch_zoo[name]['embed_dims']): name
            for family in FAMILIES for name in family_archs(family)}


def config_folders(family: str) -> List[str]:
    """Where the configs of ``family`` may be: the checkout the package is imported from,
    then the installed package's ``.mim``."""
    package = osp.dirname(osp.abspath(mmvrwkv.__file__))
    return [osp.normpath(osp.join(package, '..', 'configs', family)),
            osp.join(package, '.mim', 'configs', family)]


def arch_configs(family: str) -> Dict[str, str]:
    """``--arch`` -> file name of its config in ``configs/<family>`` (``<family>-<arch>_*.py``,
    one per arch); an arch without a config file maps to that pattern."""
    found = {}
    for arch in family_archs(family):
        pattern = f'{family}-{arch}_*.py'
        names = next((sorted(osp.basename(p) for p in glob.glob(osp.join(folder, pattern)))
                      for folder in config_folders(family) if osp.isdir(folder)), [])
        if len(names) > 1:
            raise ConversionError(f'configs/{family} holds {len(names)} configs for --arch '
                                  f'{arch} ({", ".join(names)}): use --config')
        found[arch] = names[0] if names else pattern
    return found


def infer_family(converted: Mapping[str, torch.Tensor]) -> str:
    """'vrwkv6' when the checkpoint has VRWKV6 spatial mixers (``att.time_maa_x``), else
    'vrwkv'."""
    return 'vrwkv6' if any(k.endswith(V6_MARKER) for k in converted) else 'vrwkv'


def infer_arch(converted: Mapping[str, torch.Tensor]) -> str:
    """--arch from the patch-embedding width C (the widths of the arch zoos: 192 / 384 /
    768 / 1024; for a VRWKV6 checkpoint :func:`find_config` then refuses an arch that
    family does not have)."""
    widths = _width_names()
    weight = converted.get('backbone.patch_embed.projection.weight')
    if weight is None or weight.ndim != 4 or int(weight.shape[0]) not in widths:
        shape = None if weight is None else list(weight.shape)
        raise ConversionError(
            'cannot infer the arch (backbone.patch_embed.projection.weight: '
            f'{shape}); pass --arch or --config')
    return widths[int(weight.shape[0])]


def find_config(arch: str, family: str = 'vrwkv') -> str:
    """Path of the ``configs/<family>`` config of ``arch`` (source tree or installed
    package)."""
    configs = arch_configs(family)
    if arch not in configs:
        raise ConversionError(f'the {family.upper()} family has no {arch!r} model '
                              f'(--arch {" | ".join(configs)} for a {family.upper()} '
                              'checkpoint); use --config')
    candidates = [osp.join(folder, configs[arch]) for folder in config_folders(family)]
    for cand in candidates:
        if osp.isfile(cand):
            return osp.normpath(cand)
    raise ConversionError(f'config {configs[arch]} for --arch {arch} not found (looked in '
                          f'{", ".join(osp.normpath(c) for c in candidates)}); use --config')


# ----------------------------------------------------------------------------- reference model

def reference_shapes(config: str, num_classes: Optional[int] = None,
                     img_size: Optional[int] = None) -> 'OrderedDict[str, torch.Size]':
    """Parameter/buffer shapes of the ImageClassifier built from ``config``."""
    key = (osp.abspath(config), osp.getmtime(config), num_classes, img_size)
    return OrderedDict(_reference_shapes_cached(*key))


@functools.lru_cache(maxsize=8)
def _reference_shapes_cached(config: str, mtime: float, num_classes: Optional[int],
                             img_size: Optional[int]) -> Tuple[Tuple[str, torch.Size], ...]:
    del mtime  # part of the cache key only
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings
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
