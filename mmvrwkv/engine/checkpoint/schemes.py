"""Every scheme of mmengine's ``CheckpointLoader`` loads through the one gate,
:func:`.loading.load_checkpoint_file`.

mmengine's own loaders unpickle what they fetch without any of the gate's checks. Its
http(s) loader, and with it ``open-mmlab://``, ``mmcls://`` and ``torchvision://``, calls
torch.hub's ``load_state_dict_from_url``, whose ``weights_only`` defaults to False: full
unpickling, from a cache keyed by the file's base name only. ``pavi://``, ``s3://`` /
``petrel://`` and the local files of ``open-mmlab://`` call plain ``torch.load``: torch's
default allow-list, and no structure check, config neutralisation, path check or digest.

Here each scheme only *fetches*, from exactly where mmengine would (its URL tables,
torchvision's weight URLs through mmengine's helper, mmengine's file backends, pavi's
modelcloud), and the gate loads the local file:

========================================  =============================================
scheme                                    fetched by
========================================  =============================================
``''`` (local path)                       nothing: the path itself
``http://``, ``https://``                 :func:`fetch_url` (the cache below)
``torchvision://``, ``modelzoo://``       ``get_torchvision_models()`` -> :func:`fetch_url`
``open-mmlab://``, ``openmmlab://``       ``get_external_models()`` (and its deprecated
                                          names) -> :func:`fetch_url`, or the file in
                                          mmengine's home
``mmcls://``                              ``get_mmcls_models()`` -> :func:`fetch_url`, then
                                          mmengine's ``_process_mmcls_checkpoint``
``s3://``, ``petrel://`` (any ``X:``)     ``mmengine.fileio`` backend ``get`` -> a
                                          temporary file
``pavi://``                               ``pavi.modelcloud`` ``download`` -> a temporary
                                          file
========================================  =============================================

**Schemes registered by other code.** ``CheckpointLoader.load_checkpoint`` is wrapped: a
loader that is not marked by :func:`gated_loader` is refused *before it runs*, with a
message naming the file and the loader (it could unpickle the file in any way). Code that
adds a scheme uses :func:`register_gated_scheme`, whose ``fetch`` only puts the bytes in a
local file. A marked loader is checked again on each call: if its result did not come
through the gate, it is refused. (mmengine's functions called directly, such as
``mmengine.runner.checkpoint.load_from_http(url)``, are not ``CheckpointLoader`` and are not
covered; nothing upstream calls them outside ``CheckpointLoader``.)

**The http cache** (:func:`fetch_url`): ``<torch hub dir>/checkpoints/mmvrwkv-by-url/
<sha256(URL)[:16]>/<base name>`` (or ``model_dir``), so each whole URL, query included, has
its own file. A download goes to a hidden temporary file and is renamed into place only once
complete and checked; ``<file>.sha256`` records its SHA-256. A cached file is used only when
its content still has that hash (a damaged or planted file without it is downloaded again,
with a warning). The expected hash, when one is known, is checked on every download and every
reuse: the ``sha256`` argument, else the metafile's ``Weights SHA256`` for that URL
(:func:`mmvrwkv.apis.model_hub.weight_hashes`), else torch.hub's ``name-<sha256 prefix>.ext``
convention (8 or more hex digits; for URLs typed by users, not an all-digit run such as a
date). A mismatch is a :class:`DownloadHashError` naming the URL and the file. Rank 0
downloads first, the other ranks after a barrier, as mmengine does. The cache never holds
an unchecked file, and it is not torch.hub's: files that mmengine or torch put there are
never read.
"""
import functools
import hashlib
import logging
import os
import os.path as osp
import re
import tempfile
import threading
import uuid
import warnings
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union
from urllib.parse import urlparse

import torch

from .atomic import atomic_write_text, fsync_dir
from .errors import CheckpointError, DownloadHashError
from .loading import load_checkpoint_file

Prefixes = Union[str, Sequence[str]]
#: ``fetch(filename, folder) -> local path``: puts the bytes of ``filename`` in a file
#: (in ``folder``, a fresh temporary folder, or anywhere local) and returns its path.
Fetch = Callable[[str, str], str]

#: Attribute that marks a loader as loading through the gate (set by :func:`gated_loader`).
_GATED = '_mmvrwkv_gated'
#: Attribute that marks the wrapped ``CheckpointLoader.load_checkpoint``.
_GUARD = '_mmvrwkv_dispatch_guard'


# ----------------------------------------------------------------------------- the gate

_passes = threading.local()


def _gate_passes() -> int:
    return getattr(_passes, 'count', 0)


def _with_source(err: CheckpointError, source: str) -> CheckpointError:
    """``err`` with ``(fetched from SOURCE)`` in its message, same class (or ``err``)."""
    try:
        return type(err)(f'{err} (fetched from {source})')
    except Exception:  # noqa: BLE001 - a subclass with another signature: keep the original
        return err


def load_through_gate(path: str, map_location: Any = None, source: Optional[str] = None) -> Any:
    """:func:`load_checkpoint_file` of a fetched file; errors also name ``source``."""
    try:
        checkpoint = load_checkpoint_file(path, map_location=map_location)
    except CheckpointError as err:
        if source is None:
            raise
        wrapped = _with_source(err, source)
        if wrapped is err:
            raise
        raise wrapped from err
    _passes.count = _gate_passes() + 1
    return checkpoint


def _describe(fn: Any) -> str:
    name = getattr(fn, '__qualname__', None) or getattr(fn, '__name__', None) or repr(fn)
    module = getattr(fn, '__module__', None)
    return f'{module}.{name}' if module else str(name)


def gated_loader(loader: Callable[..., Any]) -> Callable[..., Any]:
    """Mark ``loader`` (a ``CheckpointLoader`` scheme loader) as loading through the gate.

    Each call is checked: a result that did not pass :func:`load_through_gate` during the
    call is refused with a :class:`CheckpointError`. Idempotent.
    """
    if getattr(loader, _GATED, False):
        return loader

    @functools.wraps(loader)
    def checked(filename: str, *args: Any, **kwargs: Any) -> Any:
        before = _gate_passes()
        checkpoint = loader(filename, *args, **kwargs)
        if _gate_passes() == before:
            raise CheckpointError(
                f'{filename}: refused: the checkpoint loader {_describe(loader)} returned '
                "a checkpoint that did not go through mmvrwkv's checkpoint gate "
                '(mmvrwkv.engine.checkpoint.schemes.load_through_gate)')
        return checkpoint

    setattr(checked, _GATED, True)
    return checked


def is_gated(loader: Any) -> bool:
    """Whether ``loader`` was marked by :func:`gated_loader`."""
    return bool(getattr(loader, _GATED, False))


def _fetching_loader(fetch: Fetch, name: str) -> Callable[..., Any]:
    """A gated loader: ``fetch`` into a temporary folder, then the gate."""
    def loader(filename: str, map_location: Any = None) -> Any:
        with tempfile.TemporaryDirectory(prefix='mmvrwkv_fetch_') as folder:
            return load_through_gate(fetch(filename, folder), map_location, source=filename)
    loader.__name__ = loader.__qualname__ = name  # mmengine logs "Loads checkpoint by <name[10:]>"
    return gated_loader(loader)


def register_gated_scheme(prefixes: Prefixes, fetch: Fetch, force: bool = False,
                          name: str = 'load_from_scheme') -> Callable[..., Any]:
    """Register a ``CheckpointLoader`` scheme whose ``fetch(filename, folder)`` only puts
    the file on disk and returns its path; the gate then loads it. Returns the loader.

    The way for other code to add a scheme once mmvrwkv is imported (a loader registered
    with ``CheckpointLoader.register_scheme`` directly is refused, see the module doc).
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    loader = _fetching_loader(fetch, name)
    CheckpointLoader.register_scheme(prefixes=prefixes, loader=loader, force=force)
    return loader


def _safe_name(name: str, default: str = 'checkpoint.pth') -> str:
    """A plain file name from the last part of ``name`` (no folders, no leading dots)."""
    base = re.sub(r'[^\w.\-]', '_', osp.basename(name.rstrip('/'))).lstrip('.')
    return base or default


# ----------------------------------------------------------------------------- the http cache

_READ_CHUNK = 1 << 20


def file_sha256(path: str) -> str:
    """Hex SHA-256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(_READ_CHUNK), b''):
            digest.update(chunk)
    return digest.hexdigest()


def cache_path(url: str, model_dir: Optional[str] = None) -> str:
    """Where :func:`fetch_url` keeps ``url``: a folder per whole URL, then its base name."""
    folder = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    key = hashlib.sha256(url.encode('utf-8')).hexdigest()[:16]
    return osp.join(folder, 'mmvrwkv-by-url', key, _safe_name(urlparse(url).path))


def hash_in_name(url: str, trusted_name: bool = False) -> Optional[str]:
    """The SHA-256 prefix in the URL's file name (torch.hub's ``name-<hash>.ext``), if any.

    At least 8 hex digits (torch.hub's own rule). Unless ``trusted_name`` (a URL from
    mmengine's or torchvision's tables, which all follow the convention), an all-digit run
    is not taken for a hash: users' names such as ``ckpt-20240101.pth`` hold dates.
    """
    match = torch.hub.HASH_REGEX.search(osp.basename(urlparse(url).path))
    if match is None or len(match.group(1)) < 8:
        return None
    if not trusted_name and match.group(1).isdigit():
        return None
    return match.group(1)


def _metafile_hashes() -> Dict[str, str]:
    """``URL -> sha256`` recorded by our metafiles (none without the model index)."""
    try:
        from mmvrwkv.apis.model_hub import weight_hashes
        return weight_hashes()
    except (ImportError, FileNotFoundError):
        return {}


def expected_sha256(url: str, sha256: Optional[str] = None,
                    trusted_name: bool = False) -> Optional[Tuple[str, str]]:
    """``(hex digest or prefix, where it is recorded)`` for ``url``; None if none is known."""
    if sha256:
        return sha256.lower(), 'the sha256 argument'
    recorded = _metafile_hashes().get(url)
    if recorded:
        return recorded.lower(), "mmvrwkv's metafile (Weights SHA256)"
    prefix = hash_in_name(url, trusted_name)
    if prefix:
        return prefix, "its file name (torch.hub's name-<sha256 prefix> convention)"
    return None


def _usable_cache(url: str, path: str, expected: Optional[Tuple[str, str]]) -> bool:
    """Whether the cached ``path`` is the complete, checked download of ``url``; a damaged
    file (or one without its recorded hash) is removed, with a warning."""
    if not osp.isfile(path):
        return False
    try:
        with open(path + '.sha256', encoding='ascii') as f:
            recorded = f.read().strip()
    except (OSError, UnicodeDecodeError):
        recorded = None
    actual = file_sha256(path)
    if recorded == actual and (expected is None or actual.startswith(expected[0])):
        return True
    why = ('it has no recorded SHA-256 (not written by mmvrwkv)' if recorded is None else
           f'its SHA-256 {actual} is not the recorded {recorded}' if recorded != actual else
           f'its SHA-256 {actual} does not start with {expected[0]}, recorded by {expected[1]}')
    warnings.warn(f'{path}: the cached download of {url} is not used: {why}; downloading '
                  'it again', stacklevel=3)
    for stale in (path, path + '.sha256'):
        try:
            os.unlink(stale)
        except FileNotFoundError:
            pass
    return False


def _download(url: str, path: str, expected: Optional[Tuple[str, str]],
              progress: bool) -> None:
    """Download ``url`` to ``path`` atomically; refuse a hash mismatch (nothing is kept)."""
    folder = osp.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.{osp.basename(path)}.{uuid.uuid4().hex}.tmp')
    try:
        torch.hub.download_url_to_file(url, tmp, progress=progress)  # (its own .partial + move)
        actual = file_sha256(tmp)
        if expected is not None and not actual.startswith(expected[0]):
            raise DownloadHashError(
                f'{url}: the download for {path} has SHA-256 {actual}, but {expected[1]} '
                f'records {expected[0]}: the file is damaged or not the published one, and '
                'was not kept. Check the URL, or download it yourself and pass a local path.')
        atomic_write_text(path + '.sha256', actual + '\n')
        os.replace(tmp, path)
        fsync_dir(folder)
    finally:
        if osp.exists(tmp):
            os.unlink(tmp)


def fetch_url(url: str, model_dir: Optional[str] = None, progress: bool = False,
              sha256: Optional[str] = None, trusted_name: bool = False) -> str:
    """The checked local copy of ``url`` in the cache (see the module doc); returns its path.

    Rank 0 downloads first; in a distributed run the other ranks wait at a barrier, then
    use (or, without a shared file system, download) their copy.
    """
    from mmengine.dist import get_dist_info

    path = cache_path(url, model_dir)
    expected = expected_sha256(url, sha256, trusted_name)

    def fetch() -> None:
        if not _usable_cache(url, path, expected):
            _download(url, path, expected, progress)

    rank, world_size = get_dist_info()
    if rank == 0:
        fetch()
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            fetch()
    return path


def _load_url(url: str, map_location: Any, source: str, trusted_name: bool,
              model_dir: Optional[str] = None, progress: bool = False,
              sha256: Optional[str] = None) -> Any:
    path = fetch_url(url, model_dir, progress, sha256, trusted_name)
    return load_through_gate(path, map_location, source=source)


# ----------------------------------------------------------------------------- the schemes

@gated_loader
def load_from_local(filename: str, map_location: Any = None) -> Any:
    """A local file (``~`` expanded), through the gate."""
    return load_through_gate(osp.expanduser(filename), map_location)


@gated_loader
def load_from_http(filename: str, map_location: Any = None, model_dir: Optional[str] = None,
                   progress: bool = os.isatty(0), sha256: Optional[str] = None) -> Any:
    """An http(s) URL: :func:`fetch_url`, then the gate (mmengine's arguments, plus an
    optional expected ``sha256``)."""
    return _load_url(filename, map_location, filename, False, model_dir, progress, sha256)


def _mmengine_checkpoint():
    """mmengine.runner.checkpoint, looked up at each call (its URL tables can change)."""
    import mmengine.runner.checkpoint as module
    return module


def _table_url(table: Dict[str, str], name: str, filename: str, what: str) -> str:
    if name not in table:
        raise KeyError(f'{filename}: mmengine knows no {what} checkpoint named {name!r}')
    return table[name]


def _deprecation(message: str) -> None:
    from mmengine.logging import print_log
    print_log(message, logger='current', level=logging.WARNING)


@gated_loader
def load_from_torchvision(filename: str, map_location: Any = None) -> Any:
    """``torchvision://NAME`` (and the deprecated ``modelzoo://NAME``): the URL of mmengine's
    ``get_torchvision_models()``, fetched and loaded like any URL."""
    if filename.startswith('modelzoo://'):
        _deprecation('The URL scheme of "modelzoo://" is deprecated, please use '
                     '"torchvision://" instead')
        name = filename[len('modelzoo://'):]
    else:
        name = filename[len('torchvision://'):]
    url = _table_url(_mmengine_checkpoint().get_torchvision_models(), name, filename,
                     'torchvision')
    return _load_url(url, map_location, f'{filename} ({url})', True)


@gated_loader
def load_from_openmmlab(filename: str, map_location: Any = None) -> Any:
    """``open-mmlab://NAME`` / ``openmmlab://NAME``: mmengine's table (with its own
    ``open_mmlab.json`` and deprecated names); a URL is fetched, a local entry is the file
    in mmengine's home."""
    mm = _mmengine_checkpoint()
    prefix = 'open-mmlab://' if filename.startswith('open-mmlab://') else 'openmmlab://'
    name = filename[len(prefix):]
    deprecated = mm.get_deprecated_model_names()
    if name in deprecated:
        _deprecation(f'{prefix}{name} is deprecated in favor of {prefix}{deprecated[name]}')
        name = deprecated[name]
    url = _table_url(mm.get_external_models(), name, filename, 'open-mmlab')
    if url.startswith(('http://', 'https://')):
        return _load_url(url, map_location, f'{filename} ({url})', True)
    path = osp.join(mm._get_mmengine_home(), url)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} can not be found (the file of {filename}).')
    return load_through_gate(path, map_location, source=filename)


@gated_loader
def load_from_mmcls(filename: str, map_location: Any = None) -> Any:
    """``mmcls://NAME``: the URL of mmengine's mmcls table, then its backbone-key mapping."""
    mm = _mmengine_checkpoint()
    url = _table_url(mm.get_mmcls_models(), filename[len('mmcls://'):], filename, 'mmcls')
    return mm._process_mmcls_checkpoint(_load_url(url, map_location, f'{filename} ({url})',
                                                  True))


@gated_loader
def load_from_ceph(filename: str, map_location: Any = None, backend: str = 'petrel') -> Any:
    """``s3://`` / ``petrel://`` (optionally ``X:s3://``): the bytes from mmengine's file
    backend ``backend`` (as mmengine reads them), written to a temporary file, then the gate."""
    def fetch(name: str, folder: str) -> str:
        from mmengine.fileio import get_file_backend
        data = get_file_backend(name, backend_args={'backend': backend}).get(name)
        path = osp.join(folder, _safe_name(name))
        with open(path, 'wb') as f:
            f.write(data)
        return path

    return _fetching_loader(fetch, 'load_from_ceph')(filename, map_location)


@gated_loader
def load_from_pavi(filename: str, map_location: Any = None) -> Any:
    """``pavi://PATH``: downloaded with pavi's modelcloud (as mmengine does) into a
    temporary folder, then the gate."""
    if not filename.startswith('pavi://'):
        raise ValueError(f'Expected filename startswith `pavi://`, but get {filename}')

    def fetch(name: str, folder: str) -> str:
        try:
            from pavi import modelcloud
        except ImportError:
            raise ImportError('Please install pavi to load checkpoint from modelcloud.')
        model = modelcloud.get(name[len('pavi://'):])
        path = osp.join(folder, _safe_name(str(model.name)))
        model.download(path)
        return path

    return _fetching_loader(fetch, 'load_from_pavi')(filename, map_location)


#: Our loader of each prefix mmengine registers (mmengine reads prefixes as regexes).
SCHEMES: Dict[Tuple[str, ...], Callable[..., Any]] = {
    ('',): load_from_local,
    ('http://', 'https://'): load_from_http,
    ('modelzoo://', 'torchvision://'): load_from_torchvision,
    ('open-mmlab://', 'openmmlab://'): load_from_openmmlab,
    ('mmcls://',): load_from_mmcls,
    (r'(\S+\:)?s3://', r'(\S+\:)?petrel://'): load_from_ceph,
    ('pavi://',): load_from_pavi,
}

# Names the lead's modules used before the move out of loading.py.
_load_local = load_from_local
_load_http = load_from_http


def _refuse_ungated(filename: str, loader: Any) -> CheckpointError:
    return CheckpointError(
        f'{filename}: refused: mmengine would load it with {_describe(loader)}, a loader '
        "registered with CheckpointLoader.register_scheme that does not go through mmvrwkv's "
        'checkpoint gate (it could unpickle the file without checks, and so run code from '
        'it). Register the scheme with mmvrwkv.engine.checkpoint.schemes.register_gated_scheme('
        'prefixes, fetch), whose fetch only puts the file on disk, or fetch the file '
        'yourself and pass its local path.')


def _install_dispatch_guard(checkpoint_loader: type) -> None:
    """Wrap ``CheckpointLoader.load_checkpoint`` so that only gated loaders run (idempotent)."""
    original = checkpoint_loader.__dict__['load_checkpoint'].__func__
    if getattr(original, _GUARD, False):
        return

    @functools.wraps(original)
    def load_checkpoint(cls, filename, map_location=None, logger='current'):
        loader = cls._get_checkpoint_loader(filename)
        if not is_gated(loader):
            raise _refuse_ungated(filename, loader)
        return original(cls, filename, map_location, logger)

    setattr(load_checkpoint, _GUARD, True)
    checkpoint_loader.load_checkpoint = classmethod(load_checkpoint)


_REGISTERED: Dict[str, bool] = {}


def register_checkpoint_loaders() -> None:
    """Point every scheme mmengine's ``CheckpointLoader`` knows at the gate (see the module
    doc), and refuse loaders registered later that do not use it. Idempotent."""
    if _REGISTERED:
        return
    from mmengine.runner.checkpoint import CheckpointLoader
    for prefixes, loader in SCHEMES.items():
        CheckpointLoader.register_scheme(prefixes=list(prefixes), loader=loader, force=True)
    _install_dispatch_guard(CheckpointLoader)
    _REGISTERED['done'] = True
