"""Restored hook state that names files: only checkpoints of the loaded file's own run survive.

mmengine's ``CheckpointHook`` takes paths from the message hub of a resumed checkpoint
(``message_hub.runtime_info``) and acts on them without a check:

- ``best_ckpt`` / ``best_ckpt_<metric>``: ``save_best`` removes that path (``rmtree`` for a
  folder) as soon as a better score is reached; ``published_keys`` writes a file beside it;
- ``keep_ckpt_ids``: ``max_keep_ckpts`` removes ``out_dir/filename_tmpl.format(id)`` for ids
  beyond the limit right in ``before_train``, then one id per saved checkpoint;
- ``last_ckpt``: not read back upstream, but a restored path like the others, so checked.

No other mmengine, mmpretrain, mmdet or mmseg hook reads a file name from restored state.
:func:`drop_foreign_paths` runs in the loader, so it also protects mmengine's plain
``CheckpointHook``: a restored path is kept only if it is a regular ``*.pth`` file (not a
folder, not a symlink) in the folder of the checkpoint being loaded, which is the run's
``out_dir`` when a run resumes from its own checkpoint; a best path must also be named
``best_*.pth``, as ``save_best`` names them. ``keep_ckpt_ids`` are kept only if
they are distinct ints that name existing checkpoints of that folder, through the loaded
file's own name pattern (``epoch_{}.pth``), none newer than the loaded checkpoint itself.
Everything else is dropped with a warning that names the key and the value.
"""
import logging
import os
import os.path as osp
import re
import stat
from typing import Any, List, Optional, Tuple

#: runtime_info keys whose value is a path that a hook removes or writes beside.
PATH_KEYS = ('last_ckpt', 'best_ckpt')
#: runtime_info key of the ids that ``max_keep_ckpts`` deletes.
IDS_KEY = 'keep_ckpt_ids'
#: More ids than this are refused outright (a run keeps ``max_keep_ckpts`` of them).
MAX_IDS = 1000

_STEP_RE = re.compile(r'^(?P<pre>(?:.*\D)?)(?P<num>\d+)(?P<suf>\D*\.pth)$')


def is_path_key(key: Any) -> bool:
    """True for the runtime_info keys that hold a checkpoint path (``best_ckpt_acc``, ...)."""
    return isinstance(key, str) and (key in PATH_KEYS or key.startswith('best_ckpt_'))


def is_run_checkpoint(path: Any, folder: str, allow_dir: bool = False) -> bool:
    """True if ``path`` is an existing ``*.pth`` directly inside ``folder``: a regular file,
    or with ``allow_dir`` a real folder (deepspeed checkpoints); never a symlink.

    Both sides are compared after resolving symlinks of the folders, so a work dir reached
    through a link still counts; ``path`` itself must not be a link (its target could be
    anywhere).
    """
    if not isinstance(path, str) or not path.endswith('.pth') or '\0' in path:
        return False
    path = osp.abspath(path)
    try:
        mode = os.lstat(path).st_mode
        same_folder = osp.samefile(osp.dirname(path), folder)
    except (OSError, ValueError):
        return False
    return same_folder and (stat.S_ISREG(mode) or (allow_dir and stat.S_ISDIR(mode)))


def is_restored_path_ok(key: str, value: Any, folder: str) -> bool:
    """``value`` may stay under runtime_info ``key``: a checkpoint of ``folder``; for the
    ``best_ckpt*`` keys one named ``best_*.pth`` as ``save_best`` names them (so a restored
    best path can never make ``save_best`` remove a regular checkpoint)."""
    if key != 'last_ckpt' and not (isinstance(value, str)
                                   and osp.basename(value).startswith('best_')):
        return False
    return is_run_checkpoint(value, folder)


def _as_step(value: Any) -> Optional[int]:
    """``value`` as a checkpoint step: an int (numpy ints too), never a bool."""
    if isinstance(value, bool) or not hasattr(value, '__index__'):
        return None
    try:
        return int(value.__index__())
    except (TypeError, ValueError):
        return None


def filename_template(filename: str, meta: Any) -> Tuple[Optional[str], Optional[int], str]:
    """The ``filename_tmpl`` and step that name ``filename`` (``epoch_3.pth``: ``epoch_{}.pth``
    and 3), or ``(None, None, why not)``. The step must be the file's ``meta`` epoch or iter.
    """
    match = _STEP_RE.match(osp.basename(filename))
    if match is None:
        return None, None, f'the name {osp.basename(filename)!r} holds no step number'
    num = match.group('num')
    step = int(num)
    steps = [_as_step(meta.get(k)) for k in ('epoch', 'iter')] if isinstance(meta, dict) else []
    if step not in steps:
        return None, None, (f'the step {step} of its name is neither its meta epoch nor iter '
                            f'({", ".join(map(str, steps)) or "none"})')
    field = f'{{:0{len(num)}d}}' if len(num) > 1 and num.startswith('0') else '{}'
    return _literal(match.group('pre')) + field + _literal(match.group('suf')), step, ''


def _literal(text: str) -> str:
    """``text`` as literal text of a ``str.format`` template."""
    return text.replace('{', '{{').replace('}', '}}')


def split_checkpoint_ids(value: Any, filename: str, meta: Any) -> Tuple[List[int], List[Any], str]:
    """Split restored ``keep_ckpt_ids`` into those that name checkpoints of ``filename``'s run
    and the rest; the string says why the rest was refused."""
    if not isinstance(value, (list, tuple)):
        return [], [value], f'not a list but {type(value).__name__}'
    if len(value) > MAX_IDS:
        return [], list(value), f'{len(value)} ids, more than any run keeps ({MAX_IDS})'
    template, step, why = filename_template(filename, meta)
    if template is None:
        return [], list(value), why
    ids = [_as_step(v) for v in value]
    if step not in ids:
        return [], list(value), f'the loaded checkpoint (step {step}) is not among them'
    folder = osp.dirname(osp.realpath(filename))
    kept: List[int] = []
    rejected: List[Any] = []
    for raw, i in zip(value, ids):
        if (i is None or i in kept or i > step
                or not is_run_checkpoint(osp.join(folder, template.format(i)), folder)):
            rejected.append(raw)
        else:
            kept.append(i)
    return kept, rejected, (f'not distinct ints naming existing checkpoints {template} of '
                            f'{folder} up to step {step}')


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + '...'


def _warn(filename: str, dropped: List[str]) -> None:
    from mmengine.logging import print_log
    print_log(f'{filename}: dropped restored hook state {"; ".join(dropped)}. A checkpoint may '
              'only name checkpoint files of its own run, in its own folder (a hook would '
              'remove what these name)', logger='current', level=logging.WARNING)


def drop_foreign_paths(checkpoint: Any, filename: str) -> List[str]:
    """Drop restored paths that are not checkpoints of this run, warning with each name.

    Edits ``checkpoint['message_hub']['runtime_info']`` in place (see the module docstring)
    and returns the keys it dropped or shortened. Anything that is not the dict structure
    mmengine writes is left to the structure validation.
    """
    hub = checkpoint.get('message_hub') if isinstance(checkpoint, dict) else None
    info = hub.get('runtime_info') if isinstance(hub, dict) else None
    if not isinstance(info, dict):
        return []
    filename = os.fspath(filename)
    folder = osp.dirname(osp.realpath(filename))
    changed: List[str] = []
    dropped: List[str] = []
    for key in [k for k in info if is_path_key(k)]:
        value = info[key]
        if value is None or is_restored_path_ok(key, value, folder):
            continue
        dropped.append(f'runtime_info[{key!r}] = {_short(value)} (not a '
                       f'{"best " if key != "last_ckpt" else ""}checkpoint file in {folder})')
        del info[key]
        changed.append(key)
    if IDS_KEY in info:
        kept, rejected, why = split_checkpoint_ids(info[IDS_KEY], filename, checkpoint.get('meta'))
        if rejected:
            dropped.append(f'runtime_info[{IDS_KEY!r}] items {_short(rejected)} ({why})')
            changed.append(IDS_KEY)
        if not kept:
            del info[IDS_KEY]
        elif info[IDS_KEY] != kept or type(info[IDS_KEY]) is not list:
            info[IDS_KEY] = kept  # a plain list of ints, as upstream pops from it
    if dropped:
        _warn(filename, dropped)
    resumed = hub.get('resumed_keys')
    if isinstance(resumed, dict):
        for key in changed:
            if key not in info:
                resumed.pop(key, None)
    return changed
