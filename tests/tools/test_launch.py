"""The launch scripts tools/dist_{train,test}.sh (torchrun) and tools/slurm_{train,test}.sh
(srun), and distributed data-parallel training on the CPU (gloo).

* The command lines the scripts build are checked with a stub interpreter / a stub ``srun``
  on PATH that record their arguments and environment.
* A real 2-process DDP run (CPU, gloo) of the classification demo through dist_train.sh
  writes checkpoints with the same structure (keys, shapes) as a 1-process run; the DDP
  checkpoint is then evaluated by 2 processes through dist_test.sh.
* slurm_train.sh runs a real 2-task job through a stub ``srun`` that starts the tasks
  locally with the SLURM_* variables a real srun sets (and a stub ``scontrol``).

Needs mmpretrain (skipped without it).
"""
import glob
import json
import os
import os.path as osp
import socket
import subprocess
import sys
import uuid

import pytest
import torch

pytest.importorskip('mmpretrain')

from tool_helpers import ROOT  # noqa: E402
CFG = sorted(glob.glob(osp.join(ROOT, 'configs', 'demo', 'vrwkv-tiny*digits.py')))[0]
TOOLS = osp.join(ROOT, 'tools')
TIMEOUT = 300

# Records argv and some environment of a stub command as one JSON line in $STUB_LOG. As
# `srun` with STUB_SRUN_EXEC=1 it then runs the task command --ntasks times in parallel with
# the SLURM_* variables of a one-node job (only the options our scripts and mim pass are
# understood).
STUB = r'''#!{python}
import json, os, subprocess, sys
name = os.path.basename(sys.argv[0])
args = sys.argv[1:]
keys = ('PYTHONPATH', 'GPUS', 'MASTER_PORT', 'MMVRWKV_DIST_BACKEND')
with open(os.environ['STUB_LOG'], 'a') as f:
    f.write(json.dumps(dict(name=name, args=args, env={{k: os.environ.get(k) for k in keys}})) + '\n')
if name == 'scontrol':  # scontrol show hostname NODELIST
    print('localhost')
    sys.exit(0)
if name != 'srun' or os.environ.get('STUB_SRUN_EXEC') != '1':
    sys.exit(0)
i, ntasks = 0, 1
with_value = ('-p', '-J', '-x', '-w', '-N', '-n', '-c', '-t')
while i < len(args) and args[i].startswith('-'):
    if args[i].startswith('--ntasks='):
        ntasks = int(args[i].split('=', 1)[1])
    i += 2 if args[i] in with_value else 1
cmd = args[i:]
procs = []
for rank in range(ntasks):
    env = dict(os.environ, SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank),
               SLURM_NTASKS=str(ntasks), SLURM_NODELIST='localhost')
    procs.append(subprocess.Popen(cmd, env=env))
sys.exit(max(p.wait() for p in procs))
'''


def write_stubs(folder, names=('srun', 'scontrol')):
    os.makedirs(folder, exist_ok=True)
    for name in names:
        path = osp.join(folder, name)
        with open(path, 'w') as f:
            f.write(STUB.format(python=sys.executable))
        os.chmod(path, 0o755)
    return folder


def read_log(path, name=None):
    if not osp.exists(path):
        return []
    with open(path) as f:
        recs = [json.loads(line) for line in f]
    return [r for r in recs if name is None or r['name'] == name]


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def base_env(**extra):
    env = dict(os.environ)
    for k in ('LOCAL_RANK', 'RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT',
              'SLURM_PROCID', 'SLURM_NTASKS', 'MMVRWKV_DIST_BACKEND', 'NNODES', 'NODE_RANK',
              'PORT', 'GPUS', 'GPUS_PER_NODE', 'CPUS_PER_TASK', 'SRUN_ARGS', 'TASKS_PER_NODE'):
        env.pop(k, None)
    env.update(PYTHON=sys.executable, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(cmd, env, cwd, timeout=TIMEOUT):
    proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return proc.returncode, proc.stdout


def tiny_options(data_root, n_train=64, epochs=1):
    opts = {'data_root': data_root, 'model.backbone.depth': 2, 'train_cfg.max_epochs': epochs,
            'train_dataloader.batch_size': 16, 'default_hooks.logger.interval': 1,
            'experiment_name': f'test_{uuid.uuid4().hex[:8]}'}
    for split, n in (('train', n_train), ('val', 32), ('test', 32)):
        opts.update({f'{split}_dataloader.dataset.data_root': data_root,
                     f'{split}_dataloader.dataset.indices': n,
                     f'{split}_dataloader.num_workers': 0,
                     f'{split}_dataloader.persistent_workers': False})
    return ['--cfg-options'] + [f'{k}={v}' for k, v in opts.items()]


# ----------------------------------------------------------------------------- command lines


def stub_python(tmp_path):
    """A stub interpreter for $PYTHON: records its arguments."""
    write_stubs(str(tmp_path / 'bin'), names=('python',))
    return str(tmp_path / 'bin' / 'python'), str(tmp_path / 'stub.jsonl')


@pytest.mark.parametrize('script', ['dist_train.sh', 'dist_test.sh'])
def test_dist_scripts_defaults(tmp_path, script):
    py, log = stub_python(tmp_path)
    pre = ['cfg.py'] if script == 'dist_train.sh' else ['cfg.py', 'ck.pth']
    rc, out = run(['bash', osp.join(TOOLS, script)] + pre + ['2', '--foo', 'a b'],
                  base_env(PYTHON=py, STUB_LOG=log), cwd=str(tmp_path))
    assert rc == 0, out
    (rec, ) = read_log(log)
    tool = osp.join(TOOLS, 'train.py' if script == 'dist_train.sh' else 'test.py')
    assert rec['args'] == ['-m', 'torch.distributed.run', '--nnodes=1', '--node_rank=0',
                           '--master_addr=127.0.0.1', '--master_port=29500',
                           '--nproc_per_node=2', tool] + pre + [
                               '--launcher', 'pytorch', '--foo', 'a b']
    assert rec['env']['PYTHONPATH'].split(':')[0] == ROOT


@pytest.mark.parametrize('script', ['dist_train.sh', 'dist_test.sh'])
def test_dist_scripts_multi_node_env(tmp_path, script):
    py, log = stub_python(tmp_path)
    pre = ['cfg.py'] if script == 'dist_train.sh' else ['cfg.py', 'ck.pth']
    env = base_env(PYTHON=py, STUB_LOG=log, NNODES=2, NODE_RANK=1, MASTER_ADDR='10.1.2.3',
                   PORT=23456, PYTHONPATH='/elsewhere', MMVRWKV_DIST_BACKEND='gloo')
    rc, out = run(['bash', osp.join(TOOLS, script)] + pre + ['8'], env, cwd=str(tmp_path))
    assert rc == 0, out
    (rec, ) = read_log(log)
    assert rec['args'][2:7] == ['--nnodes=2', '--node_rank=1', '--master_addr=10.1.2.3',
                                '--master_port=23456', '--nproc_per_node=8']
    assert rec['env']['PYTHONPATH'] == f'{ROOT}:/elsewhere'
    assert rec['env']['MMVRWKV_DIST_BACKEND'] == 'gloo'


@pytest.mark.parametrize('script,nargs', [('dist_train.sh', 2), ('dist_test.sh', 3),
                                          ('slurm_train.sh', 4), ('slurm_test.sh', 4)])
def test_scripts_usage(tmp_path, script, nargs):
    rc, out = run(['bash', osp.join(TOOLS, script)] + ['x'] * (nargs - 1), base_env(),
                  cwd=str(tmp_path))
    assert rc == 2 and 'usage' in out


@pytest.mark.parametrize('script', ['slurm_train.sh', 'slurm_test.sh'])
def test_slurm_scripts_arguments(tmp_path, script):
    bin_dir = write_stubs(str(tmp_path / 'bin'))
    log = str(tmp_path / 'stub.jsonl')
    env = base_env(STUB_LOG=log, PATH=f"{bin_dir}:{os.environ['PATH']}", GPUS=16,
                   GPUS_PER_NODE=4, CPUS_PER_TASK=3, SRUN_ARGS='--quotatype=auto -x node7')
    fourth = 'work_dir' if script == 'slurm_train.sh' else 'ck.pth'
    rc, out = run(['bash', osp.join(TOOLS, script), 'gpu', 'myjob', 'cfg.py', fourth, '--foo'],
                  env, cwd=str(tmp_path))
    assert rc == 0, out
    (rec, ) = read_log(log, 'srun')
    if script == 'slurm_train.sh':
        task = [sys.executable, '-u', osp.join(TOOLS, 'train.py'), 'cfg.py',
                '--work-dir=work_dir', '--launcher=slurm', '--foo']
    else:
        task = [sys.executable, '-u', osp.join(TOOLS, 'test.py'), 'cfg.py', 'ck.pth',
                '--launcher=slurm', '--foo']
    assert rec['args'] == ['-p', 'gpu', '--job-name=myjob', '--gres=gpu:4',
                           '--ntasks-per-node=4', '--ntasks=16', '--cpus-per-task=3',
                           '--kill-on-bad-exit=1', '--quotatype=auto', '-x', 'node7'] + task
    assert rec['env']['PYTHONPATH'].split(':')[0] == ROOT

    # defaults (8 GPUs per node, 5 CPUs per task); GPUS_PER_NODE=0: a CPU job without --gres
    os.remove(log)
    rc, out = run(['bash', osp.join(TOOLS, script), 'p', 'j', 'cfg.py', fourth],
                  base_env(STUB_LOG=log, PATH=env['PATH']), cwd=str(tmp_path))
    assert rc == 0, out
    assert read_log(log, 'srun')[0]['args'][:8] == [
        '-p', 'p', '--job-name=j', '--gres=gpu:8', '--ntasks-per-node=8', '--ntasks=8',
        '--cpus-per-task=5', '--kill-on-bad-exit=1']
    os.remove(log)
    rc, out = run(['bash', osp.join(TOOLS, script), 'p', 'j', 'cfg.py', fourth],
                  base_env(STUB_LOG=log, PATH=env['PATH'], GPUS=2, GPUS_PER_NODE=0,
                           TASKS_PER_NODE=2), cwd=str(tmp_path))
    assert rc == 0, out
    assert read_log(log, 'srun')[0]['args'][:6] == [
        '-p', 'p', '--job-name=j', '--ntasks-per-node=2', '--ntasks=2', '--cpus-per-task=5']


# ----------------------------------------------------------------------------- real runs


def checkpoint_structure(path):
    ckpt = torch.load(path, map_location='cpu', weights_only=False)
    return dict(
        top=sorted(ckpt),
        state_dict={k: tuple(v.shape) for k, v in ckpt['state_dict'].items()},
        optimizer_state={k: sorted(v) for k, v in ckpt['optimizer']['state'].items()},
        param_groups=len(ckpt['optimizer']['param_groups']),
        meta=sorted(ckpt['meta']),
        epoch=ckpt['meta']['epoch'], iter=ckpt['meta']['iter'])


def test_ddp_dist_train_and_test_cpu(tmp_path, digits):
    """2 processes (gloo) through dist_train.sh vs one process; then dist_test.sh."""
    one, two = str(tmp_path / 'one'), str(tmp_path / 'two')
    # 64 images, batch 16 per process: 4 iterations in 1 process, 2 per process with 2
    rc, out = run([sys.executable, osp.join(TOOLS, 'train.py'), CFG, '--work-dir', one]
                  + tiny_options(digits), base_env(), cwd=str(tmp_path))
    assert rc == 0, out[-3000:]
    rc, out = run(['bash', osp.join(TOOLS, 'dist_train.sh'), CFG, '2', '--work-dir', two]
                  + tiny_options(digits), base_env(PORT=free_port()), cwd=str(tmp_path))
    assert rc == 0, out[-3000:]
    assert 'Distributed training: True' in out and "'backend': 'gloo'" in out
    assert out.count('Epoch(train) [1][2/2]') == 1  # rank 0 logs 2 iterations of 2
    s1 = checkpoint_structure(osp.join(one, 'epoch_1.pth'))
    s2 = checkpoint_structure(osp.join(two, 'epoch_1.pth'))
    assert (s1['epoch'], s1['iter'], s2['epoch'], s2['iter']) == (1, 4, 1, 2)
    for key in ('top', 'state_dict', 'optimizer_state', 'param_groups', 'meta'):
        assert s1[key] == s2[key], key
    assert not any(k.startswith('module.') for k in s2['state_dict'])

    metrics = str(tmp_path / 'metrics.json')
    rc, out = run(['bash', osp.join(TOOLS, 'dist_test.sh'), CFG, osp.join(two, 'epoch_1.pth'),
                   '2', '--work-dir', str(tmp_path / 'test'), '--metrics-out', metrics]
                  + tiny_options(digits), base_env(PORT=free_port()), cwd=str(tmp_path))
    assert rc == 0, out[-3000:]
    with open(metrics) as f:
        assert 0.0 <= json.load(f)['accuracy/top1'] <= 100.0


def test_slurm_train_two_tasks_cpu(tmp_path, digits):
    """slurm_train.sh -> stub srun starting 2 local tasks -> train.py --launcher slurm."""
    bin_dir = write_stubs(str(tmp_path / 'bin'))
    log = str(tmp_path / 'stub.jsonl')
    work = str(tmp_path / 'work')
    env = base_env(STUB_LOG=log, STUB_SRUN_EXEC=1, PATH=f"{bin_dir}:{os.environ['PATH']}",
                   GPUS=2, GPUS_PER_NODE=0, CPUS_PER_TASK=1, MASTER_PORT=free_port())
    rc, out = run(['bash', osp.join(TOOLS, 'slurm_train.sh'), 'cpu', 'job', CFG, work]
                  + tiny_options(digits, n_train=32), env, cwd=str(tmp_path))
    assert rc == 0, out[-3000:]
    assert 'Distributed launcher: slurm' in out and 'Distributed training: True' in out
    assert len(read_log(log, 'scontrol')) == 2  # each task looked up the master node
    assert checkpoint_structure(osp.join(work, 'epoch_1.pth'))['iter'] == 1
