"""Our classification models in mmpretrain's model hub.

After :func:`register_mmpretrain_models` (run by ``import mmvrwkv``),
``mmpretrain.get_model('vrwkv-tiny_8xb128_in1k')``, ``list_models('*vrwkv*')`` and
``inference_model(...)`` know the models of ``configs/vrwkv/metafile.yml``. Only metafiles
whose models are classifiers are registered: mmpretrain builds every hub model as an
mmpretrain model, so a Mask R-CNN or UperNet entry there would only fail later.

The metafiles' ``Weights`` are the official checkpoints of the original repository (the
``Converted From`` weights). ``get_model(..., pretrained=True)`` loads them through
mmengine's non-strict ``load_checkpoint``, which would only warn about keys that do not fit.
So each such URL gets a checkpoint loader that downloads through mmvrwkv's safe loader,
converts with the key map of ``tools/model_converters/vrwkv2mmvrwkv.py``
(``mmvrwkv.engine.checkpoint.conversion``) and refuses a checkpoint that leaves parameters
of the model uninitialised.

A metafile may record the SHA-256 of a model's ``Weights`` file as ``Weights SHA256``
(64 hex digits, or a prefix of 8 or more): :func:`weight_hashes` reads them, and mmvrwkv's
http loader (``engine/checkpoint/schemes.py``) refuses a download of that URL whose content
has another hash.
"""
import functools
import os.path as osp
import re
from typing import Any, Dict, List, Mapping, Optional

import yaml

import mmvrwkv

#: The task of the models that go into mmpretrain's hub.
HUB_TASK = 'Image Classification'
#: ``official checkpoint URL -> config path`` of the registered models.
_OFFICIAL_WEIGHTS: Dict[str, str] = {}
#: A model's key in a metafile for the SHA-256 of its ``Weights`` file (optional).
WEIGHTS_SHA256 = 'Weights SHA256'
_SHA256_RE = re.compile(r'[0-9a-f]{8,64}')


def package_root() -> str:
    """Folder holding ``model-index.yml``, ``configs/`` and ``tools/``: ``mmvrwkv/.mim`` of
    an installed package, else the checkout the package was imported from."""
    package = osp.dirname(osp.abspath(mmvrwkv.__file__))
    for root in (osp.join(package, '.mim'), osp.dirname(package)):
        if osp.isfile(osp.join(root, 'model-index.yml')):
            return root
    raise FileNotFoundError(
        f'model-index.yml is neither in {osp.join(package, ".mim")} (installed package) nor '
        f'in {osp.dirname(package)} (checkout): reinstall mmvrwkv with '
        '`pip install --no-build-isolation .`')


def classification_metafiles(root: str) -> List[str]:
    """Paths of the metafiles in ``root``'s model index whose models are all classifiers."""
    with open(osp.join(root, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    found = []
    for rel in index.get('Import', []):
        path = osp.join(root, rel)
        with open(path) as f:
            models = yaml.safe_load(f).get('Models', [])
        tasks = {r['Task'] for m in models for r in m.get('Results') or []}
        if tasks == {HUB_TASK}:
            found.append(path)
    return found


def metafile_weight_hashes(metafile: str) -> Dict[str, str]:
    """``Weights URL -> SHA-256`` (lower-case hex, or a prefix) of the models of
    ``metafile`` that record a ``Weights SHA256``; ``ValueError`` naming the model for one
    that is not 8 to 64 hex digits, or that has no ``Weights``."""
    with open(metafile) as f:
        models = yaml.safe_load(f).get('Models') or []
    found = {}
    for model in models:
        if WEIGHTS_SHA256 not in model:
            continue
        digest = model[WEIGHTS_SHA256]  # (a string: unquoted digits would be a YAML number)
        digest = digest.strip().lower() if isinstance(digest, str) else digest
        if not model.get('Weights') or not (isinstance(digest, str)
                                            and _SHA256_RE.fullmatch(digest)):
            raise ValueError(
                f'{metafile}: model {model.get("Name")!r}: {WEIGHTS_SHA256} must be the '
                f'SHA-256 (8 to 64 hex digits, quoted) of its Weights file, got {digest!r}'
                + ('' if model.get('Weights') else ' and it has no Weights'))
        found[model['Weights']] = digest
    return found


@functools.lru_cache(maxsize=None)
def weight_hashes(root: Optional[str] = None) -> Dict[str, str]:
    """``URL -> SHA-256`` recorded by every metafile of the model index of ``root``
    (default :func:`package_root`), whatever the task. Read once per root."""
    root = root or package_root()
    with open(osp.join(root, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    found: Dict[str, str] = {}
    for rel in index.get('Import', []):
        found.update(metafile_weight_hashes(osp.join(root, rel)))
    return found


def register_mmpretrain_models() -> List[str]:
    """Register our classifiers with mmpretrain's ``ModelHub`` (idempotent) and the loader
    of their official weights; returns the model names. Needs mmpretrain."""
    from mmengine.runner.checkpoint import CheckpointLoader
    from modelindex.load_model_index import load
    from mmpretrain.apis.model import ModelHub

    from mmvrwkv.engine.checkpoint.schemes import gated_loader

    root = package_root()
    names = []
    for metafile in classification_metafiles(root):
        index = load(metafile)
        index.build_models_with_collections()
        if not all(ModelHub.has(m.name.lower()) for m in index.models):
            # (register_model_index refuses names it already holds: once per metafile)
            ModelHub.register_model_index(metafile, config_prefix=root)
        for model in index.models:
            names.append(model.name)
            source = (model.data.get('Converted From') or {}).get('Weights')
            if model.weights and model.weights == source:
                _OFFICIAL_WEIGHTS[model.weights] = osp.join(root, model.config)
    if _OFFICIAL_WEIGHTS:  # mmengine reads prefixes as regular expressions: match literally
        CheckpointLoader.register_scheme(
            prefixes=[re.escape(url) + '$' for url in _OFFICIAL_WEIGHTS],
            loader=gated_loader(load_official_checkpoint), force=True)  # gate: see schemes
    return names


def convert_official(checkpoint: Any, config: str, source: str = 'the checkpoint'
                     ) -> Dict[str, Any]:
    """An official checkpoint as ``{'state_dict', 'meta'}`` for the classifier of
    ``config``; ``CheckpointMismatchError`` if it leaves any parameter uninitialised."""
    from mmvrwkv.engine import CheckpointMismatchError
    from mmvrwkv.engine.checkpoint import (compare_state_dict, convert_state_dict,
                                           find_state_dict, reference_shapes, short_list)

    weights, _ = find_state_dict(checkpoint)
    converted, _ = convert_state_dict(weights)
    missing, unexpected, mismatched = compare_state_dict(converted, reference_shapes(config))
    if missing or mismatched:
        raise CheckpointMismatchError(
            f'{source} does not fit the model of {osp.basename(config)} after conversion: '
            f'{len(missing)} missing key(s) [{short_list(missing)}], {len(mismatched)} '
            f'shape mismatch(es) [{short_list(k for k, _, _ in mismatched)}]; convert it '
            'with tools/model_converters/vrwkv2mmvrwkv.py (it reports every key) and pass '
            'the output as pretrained=')
    state_dict = {k: v for k, v in converted.items() if k not in set(unexpected)}
    meta = checkpoint.get('meta') if isinstance(checkpoint, Mapping) else None
    meta = dict(meta) if isinstance(meta, Mapping) else {}  # get_model reads CLASSES here
    meta['converted_from'] = source
    return {'state_dict': state_dict, 'meta': meta}


def load_official_checkpoint(filename: str, map_location: Optional[Any] = None,
                             **kwargs: Any) -> Dict[str, Any]:
    """mmengine checkpoint loader of the official URLs: safe download (the metafile's
    hash checked when it records one) + load, conversion."""
    from mmvrwkv.engine.checkpoint.schemes import load_from_http
    checkpoint = load_from_http(filename, map_location=map_location, **kwargs)
    return convert_official(checkpoint, _OFFICIAL_WEIGHTS[filename], source=filename)
