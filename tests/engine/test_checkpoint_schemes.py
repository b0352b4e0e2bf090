"""Every scheme of mmengine's ``CheckpointLoader`` goes through mmvrwkv's gate, and the http
cache is keyed by the whole URL and checked (``mmvrwkv/engine/checkpoint/schemes.py``).

Two payloads, each harmless (it creates a marker file if any code from it runs):

- ``reduce``: an object whose ``__reduce__`` calls ``open(marker, 'w')``;
- ``config``: a checkpoint whose ``meta['config']`` is Python code, which mmengine's
  ``Runner.resume`` executes with ``Config.fromstring`` (a real Runner checkpoint for
  mmvrwkv; for mmengine's ``torch.load`` with torch's default allow-list, one without
  mmengine's ``HistoryBuffer``).

First, mmengine's own loaders (in a subprocess that never imports mmvrwkv) run them:
``load_url`` (http(s), ``open-mmlab://``, ``mmcls://``, and ``torchvision://`` from a file
planted in torch.hub's cache) unpickles fully; ``pavi://``, ``s3://`` and the local files of
``open-mmlab://`` hand the config text on untouched. Then, with mmvrwkv imported,
``CheckpointLoader.load_checkpoint`` refuses the ``reduce`` payload of every scheme (the
error names the file and ``io.open``), neutralises the ``config`` one, and loads a real
checkpoint. Schemes are served locally: an ``http.server`` on 127.0.0.1, mmengine's URL
tables and ``MMENGINE_HOME`` pointed at it, a fake file backend for ``s3://`` and a fake
``pavi`` module. A loader that other code registers later is refused before it runs.
"""
import functools
import hashlib
import http.server
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import threading
import types
import urllib.error

import pytest
import torch

pytest.importorskip('mmpretrain')

import mmengine.runner.checkpoint as mmengine_checkpoint  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.runner.checkpoint import CheckpointLoader  # noqa: E402

from tool_helpers import CFG, ROOT, tiny_options  # noqa: E402

from mmvrwkv.engine import (CheckpointError, UnsafeCheckpointError,  # noqa: E402
                            load_checkpoint_file)
from mmvrwkv.engine.checkpoint import schemes  # noqa: E402
from mmvrwkv.engine.checkpoint.schemes import DownloadHashError, cache_path  # noqa: E402

pytestmark = pytest.mark.usefixtures('one_thread')

#: The name of the open-mmlab entries this module adds through MMENGINE_HOME.
OMM = 'mmvrwkv_test'


# ----------------------------------------------------------------------------- payloads

class _Open:
    """Unpickles as ``open(marker, 'w')``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, 'w')


def write_reduce(path, marker):
    torch.save({'meta': {'epoch': 1, 'iter': 1}, 'state_dict': {'w': torch.zeros(1)},
                'extra': _Open(marker)}, str(path))


def write_config(path, marker, real_checkpoint):
    """A real Runner checkpoint whose meta['config'] is code (keeps a literal gpu_ids)."""
    ckpt = load_checkpoint_file(real_checkpoint)
    ckpt['meta']['config'] = f"open({str(marker)!r}, 'w').close()\ngpu_ids = [0]\n"
    torch.save(ckpt, str(path))


def write_plain_config(path, marker):
    """The config payload in a checkpoint that torch's default weights-only loader (which
    mmengine's pavi, s3 and local open-mmlab loaders use) accepts: no HistoryBuffer."""
    torch.save({'meta': {'epoch': 1, 'iter': 1,
                         'config': f"open({str(marker)!r}, 'w').close()\ngpu_ids = [0]\n"},
                'state_dict': {'w': torch.zeros(1)}}, str(path))


def resume_config(ckpt):
    """What mmengine's Runner.resume does with the text in meta['config']."""
    if 'config' in ckpt.get('meta', {}):
        Config.fromstring(ckpt['meta']['config'], file_format='.py')


def sha256_of(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


# ----------------------------------------------------------------------------- the world

class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        super().do_GET()


@pytest.fixture(scope='module')
def world(tmp_path_factory, real_checkpoint):
    """Served files, mmengine home and payloads shared by the tests of this module.

    ``protected`` markers (``P/reduce``, ``P/config``) must never appear; the
    ``unprotected`` ones (``U/<scheme>``) are made by mmengine's own loaders.
    """
    root = tmp_path_factory.mktemp('schemes')
    served, home, marks_p, marks_u = (root / n for n in ('served', 'mmhome', 'P', 'U'))
    for folder in (served, home, marks_p, marks_u):
        folder.mkdir()
    handler = functools.partial(_Handler, directory=str(served))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f'http://127.0.0.1:{server.server_address[1]}'

    shutil.copy(real_checkpoint, served / 'good.pth')
    write_reduce(served / 'evil.pth', marks_p / 'reduce')
    write_config(served / 'config.pth', marks_p / 'config', real_checkpoint)
    for name in ('good', 'evil', 'config'):
        shutil.copy(served / f'{name}.pth', home / f'local_{name}.pth')
    # the unprotected run's payloads, each with its own marker
    for scheme in ('http', 'openmmlab', 'mmcls', 'foreign'):
        write_reduce(served / f'u_{scheme}.pth', marks_u / scheme)
    for scheme in ('openmmlab_local', 's3', 'pavi'):
        write_plain_config(served / f'u_{scheme}.pth', marks_u / scheme)
    shutil.move(str(served / 'u_openmmlab_local.pth'), str(home / 'u_local_config.pth'))

    table = {f'{OMM}/{n}': f'{base}/{n}.pth' for n in ('good', 'evil', 'config')}
    table.update({f'{OMM}/local_{n}': f'local_{n}.pth' for n in ('good', 'evil', 'config')})
    table.update({f'{OMM}/u_evil': f'{base}/u_openmmlab.pth',
                  f'{OMM}/u_local': 'u_local_config.pth'})
    (home / 'open_mmlab.json').write_text(json.dumps(table))
    yield types.SimpleNamespace(root=root, served=served, home=home, base=base,
                                server=server, P=marks_p, U=marks_u)
    server.shutdown()
    server.server_close()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A fresh torch.hub dir for the test."""
    monkeypatch.setattr(torch.hub, '_hub_dir', str(tmp_path / 'hub'))
    return tmp_path / 'hub'


def assert_protected(world):
    assert not (world.P / 'reduce').exists(), 'the reduce payload ran'
    assert not (world.P / 'config').exists(), 'the config payload ran'


def load(filename):
    return CheckpointLoader.load_checkpoint(filename, map_location='cpu')


def check_scheme(world, good, evil, config, named=None):
    """good loads, evil is refused naming it (and ``named``) and io.open, config is inert."""
    ckpt = load(good)
    assert ckpt['meta']['epoch'] == 1 if 'meta' in ckpt else ckpt['state_dict']
    with pytest.raises(UnsafeCheckpointError) as info:
        load(evil)
    text = str(info.value)
    assert evil in text and 'io.open' in text, text
    if named is not None:
        assert named in text, text
    resume_config(load(config))
    assert_protected(world)
    return text


# ----------------------------------------------------------------------------- unprotected

UNPROTECTED = r'''
import json, shutil, sys, types
import torch
import mmengine.runner.checkpoint as C
from mmengine.config import Config
assert 'mmvrwkv' not in sys.modules
P = json.loads(sys.argv[1])
torch.hub.set_dir(P['hub'])
print('SCHEMES', json.dumps(list(C.CheckpointLoader._schemes)))

def write_plain_config(path, marker):
    """The config payload in a checkpoint that torch's default weights-only loader (which
    mmengine's pavi, s3 and local open-mmlab loaders use) accepts: no HistoryBuffer."""
    torch.save({'meta': {'epoch': 1, 'iter': 1,
                         'config': f"open({str(marker)!r}, 'w').close()\ngpu_ids = [0]\n"},
                'state_dict': {'w': torch.zeros(1)}}, str(path))


def resume_config(ckpt):  # what Runner.resume does with meta['config']
    Config.fromstring(ckpt['meta']['config'], file_format='.py')

def attempt(name, fn):
    try:
        fn()
    except Exception as err:
        print(name, type(err).__name__, str(err)[:300])

attempt('http', lambda: C.load_from_http(P['base'] + '/u_http.pth'))
attempt('torchvision', lambda: C.load_from_torchvision('torchvision://resnet50'))
attempt('openmmlab', lambda: C.load_from_openmmlab('open-mmlab://mmvrwkv_test/u_evil'))
attempt('openmmlab_local',
        lambda: resume_config(C.load_from_openmmlab('open-mmlab://mmvrwkv_test/u_local')))
C.get_mmcls_models = lambda: {'u_evil': P['base'] + '/u_mmcls.pth'}
attempt('mmcls', lambda: C.load_from_mmcls('mmcls://u_evil'))

class Backend:
    def get(self, name):
        with open(P['served'] + '/' + name.rsplit('/', 1)[-1], 'rb') as f:
            return f.read()
C.get_file_backend = lambda name, backend_args=None: Backend()
attempt('s3', lambda: resume_config(C.load_from_ceph('s3://bucket/u_s3.pth')))

class Model:
    def __init__(self, path):
        self.path, self.name = path, path.rsplit('/', 1)[-1]
    def download(self, dst):
        shutil.copy(P['served'] + '/' + self.name, dst)
sys.modules['pavi'] = types.SimpleNamespace(modelcloud=types.SimpleNamespace(get=Model))
attempt('pavi', lambda: resume_config(C.load_from_pavi('pavi://models/u_pavi.pth')))

C.CheckpointLoader.register_scheme(
    'evil://', loader=lambda f, m=None: torch.load(P['served'] + '/u_foreign.pth',
                                                   weights_only=False))
attempt('foreign', lambda: C.CheckpointLoader.load_checkpoint('evil://x'))
'''


@pytest.fixture(scope='module')
def unprotected_run(world):
    """mmengine's own loaders (no mmvrwkv) on the unprotected payloads; their output.

    The torchvision payload is planted where torch.hub caches resnet50's official file."""
    hub_dir = world.root / 'hub_unprotected'
    url = mmengine_checkpoint.get_torchvision_models()['resnet50']
    (hub_dir / 'checkpoints').mkdir(parents=True)
    write_reduce(hub_dir / 'checkpoints' / osp.basename(url), world.U / 'torchvision')
    params = {'hub': str(hub_dir), 'base': world.base, 'served': str(world.served)}
    env = dict(os.environ, MMENGINE_HOME=str(world.home))
    proc = subprocess.run([sys.executable, '-c', UNPROTECTED, json.dumps(params)], cwd=ROOT,
                          env=env, timeout=300, capture_output=True, text=True)
    return proc.stdout + proc.stderr


UNPROTECTED_SCHEMES = ['http', 'torchvision', 'openmmlab', 'openmmlab_local', 'mmcls', 's3',
                       'pavi', 'foreign']


@pytest.mark.parametrize('scheme', UNPROTECTED_SCHEMES)
def test_mmengine_own_loaders_run_the_payloads(scheme, world, unprotected_run):
    """Guard against toothless tests: each scheme's payload runs under mmengine's loader."""
    assert (world.U / scheme).exists(), f'{scheme}: no marker\n{unprotected_run}'


def test_every_mmengine_scheme_is_ours(unprotected_run):
    """Every prefix mmengine registers by itself has a gated loader once mmvrwkv is
    imported (a new upstream scheme would fail here, and be refused at load time)."""
    line = next(x for x in unprotected_run.splitlines() if x.startswith('SCHEMES '))
    upstream = json.loads(line[len('SCHEMES '):])
    ours = {p for prefixes in schemes.SCHEMES for p in prefixes}
    assert set(upstream) <= ours, set(upstream) - ours
    for prefix in upstream:
        assert schemes.is_gated(CheckpointLoader._schemes[prefix]), prefix


# ----------------------------------------------------------------------------- each scheme

def test_local(world):
    check_scheme(world, str(world.served / 'good.pth'), str(world.served / 'evil.pth'),
                 str(world.served / 'config.pth'))


def test_http(world, hub):
    base = world.base
    text = check_scheme(world, f'{base}/good.pth', f'{base}/evil.pth', f'{base}/config.pth')
    assert cache_path(f'{base}/evil.pth') in text, text  # names the file it loaded


def test_torchvision_ignores_the_torch_hub_cache(world, hub, monkeypatch):
    """torchvision:// and modelzoo://: mmengine's URL table, our cache. A payload planted
    where torch.hub (and mmengine) cache the file is never read."""
    base = world.base
    urls = {n: f'{base}/{n}.pth' for n in ('good', 'evil', 'config')}
    monkeypatch.setattr(mmengine_checkpoint, 'get_torchvision_models', lambda: dict(urls))
    (hub / 'checkpoints').mkdir(parents=True)
    write_reduce(hub / 'checkpoints' / 'good.pth', world.P / 'reduce')  # torch.hub's file
    check_scheme(world, 'torchvision://good', 'torchvision://evil', 'torchvision://config',
                 named=urls['evil'])
    with pytest.raises(UnsafeCheckpointError, match='modelzoo://evil'):
        load('modelzoo://evil')
    assert_protected(world)


def test_torchvision_checks_the_hash_in_the_file_name(world, hub, monkeypatch):
    digest = sha256_of(world.served / 'good.pth')
    good = world.served / 'tv' / f'resnet-{digest[:8]}.pth'
    good.parent.mkdir(exist_ok=True)
    shutil.copy(world.served / 'good.pth', good)
    shutil.copy(world.served / 'good.pth', good.parent / 'wrong-00000000.pth')
    urls = {'good': f'{world.base}/tv/{good.name}',
            'wrong': f'{world.base}/tv/wrong-00000000.pth'}  # all digits: a trusted table
    monkeypatch.setattr(mmengine_checkpoint, 'get_torchvision_models', lambda: dict(urls))
    assert load('torchvision://good')['meta']['epoch'] == 1
    with pytest.raises(DownloadHashError) as info:
        load('torchvision://wrong')
    assert urls['wrong'] in str(info.value) and cache_path(urls['wrong']) in str(info.value)
    assert not osp.exists(cache_path(urls['wrong']))


@pytest.mark.parametrize('prefix', ['open-mmlab://', 'openmmlab://'])
def test_openmmlab(prefix, world, hub, monkeypatch):
    monkeypatch.setenv('MMENGINE_HOME', str(world.home))
    check_scheme(world, f'{prefix}{OMM}/good', f'{prefix}{OMM}/evil', f'{prefix}{OMM}/config',
                 named=f'{world.base}/evil.pth')
    check_scheme(world, f'{prefix}{OMM}/local_good', f'{prefix}{OMM}/local_evil',
                 f'{prefix}{OMM}/local_config', named=str(world.home / 'local_evil.pth'))
    monkeypatch.setattr(mmengine_checkpoint, 'get_deprecated_model_names',
                        lambda: {'old/name': f'{OMM}/evil'})
    with pytest.raises(UnsafeCheckpointError, match='old/name'):
        load(f'{prefix}old/name')
    assert_protected(world)


def test_mmcls(world, hub, monkeypatch):
    urls = {n: f'{world.base}/{n}.pth' for n in ('good', 'evil', 'config')}
    monkeypatch.setattr(mmengine_checkpoint, 'get_mmcls_models', lambda: dict(urls))
    check_scheme(world, 'mmcls://good', 'mmcls://evil', 'mmcls://config', named=urls['evil'])
    weights = load('mmcls://good')['state_dict']  # mmengine's backbone-key mapping applied
    assert weights and not any(k.startswith('backbone.') for k in weights)


def test_s3_and_petrel(world, monkeypatch):
    """s3:// / petrel:// (and X:s3://): mmengine's file backend fetches, the gate loads."""
    fetched = []

    class Backend:
        def get(self, name):
            fetched.append(name)
            return (world.served / name.rsplit('/', 1)[-1]).read_bytes()

    def get_file_backend(name, backend_args=None):
        assert backend_args == {'backend': 'petrel'}, backend_args
        return Backend()

    monkeypatch.setattr('mmengine.fileio.get_file_backend', get_file_backend)
    check_scheme(world, 's3://bucket/good.pth', 's3://bucket/evil.pth',
                 'cluster1:s3://bucket/config.pth')
    with pytest.raises(UnsafeCheckpointError, match='petrel://bucket/evil.pth'):
        load('petrel://bucket/evil.pth')
    assert fetched[-1] == 'petrel://bucket/evil.pth'
    assert_protected(world)


def test_pavi(world, monkeypatch):
    class Model:
        def __init__(self, path):
            self.name = '../' + path.rsplit('/', 1)[-1]  # a name that leaves the folder

        def download(self, dst):
            assert osp.basename(osp.dirname(dst)).startswith('mmvrwkv_fetch_'), dst
            shutil.copy(world.served / self.name[3:], dst)

    fake = types.ModuleType('pavi')
    fake.modelcloud = types.SimpleNamespace(get=Model)
    monkeypatch.setitem(sys.modules, 'pavi', fake)
    check_scheme(world, 'pavi://m/good.pth', 'pavi://m/evil.pth', 'pavi://m/config.pth')


# ----------------------------------------------------------------------------- other schemes

@pytest.fixture
def own_schemes(monkeypatch):
    """Registrations of the test are undone afterwards."""
    monkeypatch.setattr(CheckpointLoader, '_schemes', dict(CheckpointLoader._schemes))


def test_a_scheme_registered_later_is_refused_before_it_runs(world, own_schemes):
    ran = []

    def load_from_foreign(filename, map_location=None):
        ran.append(filename)
        return torch.load(str(world.served / 'evil.pth'), weights_only=False)

    CheckpointLoader.register_scheme('foreign://', loader=load_from_foreign)
    with pytest.raises(CheckpointError, match=r'foreign://x: refused: .*load_from_foreign.*'
                                              r'register_gated_scheme'):
        load('foreign://x')
    assert not ran
    CheckpointLoader.register_scheme('', loader=load_from_foreign, force=True)
    with pytest.raises(CheckpointError, match='load_from_foreign'):
        load(str(world.served / 'good.pth'))
    assert not ran
    assert_protected(world)


def test_a_marked_loader_that_skips_the_gate_is_refused(world, own_schemes):
    @schemes.gated_loader
    def load_from_liar(filename, map_location=None):
        return {'state_dict': {}}

    CheckpointLoader.register_scheme('liar://', loader=load_from_liar)
    with pytest.raises(CheckpointError, match="liar://x: refused: .*did not go through"):
        load('liar://x')


def test_register_gated_scheme(world, own_schemes):
    def fetch(filename, folder):
        path = osp.join(folder, filename[len('mine://'):])
        shutil.copy(world.served / osp.basename(path), path)
        return path

    schemes.register_gated_scheme('mine://', fetch)
    check_scheme(world, 'mine://good.pth', 'mine://evil.pth', 'mine://config.pth')


# ----------------------------------------------------------------------------- the http cache

def test_each_whole_url_has_its_own_cache_file(world, hub):
    for sub, value in (('a', 1.0), ('b', 2.0)):
        (world.served / sub).mkdir(exist_ok=True)
        torch.save({'state_dict': {'w': torch.full((1,), value)}},
                   str(world.served / sub / 'model.pth'))
    a, b = f'{world.base}/a/model.pth', f'{world.base}/b/model.pth'
    assert load(a)['state_dict']['w'].item() == 1.0
    assert load(b)['state_dict']['w'].item() == 2.0  # not a's file
    assert load(b + '?v=2')['state_dict']['w'].item() == 2.0
    assert len({cache_path(u) for u in (a, b, b + '?v=2')}) == 3
    for url in (a, b, b + '?v=2'):
        assert osp.isfile(cache_path(url))
        assert osp.dirname(cache_path(url)).startswith(str(hub / 'checkpoints'))
    before = len(world.server.requests)
    assert load(a)['state_dict']['w'].item() == 1.0  # the cache is used
    assert len(world.server.requests) == before


def test_a_hash_in_the_file_name_is_checked(world, hub):
    digest = sha256_of(world.served / 'good.pth')
    (world.served / 'h').mkdir(exist_ok=True)
    for name in (f'good-{digest[:10]}.pth', 'bad-0123abcd.pth', 'dated-20240101.pth'):
        shutil.copy(world.served / 'good.pth', world.served / 'h' / name)
    assert load(f'{world.base}/h/good-{digest[:10]}.pth')['meta']['epoch'] == 1
    assert load(f'{world.base}/h/dated-20240101.pth')['meta']['epoch'] == 1  # a date, no hash
    bad = f'{world.base}/h/bad-0123abcd.pth'
    with pytest.raises(DownloadHashError) as info:
        load(bad)
    text = str(info.value)
    assert bad in text and cache_path(bad) in text and '0123abcd' in text, text
    assert not osp.exists(cache_path(bad))


def test_a_recorded_hash_is_checked(world, hub, monkeypatch):
    """The metafile's Weights SHA256 (and the sha256 argument) is checked."""
    url = f'{world.base}/good.pth'
    digest = sha256_of(world.served / 'good.pth')
    recorded = {url: 'f' * 64}
    monkeypatch.setattr('mmvrwkv.apis.model_hub.weight_hashes', lambda: recorded)
    with pytest.raises(DownloadHashError, match="metafile"):
        load(url)
    recorded[url] = digest
    assert load(url)['meta']['epoch'] == 1
    # a cached file that does not have the recorded hash is not reused
    recorded[url] = 'e' * 64
    with pytest.warns(UserWarning, match='is not used'), pytest.raises(DownloadHashError):
        load(url)
    assert not osp.exists(cache_path(url))
    recorded.clear()
    with pytest.raises(DownloadHashError, match='sha256 argument'):
        schemes.load_from_http(url, sha256='0' * 64)
    assert schemes.load_from_http(url, sha256=digest.upper())['meta']['epoch'] == 1


def test_a_damaged_cached_file_is_downloaded_again(world, hub):
    url = f'{world.base}/good.pth'
    load(url)
    path = cache_path(url)
    with open(path, 'r+b') as f:
        f.truncate(100)
    before = len(world.server.requests)
    with pytest.warns(UserWarning, match=r'good.pth: the cached download of .* is not used'):
        assert load(url)['meta']['epoch'] == 1
    assert len(world.server.requests) == before + 1
    assert sha256_of(path) == sha256_of(world.served / 'good.pth')


def test_a_planted_cached_file_is_refused_or_replaced(world, hub):
    """A payload planted at the cache path: with a matching .sha256 record (an attacker who
    can write the cache), the gate refuses it; without, it is downloaded again."""
    url = f'{world.base}/good.pth'
    path = cache_path(url)
    os.makedirs(osp.dirname(path))
    write_reduce(path, world.P / 'reduce')
    with pytest.warns(UserWarning, match='no recorded SHA-256'):
        assert load(url)['meta']['epoch'] == 1
    write_reduce(path, world.P / 'reduce')
    with open(path + '.sha256', 'w') as f:
        f.write(sha256_of(path))
    with pytest.raises(UnsafeCheckpointError) as info:
        load(url)
    assert path in str(info.value) and url in str(info.value) and 'io.open' in str(info.value)
    assert_protected(world)


def test_a_failed_download_leaves_nothing(world, hub):
    url = f'{world.base}/missing.pth'
    with pytest.raises(urllib.error.HTTPError):
        load(url)
    folder = osp.dirname(cache_path(url))
    assert not osp.isdir(folder) or not os.listdir(folder)


@pytest.mark.parametrize('rank', [0, 1])
def test_distributed_rank_zero_downloads_first(rank, world, hub, monkeypatch):
    events = []
    download = torch.hub.download_url_to_file

    def spy(url, dst, progress=True):
        events.append('download')
        download(url, dst, progress=progress)

    monkeypatch.setattr(torch.hub, 'download_url_to_file', spy)
    monkeypatch.setattr('mmengine.dist.get_dist_info', lambda: (rank, 2))
    monkeypatch.setattr(torch.distributed, 'barrier', lambda: events.append('barrier'))
    assert load(f'{world.base}/good.pth')['meta']['epoch'] == 1
    assert events == (['download', 'barrier'] if rank == 0 else ['barrier', 'download'])
    events.clear()
    load(f'{world.base}/good.pth')  # cached: no download on any rank
    assert events == ['barrier']


# ----------------------------------------------------------------------------- metafile hashes

def test_metafile_weight_hashes(tmp_path):
    from mmvrwkv.apis.model_hub import metafile_weight_hashes, weight_hashes
    assert isinstance(weight_hashes(), dict)  # our metafiles parse (hashes are optional)
    meta = tmp_path / 'metafile.yml'
    meta.write_text("Models:\n  - Name: a\n    Weights: https://x/a.pth\n"
                    "    Weights SHA256: 'ABCDEF0123'\n  - Name: b\n    Weights: https://x/b.pth\n")
    assert metafile_weight_hashes(str(meta)) == {'https://x/a.pth': 'abcdef0123'}
    meta.write_text("Models:\n  - Name: a\n    Weights: https://x/a.pth\n"
                    "    Weights SHA256: 12345678\n")
    with pytest.raises(ValueError, match="model 'a': Weights SHA256 must be .*quoted"):
        metafile_weight_hashes(str(meta))


# ----------------------------------------------------------------------------- Runner entry

def test_train_resume_from_open_mmlab_does_not_run_meta_config(world, hub, trainer, digits,
                                                               tmp_path, clean_env,
                                                               real_checkpoint):
    """`load_from=open-mmlab://...` + `resume=True` (mmengine's Runner.resume ran the
    checkpoint's meta['config'] before): the resume goes through the gate."""
    marker = tmp_path / 'MARKER'
    write_config(world.served / 'resume.pth', marker, real_checkpoint)
    table = json.loads((world.home / 'open_mmlab.json').read_text())
    table[f'{OMM}/resume'] = f'{world.base}/resume.pth'
    home = tmp_path / 'mmhome'
    home.mkdir()
    (home / 'open_mmlab.json').write_text(json.dumps(table))
    clean_env.setenv('MMENGINE_HOME', str(home))
    work = tmp_path / 'work'
    trainer.main([CFG, '--work-dir', str(work)] + tiny_options(
        digits, epochs=2, load_from=f'open-mmlab://{OMM}/resume', resume=True))
    assert not marker.exists()
    assert osp.isfile(work / 'epoch_2.pth')  # resumed after epoch 1, trained epoch 2
    assert not osp.isfile(work / 'epoch_1.pth')
