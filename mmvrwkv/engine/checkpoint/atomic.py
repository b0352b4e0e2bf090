"""Atomic file writes: a reader sees the old file or the complete new one, never a part.

The data goes to a temporary file in the destination's folder (same file system, so the
final ``os.replace`` is atomic), is flushed and fsync'ed, then renamed over the destination;
the folder is fsync'ed so the rename itself survives a power loss. A failed write (disk full,
a kill) leaves the destination untouched; the temporary file is removed when the process
lives to do so, and :func:`remove_stale_temporaries` clears those left by a killed one.

The temporary file is created with mode ``0o666`` less the user's umask (what ``open``
gives a new file), not ``mkstemp``'s ``0o600``: checkpoints on shared storage stay readable
by the collaborators the umask (or the folder's default ACL) lets in.
"""
import contextlib
import glob
import os
import os.path as osp
import secrets
from typing import Iterator, List

#: Temporary files are ``.<name>.<random>.tmp`` beside the destination: hidden and without
#: the ``.pth`` suffix, so no checkpoint search (``*.pth``) ever picks one up.
TMP_SUFFIX = '.tmp'


def create_temporary(dst: str) -> str:
    """Create an empty, new ``.<name>.<random>.tmp`` beside ``dst``; returns its path.

    ``O_CREAT | O_EXCL`` with mode ``0o666``: the kernel applies the umask and default ACLs
    exactly as for any new file, and never follows or reuses an existing name.
    """
    folder, name = osp.split(dst)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_CLOEXEC', 0)
    for _ in range(100):
        tmp = osp.join(folder, f'.{name}.{secrets.token_hex(6)}{TMP_SUFFIX}')
        try:
            os.close(os.open(tmp, flags, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f'could not create a temporary file beside {dst}')


def fsync_dir(path: str) -> None:
    """Make a rename or unlink in folder ``path`` durable (no-op where folders can't open)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(dst: str, overwrite: bool = True) -> Iterator[str]:
    """Yield a temporary path; once the block wrote it, it becomes ``dst`` atomically.

    ``overwrite=False`` refuses (``FileExistsError``) when ``dst`` exists at the end,
    even if it appeared while the block ran. An ``OSError`` of the block (e.g. ENOSPC) is
    re-raised naming ``dst``; ``dst`` keeps its previous content in every failure.
    """
    dst = osp.abspath(dst)
    folder = osp.dirname(dst)
    os.makedirs(folder, exist_ok=True)
    tmp = create_temporary(dst)
    try:
        try:
            yield tmp
            with open(tmp, 'rb+') as f:
                os.fsync(f.fileno())
        except OSError as err:
            raise OSError(err.errno, f'could not write {dst}: {err.strerror or err}; '
                          'the previous content of that path (if any) is intact') from err
        if overwrite:
            os.replace(tmp, dst)
        else:
            try:  # a hard link fails if dst exists, also if it appeared meanwhile
                os.link(tmp, dst)
            except FileExistsError:
                raise FileExistsError(f'{dst} exists (not overwritten)') from None
            except OSError:  # a file system without hard links
                if osp.exists(dst):
                    raise FileExistsError(f'{dst} exists (not overwritten)') from None
                os.replace(tmp, dst)
        fsync_dir(folder)
    finally:
        if osp.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(dst: str, text: str) -> None:
    """Replace ``dst`` by ``text`` atomically (e.g. mmengine's ``last_checkpoint``)."""
    with atomic_path(dst) as tmp, open(tmp, 'w', encoding='utf-8') as f:
        f.write(text)


def remove_stale_temporaries(folder: str, name_glob: str = '*') -> List[str]:
    """Delete the temporary files a killed writer left in ``folder``; returns their paths."""
    removed = []
    for path in glob.glob(osp.join(folder, f'.{name_glob}.*{TMP_SUFFIX}')):
        try:
            os.unlink(path)
            removed.append(path)
        except OSError:
            pass
    return removed
