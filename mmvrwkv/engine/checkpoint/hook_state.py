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

The loader knows only the loaded file's folder; the hook acts in its ``out_dir`` through its
own ``filename_tmpl``. So the hooks check again at use time (the second half of this module,
used by mmengine's ``CheckpointHook`` as patched by ``upstream.install_upstream_patches`` and
so by every subclass, ``SafeCheckpointHook`` included): restored ids and best paths are
ignored when the run resumed from a checkpoint outside ``out_dir``, ids are read through the
hook's template up to the resumed step, and every removal and published path is checked right
before (:func:`checked_checkpoint_path`) and acted on only as the checked path.
"""
import contextlib
import logging
import os
import os.path as osp
import re
import shutil
import stat
from collections import deque
from typing import Any, Iterator, List, Optional, Tuple

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


def checked_checkpoint_path(path: Any, folder: str, allow_dir: bool = False) -> Optional[str]:
    """``path`` as ``<real folder>/<name>`` if it names an existing ``*.pth`` directly inside
    ``folder``: a regular file, or with ``allow_dir`` a real folder (deepspeed checkpoints);
    never a symlink. None otherwise.

    Refused on the string alone: anything but a str, a NUL, a name not ending in ``.pth``, a
    ``..`` component and any path that normalising would change (a trailing slash, ``//``,
    ``./``): the OS resolves a symlink before the ``..`` that follows it, a string check
    would not. The folder of ``path`` must resolve (symlinks followed) to ``folder``, so a
    work dir reached through a link still counts. Callers act on the returned path only,
    never on the string they were given.
    """
    if (not isinstance(path, str) or '\0' in path or not path.endswith('.pth')
            or osp.normpath(path) != path or '..' in path.split(osp.sep)):
        return None
    try:
        real_folder = osp.realpath(folder)
        if osp.realpath(osp.dirname(path) or os.curdir) != real_folder:
            return None
        checked = osp.join(real_folder, osp.basename(path))
        mode = os.lstat(checked).st_mode
    except (OSError, ValueError, TypeError):
        return None
    if stat.S_ISREG(mode) or (allow_dir and stat.S_ISDIR(mode)):
        return checked
    return None


def is_run_checkpoint(path: Any, folder: str, allow_dir: bool = False) -> bool:
    """True if ``path`` is an existing ``*.pth`` directly inside ``folder`` (see
    :func:`checked_checkpoint_path`)."""
    return checked_checkpoint_path(path, folder, allow_dir) is not None


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


# ----------------------------------------------------------------------------- at use time
# What every CheckpointHook does with restored state and before each removal: mmengine's
# plain hook (patched by ``upstream.install_upstream_patches``) and SafeCheckpointHook alike.
# The loader's check above knows only the loaded file's folder; these know the hook's
# ``out_dir``, ``filename_tmpl`` and the step the run resumed at.

def is_local(hook: Any) -> bool:
    """Whether ``hook`` writes to the local file system (the checks below apply there)."""
    from mmengine.fileio import LocalBackend
    return isinstance(getattr(hook, 'file_backend', None), LocalBackend)


def resumed_from(runner: Any) -> Tuple[bool, Optional[str]]:
    """Whether ``runner`` resumed, and from which file (None: not known)."""
    if not getattr(runner, '_resume', False) or not getattr(runner, '_has_loaded', False):
        return False, None
    name = getattr(runner, '_load_from', None)
    if not name:
        from mmengine.runner import find_latest_checkpoint
        name = find_latest_checkpoint(runner.work_dir)
    return True, (str(name) if name else None)


def foreign_source(runner: Any, out_dir: str) -> Optional[str]:
    """Why restored hook state cannot name files of ``out_dir`` (None: it may): the run
    resumed from a checkpoint that is not in ``out_dir`` (its ids and best paths name files
    of another folder, checked there by the loader, but would be acted on in ``out_dir``)."""
    resumed, source = resumed_from(runner)
    if not resumed:
        return None
    if source is None or not osp.isfile(source):
        return 'the resumed checkpoint is not known'
    try:
        if osp.samefile(osp.dirname(osp.abspath(source)), out_dir):
            return None
    except (OSError, ValueError):
        pass
    return f'it was resumed from {source}, which is not in {out_dir}'


def remove_checkpoint(hook: Any, path: str) -> bool:
    """Remove an old checkpoint of ``hook``: locally only a ``*.pth`` directly inside its
    ``out_dir`` (regular file, or a real folder), checked right before, and only the checked
    path; anything else is left with a warning. Other backends as upstream."""
    if not is_local(hook):
        backend = hook.file_backend
        if backend.isfile(path):
            backend.remove(path)
        elif backend.isdir(path):
            backend.rmtree(path)
        return True
    return _remove_local(hook, path)


def _remove_local(hook: Any, path: str) -> bool:
    """The local removal of :func:`remove_checkpoint`."""
    checked = checked_checkpoint_path(path, hook.out_dir, allow_dir=True)
    if checked is None:
        try:
            present = os.path.lexists(path)
        except (TypeError, ValueError):
            present = True
        if present:
            from mmengine.logging import print_log
            print_log(f'{type(hook).__name__}: not removing {_short(path)}: it is not a '
                      f'checkpoint file inside {hook.out_dir}', logger='current',
                      level=logging.WARNING)
        return False
    if stat.S_ISDIR(os.lstat(checked).st_mode):
        shutil.rmtree(checked)
    else:
        os.remove(checked)
    return True


@contextlib.contextmanager
def checked_removals(hook: Any) -> Iterator[None]:
    """Inside, ``hook.file_backend.remove`` / ``rmtree`` (what upstream's ``max_keep_ckpts``
    and ``save_best`` call) go through :func:`remove_checkpoint`. Only for a local backend;
    any other (a SafeCheckpointHook's deferring one included) is left as it is."""
    if not is_local(hook):
        yield
        return
    backend = hook.file_backend

    class Checking:
        def __getattr__(self, name: str) -> Any:
            return getattr(backend, name)

        def remove(self, path: str) -> None:
            _remove_local(hook, path)

        def rmtree(self, path: str) -> None:
            _remove_local(hook, path)

    hook.file_backend = Checking()
    try:
        yield
    finally:
        hook.file_backend = backend


def _ignore(hook: Any, runner: Any, key: str, value: Any, why: str) -> None:
    runner.logger.warning(f'{type(hook).__name__}: ignored restored runtime_info[{key!r}] '
                          f'= {_short(value)} ({why}); nothing it names is removed')


def _check_restored_best(hook: Any, runner: Any, foreign: Optional[str]) -> None:
    """Forget restored best-checkpoint paths that are not best checkpoints of ``out_dir``;
    keep the others as their checked path."""
    if hook.save_best is None or not is_local(hook):
        return
    single = len(hook.key_indicators) == 1
    paths = ({'best_ckpt': getattr(hook, 'best_ckpt_path', None)} if single else
             {f'best_ckpt_{k}': v for k, v in hook.best_ckpt_path_dict.items()})
    for key, path in paths.items():
        if path is None:
            continue
        checked = None if foreign else checked_checkpoint_path(path, hook.out_dir)
        if checked is None or not osp.basename(checked).startswith('best_'):
            _ignore(hook, runner, key, path,
                    foreign or f'not a best checkpoint file in {hook.out_dir}')
            runner.message_hub.runtime_info.pop(key, None)
            checked = None
        if single:
            hook.best_ckpt_path = checked
        else:
            hook.best_ckpt_path_dict[key[len('best_ckpt_'):]] = checked


def _checked_ids(hook: Any, runner: Any, value: Any, foreign: Optional[str]) -> List[int]:
    """The restored ``keep_ckpt_ids`` that name checkpoints of this run in ``out_dir``
    (through the hook's ``filename_tmpl``), up to the resumed step; the rest are ignored
    with a warning."""
    if not isinstance(value, (list, tuple)):
        _ignore(hook, runner, IDS_KEY, value, 'not a list')
        return []
    if foreign:
        _ignore(hook, runner, IDS_KEY, value, foreign)
        return []
    step = runner.epoch if hook.by_epoch else runner.iter
    local = is_local(hook)
    kept: List[int] = []
    for raw in value[:MAX_IDS]:
        i = _as_step(raw)
        if i is None or i in kept or i > step:
            continue
        if local and not is_run_checkpoint(osp.join(hook.out_dir, hook.filename_tmpl.format(i)),
                                           hook.out_dir):
            continue
        kept.append(i)
    if len(kept) != len(value):
        _ignore(hook, runner, IDS_KEY, [v for v in value if _as_step(v) not in kept],
                f'not distinct ints naming checkpoints {hook.filename_tmpl} of {hook.out_dir} '
                f'up to step {step}')
    return kept


def check_restored_hook_state(hook: Any, runner: Any, restored_ids: Any) -> None:
    """After upstream's ``CheckpointHook.before_train`` (given ``keep_ckpt_ids`` popped from
    the runtime info before it, so that upstream removed nothing): keep only the restored
    best paths and ids that are this run's, then remove the ids beyond ``max_keep_ckpts``
    as upstream would, each removal checked."""
    from mmengine.dist import is_main_process
    foreign = foreign_source(runner, hook.out_dir) if is_local(hook) else None
    _check_restored_best(hook, runner, foreign)
    if restored_ids is None:
        return
    ids = _checked_ids(hook, runner, restored_ids, foreign)
    while len(ids) > hook.max_keep_ckpts:
        step = ids.pop(0)
        if is_main_process():
            remove_checkpoint(hook, hook.file_backend.join_path(
                hook.out_dir, hook.filename_tmpl.format(step)))
    hook.keep_ckpt_ids = deque(ids, hook.max_keep_ckpts)
    runner.message_hub.runtime_info[IDS_KEY] = list(ids)
