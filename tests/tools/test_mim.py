"""openmim: `mim train mmvrwkv CFG` / `mim test mmvrwkv CFG --checkpoint ...` for the three
ways of installing mmvrwkv.

openmim 0.3.9 takes the package root from the installed distribution
(``<location>/mmvrwkv``), looks for CFG by file name under it (following links) and runs
``<root>/.mim/tools/train.py`` (``<root>/tools/test.py`` or ``<root>/.mim/tools/test.py``).
setup.py fills ``mmvrwkv/.mim`` with ``configs``, ``tools`` and ``model-index.yml``.

* ``pip install .`` (non-editable): copies in the installed package. Checked for real: the
  package is installed with ``pip install --target`` into a throw-away virtual environment,
  then ``mim train`` (launchers none, pytorch with 2 CPU processes, slurm through a stub
  ``srun``) trains the classification demo for one short epoch and ``mim test`` evaluates it.
* ``setup.py develop`` (what ``pip install -e .`` runs with pip < 25.3 and no pyproject.toml,
  as tools/setup_env.sh does): symlinks to the checkout; mim finds configs and tools.
* PEP 660 editable wheel (``pip install -e .`` with pip >= 25.3, or ``--use-pep517``): no
  ``.mim`` in the environment; mim cannot find configs or tools (documented, checked).

The source is copied (git-tracked and untracked-but-not-ignored files) to a temporary folder
first, so the checkout's own ``mmvrwkv/.mim`` and build folders are never touched, and built
with ``MMVRWKV_NO_EXT=1`` (no C++ build: minutes saved; the pure-PyTorch op trains the demo).
The throw-away environments reuse the running environment's packages through a ``.pth`` file
(its site-packages directory is added as a plain path, so its own ``.pth`` files, e.g. a
development install of mmvrwkv, are not applied).
"""
import glob
import json
import os
import os.path as osp
import shutil
import socket
import subprocess
import sys
import sysconfig
import tarfile
import uuid

import pytest

pytest.importorskip('mmpretrain')
pytest.importorskip('mim')

from tool_helpers import ROOT  # noqa: E402
CFG = sorted(glob.glob(osp.join(ROOT, 'configs', 'demo', 'vrwkv-tiny*digits.py')))[0]
CFG_FILE = osp.basename(CFG)  # what users pass to mim: the config's file name
TIMEOUT = 300
IGNORE = ('.git', '.venv', 'build', 'dist', '*.egg-info', '__pycache__', '*.so', '*.pyc',
          'work_dirs', 'data', '.mim', '.pytest_cache', '.hypothesis', '.device')


def copy_source(dst):
    """The project's files (tracked + untracked, not ignored) as in a fresh clone."""
    try:
        files = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '-z'], cwd=ROOT,
                               check=True, capture_output=True).stdout.decode().split('\0')
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        shutil.copytree(ROOT, dst, symlinks=True, ignore=shutil.ignore_patterns(*IGNORE))
        return dst
    for rel in filter(None, files):
        src = osp.join(ROOT, rel)
        if not osp.isfile(src):  # deleted but not yet staged
            continue
        os.makedirs(osp.dirname(osp.join(dst, rel)), exist_ok=True)
        shutil.copy2(src, osp.join(dst, rel))
    return dst


def make_venv(path):
    """A virtual environment without pip that sees the running environment's packages."""
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', path], check=True)
    py = osp.join(path, 'bin', 'python')
    sp = subprocess.run([py, '-c', "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        check=True, capture_output=True, text=True).stdout.strip()
    ours = dict.fromkeys([sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']])
    with open(osp.join(sp, '_mmvrwkv_test_base.pth'), 'w') as f:
        f.writelines(p + '\n' for p in ours)
    return py, sp


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(('PIP_', 'SLURM_')) and k not in (
               'PYTHONPATH', 'LOCAL_RANK', 'RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')}
    env.update(MMVRWKV_NO_EXT='1', OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(cmd, cwd, env=None, timeout=TIMEOUT):
    proc = subprocess.run(cmd, cwd=cwd, env=env or clean_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return proc.returncode, proc.stdout


def pip_install(args, cwd):
    rc, out = run([sys.executable, '-m', 'pip', 'install', '-q', '--no-index', '--no-deps',
                   '--no-build-isolation', '--no-compile', '--disable-pip-version-check'] + args,
                  cwd)
    assert rc == 0, out[-3000:]


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def tiny_options(data_root, n_train=32):
    opts = {'data_root': data_root, 'model.backbone.depth': 2, 'train_cfg.max_epochs': 1,
            'train_dataloader.batch_size': 16,
            'experiment_name': f'test_{uuid.uuid4().hex[:8]}'}
    for split, n in (('train', n_train), ('val', 32), ('test', 32)):
        opts.update({f'{split}_dataloader.dataset.data_root': data_root,
                     f'{split}_dataloader.dataset.indices': n,
                     f'{split}_dataloader.num_workers': 0,
                     f'{split}_dataloader.persistent_workers': False})
    return ['--cfg-options'] + [f'{k}={v}' for k, v in opts.items()]


def mim(py, *args):
    return [py, '-m', 'mim'] + list(args)


@pytest.fixture(scope='module')
def source(tmp_path_factory):
    return copy_source(str(tmp_path_factory.mktemp('mim') / 'clean'))


@pytest.fixture(scope='module')
def installed(tmp_path_factory, source):
    """`pip install .` (non-editable) of a copy of the source into a throw-away venv."""
    base = tmp_path_factory.mktemp('mim_install')
    src = shutil.copytree(source, str(base / 'src'))
    py, sp = make_venv(str(base / 'venv'))
    pip_install(['--target', sp, src], cwd=str(base))
    return dict(py=py, sp=sp, pkg=osp.join(sp, 'mmvrwkv'), cwd=str(base))


# ----------------------------------------------------------------------------- packaging


def test_model_index():
    from modelindex.load_model_index import load
    index = load(osp.join(ROOT, 'model-index.yml'))
    assert index.models, 'model-index.yml lists no models'
    for model in index.models:
        assert osp.isfile(osp.join(ROOT, model.config)), model.config


def test_sdist_contents(tmp_path, source):
    src = shutil.copytree(source, str(tmp_path / 'src'))
    rc, out = run([sys.executable, 'setup.py', '-q', 'sdist', '-d', str(tmp_path / 'dist')],
                  cwd=src)
    assert rc == 0, out[-3000:]
    (sdist, ) = glob.glob(str(tmp_path / 'dist' / 'mmvrwkv-*.tar.gz'))
    with tarfile.open(sdist) as tar:
        names = {n.split('/', 1)[1] for n in tar.getnames() if '/' in n}
    for need in ('setup.py', 'MANIFEST.in', 'model-index.yml', 'requirements/runtime.txt',
                 'kernels/bi_wkv/cuda.cu', 'kernels/bi_wkv/core.h', 'mmvrwkv/__init__.py',
                 'mmvrwkv/.mim/model-index.yml', 'mmvrwkv/.mim/tools/train.py',
                 'mmvrwkv/.mim/tools/test.py', 'mmvrwkv/.mim/tools/dist_train.sh',
                 'mmvrwkv/.mim/configs/vrwkv/metafile.yml',
                 f'mmvrwkv/.mim/configs/demo/{CFG_FILE}'):
        assert need in names, need
    assert not any(n.endswith(('.so', '.pyc')) for n in names)


def test_non_editable_layout(installed):
    mim_dir = osp.join(installed['pkg'], '.mim')
    for rel in ('configs', 'tools', 'model-index.yml'):
        assert osp.exists(osp.join(mim_dir, rel)) and not osp.islink(osp.join(mim_dir, rel))
    assert osp.isfile(osp.join(mim_dir, 'configs', 'demo', CFG_FILE))
    assert os.access(osp.join(mim_dir, 'tools', 'dist_train.sh'), os.X_OK)
    rc, out = run([installed['py'], '-c', 'import mmvrwkv, mim.utils as u; '
                   "print(mmvrwkv.__file__); print(u.get_installed_path('mmvrwkv'))"],
                  cwd=installed['cwd'])
    assert rc == 0, out
    assert out.split() == [osp.join(installed['pkg'], '__init__.py'), installed['pkg']]
    # the packaged model index: `mim search mmvrwkv` lists the models of model-index.yml
    rc, out = run(mim(installed['py'], 'search', 'mmvrwkv'), cwd=installed['cwd'])
    assert rc == 0 and 'config id: vrwkv-tiny_8xb128_in1k' in out, out[-2000:]


# ----------------------------------------------------------------------------- mim runs


def test_mim_train_and_test_non_editable(installed, digits, tmp_path):
    py, pkg = installed['py'], installed['pkg']
    work = str(tmp_path / 'work')
    rc, out = run(mim(py, 'train', 'mmvrwkv', CFG_FILE, '--gpus', '0', '--work-dir', work)
                  + tiny_options(digits), cwd=str(tmp_path))
    assert rc == 0, out[-3000:]
    cfg_used = osp.join(pkg, '.mim', 'configs', 'demo', CFG_FILE)
    assert f'will use {cfg_used} instead' in out
    assert f"Training command is {py} {osp.join(pkg, '.mim', 'tools', 'train.py')} {cfg_used}" in out
    assert 'Epoch(train) [1][2/2]' in out
    ckpt = osp.join(work, 'epoch_1.pth')
    assert osp.isfile(ckpt)

    metrics = str(tmp_path / 'metrics.json')
    rc, out = run(mim(py, 'test', 'mmvrwkv', CFG_FILE, '--checkpoint', ckpt, '--work-dir',
                      str(tmp_path / 'test'), '--metrics-out', metrics) + tiny_options(digits),
                  cwd=str(tmp_path))
    assert rc == 0, out[-3000:]
    assert f"{osp.join(pkg, '.mim', 'tools', 'test.py')} {cfg_used} {ckpt}" in out
    with open(metrics) as f:
        assert 0.0 <= json.load(f)['accuracy/top1'] <= 100.0


def test_mim_train_pytorch_launcher(installed, digits, tmp_path):
    """mim --launcher pytorch: torch.distributed.launch (--local-rank=N) -> our train.py."""
    py, pkg = installed['py'], installed['pkg']
    work = str(tmp_path / 'work')
    rc, out = run(mim(py, 'train', 'mmvrwkv', CFG_FILE, '--launcher', 'pytorch', '--gpus', '2',
                      '--port', str(free_port()), '--work-dir', work) + tiny_options(digits),
                  cwd=str(tmp_path))
    assert rc == 0, out[-3000:]
    assert f"{osp.join(pkg, '.mim', 'tools', 'train.py')}" in out
    assert 'Distributed launcher: pytorch' in out and 'Distributed training: True' in out
    assert 'Epoch(train) [1][1/1]' in out  # 32 images, 16 per process and iteration
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))


STUB_SRUN = r'''#!{python}
# Stub srun: records its arguments, then starts --ntasks local tasks with SLURM_* variables.
import json, os, subprocess, sys
args = sys.argv[1:]
with open(os.environ['STUB_LOG'], 'a') as f:
    f.write(json.dumps(args) + '\n')
i, ntasks = 0, 1
while i < len(args) and args[i].startswith('-'):
    if args[i].startswith('--ntasks='):
        ntasks = int(args[i].split('=', 1)[1])
    i += 2 if args[i] in ('-p', '-J', '-x', '-w', '-N', '-n', '-c', '-t') else 1
# (MASTER_ADDR stands in for `scontrol show hostname`, which this test does not stub)
procs = [subprocess.Popen(args[i:], env=dict(
    os.environ, SLURM_PROCID=str(r), SLURM_LOCALID=str(r), SLURM_NTASKS=str(ntasks),
    SLURM_NODELIST='localhost', MASTER_ADDR='127.0.0.1')) for r in range(ntasks)]
sys.exit(max(p.wait() for p in procs))
'''


def test_mim_train_slurm_launcher(installed, digits, tmp_path):
    """mim --launcher slurm: srun ... python -u .mim/tools/train.py CFG --launcher slurm.

    openmim 0.3.9 with click >= 8.3 needs an explicit ``--srun-args`` (click passes its
    "unset" sentinel instead of None, and mim calls ``srun_args.split()``); ``''`` is enough.
    """
    py, pkg = installed['py'], installed['pkg']
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'srun').write_text(STUB_SRUN.format(python=sys.executable))
    (bin_dir / 'srun').chmod(0o755)
    log = str(tmp_path / 'srun.jsonl')
    work = str(tmp_path / 'work')
    env = clean_env(PATH=f"{bin_dir}:{os.environ['PATH']}", STUB_LOG=log)
    port = free_port()
    # one task (2-task slurm DDP on the CPU is covered by test_launch.py)
    rc, out = run(mim(py, 'train', 'mmvrwkv', CFG_FILE, '--launcher', 'slurm', '--gpus', '1',
                      '--gpus-per-node', '1', '--partition', 'cpu', '--cpus-per-task', '1',
                      '--srun-args', '', '--port', str(port), '--work-dir', work)
                  + tiny_options(digits),
                  cwd=str(tmp_path), env=env)
    assert rc == 0, out[-3000:]
    with open(log) as f:
        (args, ) = [json.loads(line) for line in f]
    train_py = osp.join(pkg, '.mim', 'tools', 'train.py')
    assert args[:8] == ['-p', 'cpu', '--gres=gpu:1', '--ntasks=1', '--ntasks-per-node=1',
                        '--cpus-per-task=1', '--kill-on-bad-exit=1',
                        f'--job-name={osp.splitext(CFG_FILE)[0]}_train']
    i = args.index(train_py)
    assert args[i - 2:i] == [py, '-u']
    assert args[i + 2:i + 4] == ['--launcher', 'slurm']
    assert 'Distributed launcher: slurm' in out and 'Distributed training: True' in out
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))


def test_mim_develop_install(tmp_path, source):
    """`setup.py develop` (pip -e with pip < 25.3): .mim symlinks into the checkout."""
    src = shutil.copytree(source, str(tmp_path / 'src'))
    py, sp = make_venv(str(tmp_path / 'venv'))
    rc, out = run([py, 'setup.py', '-q', 'develop', '--no-deps'], cwd=src)
    assert rc == 0, out[-3000:]
    mim_dir = osp.join(src, 'mmvrwkv', '.mim')
    for rel in ('configs', 'tools', 'model-index.yml'):
        assert osp.islink(osp.join(mim_dir, rel))
        assert osp.realpath(osp.join(mim_dir, rel)) == osp.realpath(osp.join(src, rel))
    # mim resolves the config into the checkout and runs the checkout's train.py / test.py
    # (a missing --resume / checkpoint file stops them right after the config is parsed).
    missing = str(tmp_path / 'missing.pth')
    rc, out = run(mim(py, 'train', 'mmvrwkv', CFG_FILE, '--resume', missing), cwd=str(tmp_path))
    assert rc != 0
    assert f"will use {osp.join(osp.realpath(src), 'configs', 'demo', CFG_FILE)} instead" in out
    assert osp.join(mim_dir, 'tools', 'train.py') in out
    assert f"--resume: checkpoint '{missing}' does not exist" in out
    rc, out = run(mim(py, 'test', 'mmvrwkv', CFG_FILE, '--checkpoint', missing),
                  cwd=str(tmp_path))
    assert rc != 0
    assert osp.join(mim_dir, 'tools', 'test.py') in out
    assert f"checkpoint '{missing}' does not exist" in out


def test_mim_pep660_editable_install(tmp_path, source):
    """PEP 660 editable install (pip >= 25.3 `pip install -e .`): mim finds nothing."""
    src = shutil.copytree(source, str(tmp_path / 'src'))
    py, sp = make_venv(str(tmp_path / 'venv'))
    dist = str(tmp_path / 'dist')
    rc, out = run([py, '-c', 'import sys; from setuptools import build_meta as b; '
                   'print(b.build_editable(sys.argv[1]))', dist], cwd=src)
    assert rc == 0, out[-3000:]
    (wheel, ) = glob.glob(osp.join(dist, '*.whl'))
    pip_install(['--target', sp, wheel], cwd=str(tmp_path))
    assert not osp.exists(osp.join(src, 'mmvrwkv', '.mim'))
    rc, out = run([py, '-c', 'import mmvrwkv; print(mmvrwkv.__file__)'], cwd=str(tmp_path))
    assert rc == 0 and out.strip() == osp.join(src, 'mmvrwkv', '__init__.py'), out
    rc, out = run(mim(py, 'train', 'mmvrwkv', CFG_FILE), cwd=str(tmp_path))
    assert rc != 0 and 'can not find the config file in codebase mmvrwkv' in out, out[-2000:]
    # with a config path mim still looks for train.py inside site-packages/mmvrwkv
    rc, out = run(mim(py, 'train', 'mmvrwkv', osp.join(src, 'configs', 'demo', CFG_FILE)),
                  cwd=str(tmp_path))
    assert rc != 0 and osp.join(sp, 'mmvrwkv', 'tools', 'train.py') in out, out[-2000:]
