"""Upstream callers made safe for mmvrwkv models (installed by ``import mmvrwkv``).

Three things upstream does with a checkpoint that mmvrwkv does not let happen:

* **Building a model from the config text in a checkpoint.** mmengine's ``BaseInferencer``
  with ``model=None`` (``DetInferencer(model=None, weights=CKPT)``,
  ``MMSegInferencer(None, weights=CKPT)``) reads ``message_hub.runtime_info['cfg']`` or
  ``meta['cfg']`` and runs it with ``Config.fromstring``: the text executes as Python, and
  the registry then calls whatever its ``type`` names (``Registry.get`` falls back to
  importing any dotted name). Read as data it would still name callables, so the inferencer
  refuses with :class:`CheckpointConfigError` (the file, the reason, the config to pass).
  The file is first read through mmvrwkv's gate, so a file that is bad in itself gets the
  gate's own refusal; its config text is never used. mmpretrain's inferencers have no such
  mode.

* **Loading weights that do not fit.** mmpretrain's ``get_model(name, pretrained=PATH)``,
  ``ImageClassificationInferencer``, mmengine's ``load_checkpoint`` (used by
  ``init_detector``, mmseg's ``init_model``, the tools), the mmengine-based inferencers
  (``_load_checkpoint_to_model``) and ``init_cfg=dict(type='Pretrained', ...)`` all load
  what fits and only warn, so a checkpoint of another model gives random predictions or an
  unrelated crash later. For a module that holds an mmvrwkv module, these refuse with
  ``CheckpointMismatchError``, listing the first missing, unexpected and mis-shaped keys.

* **Removing what restored hook state names.** mmengine's ``CheckpointHook`` removes the
  files that a resumed checkpoint's ``keep_ckpt_ids`` and ``best_ckpt*`` name, in its own
  ``out_dir``, and publishes beside the best path. Patched (so every subclass too), it uses
  them only when the run resumed from a checkpoint of ``out_dir``, and checks each removal
  and published path at use time (``hook_state.check_restored_hook_state``,
  ``checked_removals``).

Scope of the strictness: the module that receives the weights (the whole model for
``get_model``, the inferencers and ``load_checkpoint``; the module carrying the init_cfg for
``Pretrained``) contains a module whose class is defined in mmvrwkv. Anything else (a pure
mmdet ResNet with ``torchvision://`` weights, mmpretrain's own models) loads as upstream
does. The Runner's ``load_from`` / ``resume`` are not touched here: ``SafeCheckpointHook``
checks them (``--allow-partial``).

Loading what fits on purpose, explicitly:

* ``with mmvrwkv.apis.allow_partial_loading(): get_model(...)`` (also the inferencers and
  ``load_checkpoint``);
* ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=..., allow_partial=True)``.

A passed ``strict=True`` stays strict inside :func:`allow_partial_loading`.
"""
import contextlib
import contextvars
import functools
import re
import sys
from collections import OrderedDict
from typing import Any, Callable, Iterator, List, Mapping, Optional, Sequence

import torch

from .errors import CheckpointConfigError, CheckpointError
from .matching import StateDictMismatch, load_state_dict_reporting, short_list

_PARTIAL: 'contextvars.ContextVar[bool]' = contextvars.ContextVar(
    'mmvrwkv_allow_partial_loading', default=False)
_SOURCE: 'contextvars.ContextVar[Optional[str]]' = contextvars.ContextVar(
    'mmvrwkv_checkpoint_source', default=None)

#: How to load what fits on purpose (the end of every mismatch message).
PARTIAL_HINT = ('To load only what fits on purpose, load inside `with '
                'mmvrwkv.apis.allow_partial_loading():` (get_model, the inferencers, '
                "load_checkpoint) or add allow_partial=True to the 'Pretrained' init_cfg.")
_DEFAULT_REVISE_KEYS = [(r'^module\.', '')]
_INSTALLED: List[bool] = []


# ----------------------------------------------------------------------------- opt-in

@contextlib.contextmanager
def allow_partial_loading() -> Iterator[None]:
    """Inside, mmvrwkv models load what fits of a checkpoint and only warn (as upstream)."""
    token = _PARTIAL.set(True)
    try:
        yield
    finally:
        _PARTIAL.reset(token)


def partial_loading_allowed() -> bool:
    """Whether the caller is inside :func:`allow_partial_loading`."""
    return _PARTIAL.get()


@contextlib.contextmanager
def _named_source(source: Any) -> Iterator[None]:
    """The checkpoint being loaded, for the messages of the loads inside."""
    token = _SOURCE.set(None if source is None else str(source))
    try:
        yield
    finally:
        _SOURCE.reset(token)


def holds_mmvrwkv_module(module: Any) -> bool:
    """Whether ``module`` or one of its submodules is of a class defined in mmvrwkv."""
    if not isinstance(module, torch.nn.Module):
        return False
    return any(type(m).__module__.partition('.')[0] == 'mmvrwkv' for m in module.modules())


def _strict_here(module: Any, strict: bool) -> bool:
    return holds_mmvrwkv_module(module) and (bool(strict) or not _PARTIAL.get())


# ----------------------------------------------------------------------------- strict loads

def mismatch_error(module: torch.nn.Module, source: str, mismatch: StateDictMismatch,
                   other: Sequence[str] = ()) -> CheckpointError:
    """The refusal of a checkpoint that does not fit ``module`` (first keys listed)."""
    from mmvrwkv.engine.hooks.safe_checkpoint_hook import CheckpointMismatchError
    parts = [mismatch.describe()] if mismatch else []
    if other:
        parts.append(f'{len(other)} other error(s): {short_list(other, 3)}')
    return CheckpointMismatchError(
        f'{source} does not match the model ({type(module).__name__}): {"; ".join(parts)}. '
        'Upstream would load what fits, only warn, and leave the rest of the model at its '
        'random init. Check that the checkpoint was made for this config (arch, num_classes, '
        f'img_size). {PARTIAL_HINT}')


def load_weights_strictly(module: torch.nn.Module, state_dict: Mapping[str, Any],
                          source: str) -> None:
    """Load ``state_dict`` into ``module`` or raise ``CheckpointMismatchError``.

    The model's load hooks run first (``pos_embed`` resizing, renames of old keys), so only
    what the model still cannot take counts. On refusal the module holds a partial load:
    every caller here raises out of the function that built it.
    """
    mismatch, other = load_state_dict_reporting(module, state_dict)
    if mismatch or other:
        raise mismatch_error(module, source, mismatch, other)


def _weights_of(checkpoint: Mapping[str, Any], revise_keys: Any) -> 'OrderedDict[str, Any]':
    """mmengine's choice of weights (``state_dict`` or the checkpoint) with ``revise_keys``."""
    state_dict = checkpoint['state_dict'] if 'state_dict' in checkpoint else checkpoint
    metadata = getattr(state_dict, '_metadata', OrderedDict())
    for pattern, repl in revise_keys:
        state_dict = OrderedDict((re.sub(pattern, repl, k), v) for k, v in state_dict.items())
    state_dict = OrderedDict(state_dict)
    state_dict._metadata = metadata  # type: ignore[attr-defined]
    return state_dict


def _strict_load_checkpoint_to_model(original: Callable) -> Callable:
    """``mmengine.runner.checkpoint._load_checkpoint_to_model``, strict in scope."""
    @functools.wraps(original)
    def _load_checkpoint_to_model(model, checkpoint, strict=False, logger=None,
                                  revise_keys=_DEFAULT_REVISE_KEYS):
        if not _strict_here(model, strict):
            return original(model, checkpoint, strict, logger, revise_keys)
        load_weights_strictly(model, _weights_of(checkpoint, revise_keys),
                              _SOURCE.get() or 'the checkpoint')
        return checkpoint
    _load_checkpoint_to_model._mmvrwkv_original = original  # type: ignore[attr-defined]
    return _load_checkpoint_to_model


def _strict_load_checkpoint(original: Callable) -> Callable:
    """``mmengine.runner.load_checkpoint``, strict in scope (get_model, init_detector, ...)."""
    @functools.wraps(original)
    def load_checkpoint(model, filename, map_location=None, strict=False, logger=None,
                        revise_keys=_DEFAULT_REVISE_KEYS):
        if not _strict_here(model, strict):
            return original(model, filename, map_location, strict, logger, revise_keys)
        from mmengine.runner import checkpoint as ckpt_module
        checkpoint = ckpt_module._load_checkpoint(filename, map_location, logger)
        if not isinstance(checkpoint, dict):
            raise CheckpointError(f'{filename}: holds a {type(checkpoint).__name__}, not a '
                                  'dict with a state_dict')
        load_weights_strictly(model, _weights_of(checkpoint, revise_keys), str(filename))
        return checkpoint
    load_checkpoint._mmvrwkv_original = original  # type: ignore[attr-defined]
    return load_checkpoint


# ----------------------------------------------------------------------------- Pretrained init

def _patch_pretrained_init() -> None:
    """``init_cfg=dict(type='Pretrained', ...)`` strict in scope, ``allow_partial=True``."""
    from mmengine.model.weight_init import PretrainedInit, update_init_info

    original_init, original_call = PretrainedInit.__init__, PretrainedInit.__call__

    @functools.wraps(original_init)
    def __init__(self, checkpoint, prefix=None, map_location='cpu', allow_partial=False):
        original_init(self, checkpoint, prefix=prefix, map_location=map_location)
        self.allow_partial = bool(allow_partial)

    @functools.wraps(original_call)
    def __call__(self, module):
        allow = getattr(self, 'allow_partial', False)
        if allow or not holds_mmvrwkv_module(module):
            with allow_partial_loading() if allow else contextlib.nullcontext():
                return original_call(self, module)
        from mmengine.logging import print_log
        from mmengine.runner.checkpoint import _load_checkpoint
        checkpoint = _load_checkpoint(self.checkpoint, map_location=self.map_location)
        if not isinstance(checkpoint, dict):
            raise CheckpointError(f'{self.checkpoint}: holds a {type(checkpoint).__name__}, '
                                  'not a dict with a state_dict')
        if self.prefix is None:
            print_log(f'load model from: {self.checkpoint}', logger='current')
            weights, source = _weights_of(checkpoint, _DEFAULT_REVISE_KEYS), self.checkpoint
        else:
            print_log(f'load {self.prefix} in model from: {self.checkpoint}', logger='current')
            prefix = self.prefix if self.prefix.endswith('.') else self.prefix + '.'
            state_dict = checkpoint.get('state_dict', checkpoint)
            weights = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items()
                                  if k.startswith(prefix))
            source = f'{self.checkpoint} (the keys under {prefix!r})'
            if not weights:
                source = f'{self.checkpoint} (no key starts with {prefix!r})'
        load_weights_strictly(module, weights, str(source))
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=self._get_init_info())

    PretrainedInit.__init__, PretrainedInit.__call__ = __init__, __call__


# ----------------------------------------------------------------------------- inferencers

def config_refusal(caller: str, weights: Any) -> CheckpointConfigError:
    """The refusal of ``caller(model=None, weights=...)``."""
    return CheckpointConfigError(
        f'{weights}: refused: {caller}(model=None) would build the model from the config '
        "text stored in this checkpoint (message_hub.runtime_info['cfg'] or meta['cfg']): "
        "mmengine executes that text as Python and lets its 'type' names call any function, "
        'so the config of a checkpoint you were given would run as code. mmvrwkv never '
        "builds a model from a checkpoint's config. Pass the config: "
        f"{caller}(model='CONFIG.py', weights={str(weights)!r}).")


def _refuse_config_from(caller: str, weights: Any) -> None:
    """Read ``weights`` through the gate (its own refusals first), then refuse to build the
    model from its config text."""
    from mmengine.runner.checkpoint import _load_checkpoint
    _load_checkpoint(weights, map_location='cpu')
    raise config_refusal(caller, weights)


def _bind_strict_loader(cls: type, strict_loader: Callable) -> None:
    """Point the modules of ``cls``'s classes (mmengine, mmdet, mmseg, ...) at the strict
    ``_load_checkpoint_to_model`` (each imported upstream's function by name)."""
    original = strict_loader._mmvrwkv_original  # type: ignore[attr-defined]
    for klass in cls.__mro__:
        namespace = getattr(sys.modules.get(klass.__module__), '__dict__', None)
        if isinstance(namespace, dict) and namespace.get('_load_checkpoint_to_model') is original:
            namespace['_load_checkpoint_to_model'] = strict_loader


def _patch_base_inferencer(strict_loader: Callable) -> None:
    """mmengine's ``BaseInferencer``: ``model=None`` refused, weights loaded strictly."""
    from mmengine.infer.infer import BaseInferencer

    original_init, original_init_model = BaseInferencer.__init__, BaseInferencer._init_model

    @functools.wraps(original_init)
    def __init__(self, model=None, weights=None, *args, **kwargs):
        if model is None and weights is not None:
            _refuse_config_from(type(self).__name__, weights)
        original_init(self, model, weights, *args, **kwargs)

    @functools.wraps(original_init_model)
    def _init_model(self, cfg, weights, device='cpu'):
        if not cfg and weights is not None:
            _refuse_config_from(type(self).__name__, weights)
        _bind_strict_loader(type(self), strict_loader)
        with _named_source(weights):
            return original_init_model(self, cfg, weights, device)

    BaseInferencer.__init__, BaseInferencer._init_model = __init__, _init_model


# ----------------------------------------------------------------------------- CheckpointHook

def _patch_checkpoint_hook() -> None:
    """mmengine's ``CheckpointHook`` (and so every subclass, SafeCheckpointHook included)
    uses restored ``keep_ckpt_ids`` / ``best_ckpt*`` only when they are checkpoints of its
    own ``out_dir`` and the run resumed from a checkpoint there, and checks every removal
    and published path at use time (``hook_state``)."""
    from mmengine.hooks import CheckpointHook

    from . import hook_state

    originals = {name: getattr(CheckpointHook, name) for name in (
        'before_train', '_save_checkpoint_with_step', '_save_best_checkpoint',
        '_publish_model')}

    @functools.wraps(originals['before_train'])
    def before_train(self, runner) -> None:
        info = runner.message_hub.runtime_info
        # upstream removes what restored ids name right inside before_train: checked after
        restored_ids = info.pop(hook_state.IDS_KEY, None) if self.max_keep_ckpts > 0 else None
        originals['before_train'](self, runner)
        hook_state.check_restored_hook_state(self, runner, restored_ids)

    @functools.wraps(originals['_save_checkpoint_with_step'])
    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        with hook_state.checked_removals(self):
            return originals['_save_checkpoint_with_step'](self, runner, step, meta)

    @functools.wraps(originals['_save_best_checkpoint'])
    def _save_best_checkpoint(self, runner, metrics) -> None:
        with hook_state.checked_removals(self):
            return originals['_save_best_checkpoint'](self, runner, metrics)

    @functools.wraps(originals['_publish_model'])
    def _publish_model(self, runner, ckpt_path) -> None:
        if hook_state.is_local(self):  # it writes beside ckpt_path: only a run checkpoint
            checked = hook_state.checked_checkpoint_path(ckpt_path, self.out_dir)
            if checked is None:
                runner.logger.warning(f'{type(self).__name__}: not publishing {ckpt_path!r}: '
                                      f'it is not a checkpoint file inside {self.out_dir}')
                return
            ckpt_path = checked
        return originals['_publish_model'](self, runner, ckpt_path)

    for name, patched in (('before_train', before_train),
                          ('_save_checkpoint_with_step', _save_checkpoint_with_step),
                          ('_save_best_checkpoint', _save_best_checkpoint),
                          ('_publish_model', _publish_model)):
        patched._mmvrwkv_original = originals[name]  # type: ignore[attr-defined]
        setattr(CheckpointHook, name, patched)


# ----------------------------------------------------------------------------- installation

def _rebind_everywhere(name: str, original: Callable, replacement: Callable) -> None:
    """Every already imported module that holds ``original`` under ``name`` gets
    ``replacement`` (modules imported later take it from mmengine)."""
    for module in list(sys.modules.values()):
        namespace = getattr(module, '__dict__', None)
        if isinstance(namespace, dict) and namespace.get(name) is original:
            namespace[name] = replacement


def install_upstream_patches() -> None:
    """Install the patches described in the module docstring (idempotent; ``import
    mmvrwkv`` calls it). Needs mmengine; mmpretrain, mmdet and mmseg are optional."""
    if _INSTALLED:
        return
    import mmengine.infer.infer as infer_module
    import mmengine.runner  # noqa: F401  (the package re-exports load_checkpoint)
    from mmengine.runner import checkpoint as ckpt_module

    load_checkpoint = _strict_load_checkpoint(ckpt_module.load_checkpoint)
    _rebind_everywhere('load_checkpoint', ckpt_module.load_checkpoint, load_checkpoint)
    # Only the inferencers' own reference: the Runner's load_from and mmengine's strategies
    # keep theirs (SafeCheckpointHook checks the Runner's loads, --allow-partial).
    original = ckpt_module._load_checkpoint_to_model
    strict_loader = _strict_load_checkpoint_to_model(original)
    if infer_module.__dict__.get('_load_checkpoint_to_model') is original:
        infer_module._load_checkpoint_to_model = strict_loader
    _patch_base_inferencer(strict_loader)
    _patch_pretrained_init()
    _patch_checkpoint_hook()
    _INSTALLED.append(True)
