"""mmengine's CheckpointHook made crash-safe, self-verifying and strict about what it loads."""
import contextlib
import glob
import os
import os.path as osp
from typing import Any, Iterator, List, Optional, Tuple

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.model import is_model_wrapper

from mmvrwkv.registry import HOOKS
from ..checkpoint.atomic import atomic_path, atomic_write_text, remove_stale_temporaries
from ..checkpoint.digest import add_digest
from ..checkpoint.errors import CheckpointError
from ..checkpoint.hook_state import is_local, remove_checkpoint
from ..checkpoint.matching import compare_state_dict, revise_keys


class CheckpointMismatchError(CheckpointError):
    """A checkpoint whose keys or shapes do not match the model it is loaded into."""


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with the same arguments, plus ``allow_partial``.

    Saving (local folders; other backends behave as upstream):

    - every checkpoint and ``last_checkpoint`` is written atomically (temporary file in the
      same folder, fsync, rename), so a kill or a full disk never leaves a truncated file
      under a checkpoint's name;
    - ``max_keep_ckpts`` and ``save_best`` delete an old checkpoint only after its successor
      is complete (upstream deletes first);
    - ``meta['state_dict_sha256']`` holds a digest of the weights, checked on every load;
    - a removal (``max_keep_ckpts``, ``save_best``) only ever removes a checkpoint directly
      inside ``out_dir`` (a regular ``*.pth`` file, or a real folder for deepspeed), never a
      symlink or anything elsewhere;
    - restored hook state (``keep_ckpt_ids``, ``best_ckpt*``) is used only when it names
      checkpoints of ``out_dir`` and the run resumed from a checkpoint of ``out_dir``; ids
      newer than the resumed step are dropped. Anything else is dropped with a warning.
      (These two checks live in ``hook_state`` and are done by mmengine's ``CheckpointHook``
      itself, patched at ``import mmvrwkv``, so its plain users get them too.)

    Resuming: ``resume=True`` that found nothing to resume from (no ``last_checkpoint``) while
    ``out_dir`` holds checkpoints is refused, rather than training from scratch over them.

    Loading (``load_from``, ``resume``; runs last among the hooks, after e.g. EMAHook):

    - a checkpoint whose keys or shapes differ from the model is refused, the first keys
      listed, unless ``allow_partial=True`` (``--allow-partial`` of tools/train.py and
      tools/test.py); upstream loads what fits and warns;
    - resuming from a checkpoint without training state (released or converted weights)
      is refused with a pointer to ``load_from``.
    """

    priority = 'VERY_LOW'

    def __init__(self, *args: Any, allow_partial: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.allow_partial = bool(allow_partial)

    # ------------------------------------------------------------------ saving

    def before_train(self, runner) -> None:
        # restored keep_ckpt_ids / best_ckpt* are checked in CheckpointHook.before_train
        # itself (patched at `import mmvrwkv`: hook_state.check_restored_hook_state)
        super().before_train(runner)
        if self._is_local():
            self._refuse_fresh_start_over_checkpoints(runner)
        if self._is_local() and is_main_process():
            for path in remove_stale_temporaries(self.out_dir, '*.pth'):
                runner.logger.warning(f'removed {path}, left by an interrupted checkpoint write')

    def _refuse_fresh_start_over_checkpoints(self, runner) -> None:
        """``resume=True`` that found nothing to resume from must not train from scratch
        over the checkpoints of ``out_dir`` (the next save would overwrite them)."""
        if not getattr(runner, '_resume', False) or getattr(runner, '_has_loaded', True):
            return
        found = sorted(glob.glob(osp.join(glob.escape(self.out_dir), '*.pth')))
        if found:
            raise CheckpointError(
                f'resume=True, but {osp.join(runner.work_dir, "last_checkpoint")} names no '
                f'checkpoint, and {self.out_dir} holds {", ".join(map(osp.basename, found))}: '
                'training from scratch would overwrite them. Resume from one of them '
                '(tools/train.py --resume picks the newest complete one; or pass '
                'load_from=PATH with resume=True), or use another work_dir.')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        add_digest(checkpoint)

    def _is_local(self) -> bool:
        return is_local(self)

    def _save_atomically(self, runner, filename: str, **kwargs: Any) -> None:
        if not is_main_process():  # Runner.save_checkpoint writes on the main process only
            return
        with atomic_path(osp.join(self.out_dir, filename)) as tmp:
            runner.save_checkpoint(osp.dirname(tmp), osp.basename(tmp), **kwargs)

    def _save_checkpoint_with_step(self, runner, step: int, meta: dict) -> None:
        if not self._is_local():
            return super()._save_checkpoint_with_step(runner, step, meta)
        # upstream sets keep_ckpt_ids only for max_keep_ckpts > 0 (mmengine's default is -1)
        kept = list(self.keep_ckpt_ids) if self.max_keep_ckpts > 0 else []
        outdated: Optional[int] = None
        if self.max_keep_ckpts > 0 and not (kept and kept[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            # saved inside the checkpoint, so updated before the write (as upstream)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        previous_last = self.last_ckpt
        self.last_ckpt = osp.join(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        try:
            self._save_atomically(
                runner, filename, save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler, meta=meta,
                by_epoch=self.by_epoch, **self.args)
        except BaseException:
            if self.max_keep_ckpts > 0:
                self.keep_ckpt_ids.clear()
                self.keep_ckpt_ids.extend(kept)
            self.last_ckpt = previous_last
            raise
        if not is_main_process():
            return
        atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
        if outdated is not None:  # only now that its successor is complete
            self._remove(osp.join(self.out_dir, self.filename_tmpl.format(outdated)))

    def _remove(self, path: str) -> None:
        """Remove an old checkpoint: locally only a ``*.pth`` directly inside ``out_dir``
        (regular file, or a real folder), checked right before the removal."""
        remove_checkpoint(self, path)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        if not self._is_local():
            return super()._save_best_checkpoint(runner, metrics)
        with self._deferred_removals(runner):
            super()._save_best_checkpoint(runner, metrics)

    @contextlib.contextmanager
    def _deferred_removals(self, runner) -> Iterator[None]:
        """Inside: upstream's removals are queued and its saves are atomic; on success the
        queued removals run (never of a file just written), on failure none does."""
        backend = self.file_backend
        queued: List[str] = []
        written: List[str] = []

        class Deferring:
            def __getattr__(self, name: str) -> Any:
                return getattr(backend, name)

            def remove(self, path: str) -> None:
                queued.append(path)

            def rmtree(self, path: str) -> None:
                queued.append(path)

        def save(out_dir: str, filename: str, *args: Any, **kwargs: Any) -> None:
            written.append(osp.abspath(osp.join(out_dir, filename)))
            if not is_main_process():
                return
            with atomic_path(written[-1]) as tmp:
                save_checkpoint(osp.dirname(tmp), osp.basename(tmp), *args, **kwargs)

        save_checkpoint = runner.save_checkpoint
        self.file_backend = Deferring()
        runner.save_checkpoint = save
        try:
            yield
        finally:
            self.file_backend = backend
            del runner.save_checkpoint  # back to the class's method
        for path in queued:
            if osp.abspath(path) not in written:
                self._remove(path)

    # ------------------------------------------------------------------ loading

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        name = _checkpoint_name(runner)
        if getattr(runner, '_resume', False):
            meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
            needed = [k for k in ('epoch', 'iter') if not isinstance(meta, dict) or k not in meta]
            needed += [k for k in ('message_hub',) if k not in checkpoint]
            if needed:
                raise CheckpointError(
                    f'cannot resume from {name}: it holds no training state (missing '
                    f'{", ".join("meta." + k if k in ("epoch", "iter") else k for k in needed)}'
                    '); it looks like released or converted weights. To start a new run '
                    f'from these weights, drop --resume and pass --cfg-options load_from={name}')
        if self.allow_partial:
            return
        state_dict = checkpoint.get('state_dict', checkpoint)
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        mismatch = compare_state_dict(revise_keys(state_dict), model.state_dict())
        if mismatch:
            raise CheckpointMismatchError(
                f'{name} does not match the model: {mismatch.describe()}. Loading it would '
                'leave parts of the model untrained. Check the config (arch, num_classes, '
                'img_size), or pass --allow-partial (default_hooks.checkpoint.allow_partial'
                '=True) to load what fits.')


def _checkpoint_name(runner) -> str:
    name = getattr(runner, '_load_from', None)
    if name:
        return str(name)
    from mmengine.runner import find_latest_checkpoint
    return str(find_latest_checkpoint(runner.work_dir) or 'the checkpoint')


def find_resumable_checkpoint(folders: List[str]
                              ) -> Tuple[Optional[str], List[str], List[Tuple[str, str]]]:
    """The newest complete checkpoint in ``folders`` (``*.pth``, hidden temporaries aside).

    Complete: it loads through mmvrwkv's loader (digest included) and holds training state
    (``meta`` epoch and iter, ``message_hub``). Newest: the highest meta (iter, epoch); on a
    tie one with optimizer state, then the later modification time. Returns the path (None
    if none qualifies), every file looked at, and ``(path, why)`` for those skipped.
    """
    from ..checkpoint.loading import load_checkpoint_file
    found: List[str] = []
    for folder in folders:
        for path in sorted(glob.glob(osp.join(glob.escape(folder), '*.pth'))):
            if osp.isfile(path) and not any(osp.samefile(path, p) for p in found):
                found.append(path)
    best: Optional[str] = None
    best_key: Optional[tuple] = None
    skipped: List[Tuple[str, str]] = []
    for path in found:
        try:
            ckpt = load_checkpoint_file(path, map_location='cpu')
        except Exception as err:  # noqa: BLE001  (any failure: not a complete checkpoint)
            text = (str(err).splitlines() or [type(err).__name__])[0]
            skipped.append((path, f'{type(err).__name__}: {text[:300]}'))
            continue
        ckpt = ckpt if isinstance(ckpt, dict) else {}
        meta = ckpt.get('meta')
        steps = [meta.get(k) if isinstance(meta, dict) else None for k in ('iter', 'epoch')]
        if (not all(isinstance(v, int) and not isinstance(v, bool) for v in steps)
                or not isinstance(ckpt.get('message_hub'), dict)):
            skipped.append((path, 'holds no training state (meta epoch/iter, message_hub)'))
            continue
        key = (*steps, 'optimizer' in ckpt, os.stat(path).st_mtime)
        del ckpt
        if best_key is None or key > best_key:
            best, best_key = path, key
    return best, found, skipped


def use_safe_checkpoint_hook(cfg, allow_partial: bool = False) -> None:
    """Make ``cfg.default_hooks.checkpoint`` a :class:`SafeCheckpointHook` (tools use this).

    mmengine's plain ``CheckpointHook`` is replaced with the same arguments; a disabled or
    absent one becomes a hook that saves nothing but still checks what is loaded. A user's
    own hook type is left alone.
    """
    hooks = cfg.get('default_hooks')
    if hooks is None:
        cfg.default_hooks = hooks = dict()
    hook = hooks.get('checkpoint')
    if hook is None:
        hook = dict(type='mmvrwkv.SafeCheckpointHook', interval=-1, save_last=False)
    else:
        hook = dict(hook)
        kind = hook.get('type', 'CheckpointHook')
        if kind in ('CheckpointHook', 'mmengine.CheckpointHook', CheckpointHook):
            hook['type'] = 'mmvrwkv.SafeCheckpointHook'
    if allow_partial:
        if hook['type'] not in ('mmvrwkv.SafeCheckpointHook', SafeCheckpointHook):
            raise ValueError(f'--allow-partial needs mmvrwkv.SafeCheckpointHook, but '
                             f'default_hooks.checkpoint is {hook["type"]!r}')
        hook['allow_partial'] = True
    hooks['checkpoint'] = hook
