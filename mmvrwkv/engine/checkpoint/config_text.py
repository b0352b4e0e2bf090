"""Config texts inside a checkpoint: upstream executes them, so they never leave the loader."""
import ast
from typing import Any, Optional


#: Longest ``meta['config']`` text that is parsed for ``gpu_ids`` (a config is a few 10 kB).
_MAX_CONFIG_TEXT = 1 << 20


def literal_gpu_ids(config_text: str) -> Optional[list]:
    """``gpu_ids`` of a config text if it is a top-level literal assignment, else None.

    Parses, never executes: the text comes from a checkpoint.
    """
    if not isinstance(config_text, str) or len(config_text) > _MAX_CONFIG_TEXT:
        return None
    try:
        tree = ast.parse(config_text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    ids = None
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == 'gpu_ids'):
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
                value = None
            ok = (isinstance(value, (list, tuple))
                  and all(isinstance(i, int) and not isinstance(i, bool) for i in value))
            ids = list(value) if ok else None
    return ids


def neutralise_meta_config(checkpoint: Any) -> None:
    """Replace ``checkpoint['meta']['config']`` by ``gpu_ids = [...]`` (or remove it).

    mmengine's ``Runner.resume`` passes that text to ``Config.fromstring``, which runs it as
    Python; the only thing it reads from it is ``gpu_ids``, which this keeps as a literal.
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or 'config' not in meta:
        return
    ids = literal_gpu_ids(meta['config'])
    if ids is None:
        del meta['config']
    else:
        meta['config'] = f'gpu_ids = {ids!r}\n'


#: Config texts that upstream executes with ``Config.fromstring`` and that are dropped:
#: ``BaseInferencer._init_model`` (mmengine ``infer.py``; mmdet's ``DetInferencer`` and
#: mmseg's ``MMSegInferencer`` with ``model=None``) reads ``message_hub.runtime_info['cfg']``,
#: then ``meta['cfg']``. Parsing them as data would not be safe either: building the model
#: from them imports modules and resolves ``type`` names that the text chooses.
DROPPED_CONFIG_TEXTS = (('meta', 'cfg'), ('message_hub', 'runtime_info', 'cfg'))


def _parent(checkpoint: Any, path: tuple) -> Optional[dict]:
    node = checkpoint
    for key in path[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


def neutralise_config_texts(checkpoint: Any) -> None:
    """Neutralise every config text of ``checkpoint`` that upstream code would execute.

    ``meta['config']`` (``Runner.resume``, which only reads ``gpu_ids`` from it) becomes
    ``gpu_ids = [...]`` or is removed (:func:`neutralise_meta_config`); ``meta['cfg']`` and
    ``message_hub.runtime_info['cfg']`` are removed (:data:`DROPPED_CONFIG_TEXTS`), so an
    inferencer given only weights finds no config and has to be given one. Nothing else in
    mmengine 0.10, mmpretrain 1.2, mmdet 3.3 or mmseg 1.2 executes text from a checkpoint.
    Run after :func:`~.structure.validate_checkpoint`, which makes every container a dict.
    """
    neutralise_meta_config(checkpoint)
    for path in DROPPED_CONFIG_TEXTS:
        parent = _parent(checkpoint, path)
        if parent is not None:
            parent.pop(path[-1], None)
