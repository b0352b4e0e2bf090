#!/usr/bin/env python
"""The bookkeeping of .ci/device/gpu_check.sh: time budget, step log, summary, packing.

gpu_check.sh is a list of steps; this script runs each one under what is left of the
budget and writes what a device run brings back::

    gpu_check_steps.py init                      start the step log ($OUT/.steps)
    gpu_check_steps.py run NAME MAX 'COMMAND'    run COMMAND (bash) with output in $OUT/NAME.log
    gpu_check_steps.py skip NAME REASON          record a step that does not apply
    gpu_check_steps.py env                       print the Python / torch / GPU / tool versions
    gpu_check_steps.py ext                       print whether mmvrwkv._ext loads, and how
    gpu_check_steps.py summary                   write $OUT/summary.txt from the logs
    gpu_check_steps.py pack --keep FILE ...      tar everything, keep at most N files loose

A step's timeout is MAX seconds or what is left of the budget (GPU_CHECK_BUDGET seconds from
GPU_CHECK_START, less GPU_CHECK_RESERVE for the summary), whichever is smaller; with less
than GPU_CHECK_MIN_STEP seconds left the step is skipped. On timeout the step's process
group gets SIGTERM, then SIGKILL 10 s later (rc 124 / 137, as ``timeout -k 10``). Each
step adds ``NAME RC SECONDS NOTE`` to $OUT/.steps.

Standard library only (``env`` and ``ext`` import torch and mmvrwkv, which gpu_check.sh puts
on PYTHONPATH): the GPU machines have Python and torch, but no mmengine.
"""
import argparse
import datetime
import os
import os.path as osp
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from typing import List, Optional, Sequence

KILL_AFTER = 10  # seconds between SIGTERM and SIGKILL of a step that ran out of time
SUMMARY = 'summary.txt'
TARBALL = 'gpu_check.tar.gz'


def out_dir() -> str:
    """$OUT (created), where every log and result goes."""
    out = os.environ.get('OUT')
    if not out:
        sys.exit('gpu_check_steps: OUT is not set')
    os.makedirs(out, exist_ok=True)
    return osp.abspath(out)


def _env_number(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, '') else default


def seconds_left(now: Optional[float] = None) -> float:
    """Seconds of the budget left for steps (the reserve for the summary already taken off)."""
    now = time.time() if now is None else now
    start = _env_number('GPU_CHECK_START', now)
    return (start + _env_number('GPU_CHECK_BUDGET', 330) - now
            - _env_number('GPU_CHECK_RESERVE', 15))


def record(name: str, rc: str, seconds: int, note: str) -> None:
    """One line of the step log."""
    with open(osp.join(out_dir(), '.steps'), 'a') as f:
        f.write(f'{name} {rc} {seconds} {note}\n')


def read_steps(out: str) -> List[tuple]:
    """The step log as (name, rc, seconds, note) tuples."""
    path = osp.join(out, '.steps')
    if not osp.exists(path):
        return []
    with open(path) as f:
        return [tuple(line.rstrip('\n').split(' ', 3)) for line in f if line.strip()]


def run_step(name: str, max_seconds: float, command: str, notes: Sequence[str] = ()) -> int:
    """Run ``command`` with bash under the budget; returns its exit status (0 if skipped)."""
    timeout = int(min(max_seconds, seconds_left()))
    if timeout < _env_number('GPU_CHECK_MIN_STEP', 5):
        record(name, '-', 0, 'skipped:out-of-time-budget')
        print(f'[gpu_check] {name}: skipped (time budget spent)', flush=True)
        return 0
    print(f'[gpu_check] {name} (timeout {timeout}s): {command}', flush=True)
    start = time.time()
    with open(osp.join(out_dir(), f'{name}.log'), 'wb') as log:
        proc = subprocess.Popen(['bash', '-c', command], stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = _stop(proc)
        finally:
            if proc.poll() is None:  # interrupted: leave nothing running
                _stop(proc)
    seconds = int(time.time() - start)
    note = 'ok' if rc == 0 else 'failed'
    if rc in (124, 137):
        note = f'timeout({timeout}s)'
    note = dict(n.split('=', 1) for n in notes).get(str(rc), note)
    record(name, str(rc), seconds, note)
    print(f'[gpu_check] {name}: rc={rc} in {seconds}s', flush=True)
    return rc


def _stop(proc: subprocess.Popen) -> int:
    """SIGTERM to the step's process group, SIGKILL after KILL_AFTER s: 124, or 137."""
    for sig, rc in ((signal.SIGTERM, 124), (signal.SIGKILL, 137)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=KILL_AFTER)
            return rc
        except subprocess.TimeoutExpired:
            continue
    return 137


# ----------------------------------------------------------------------------- env, ext

def print_env() -> None:
    """The lines the summary quotes: python, torch, cuda available, gpu, nvcc, ninja, git."""
    import torch

    from mmvrwkv.analysis.machine import environment
    env = environment('cuda' if torch.cuda.is_available() else 'cpu')
    print('python', env['python'], env['platform'])
    print('torch', env['torch'], 'cuda', env['torch_cuda'], 'threads', env['threads'])
    print('cuda available', env['device'] == 'cuda')
    print('cpu', env['processor'], 'count', env['cpu_count'], 'load', env['loadavg'])
    if env['device'] == 'cuda':
        print('gpu', env['device_name'], 'capability', env['capability'], 'SMs', env['sm_count'],
              'L2', env['l2_bytes'], 'memory', env['total_memory'])
    for tool in ('nvcc', 'ninja'):
        try:
            out = subprocess.run([tool, '--version'], capture_output=True, text=True).stdout
            print(tool, out.strip().splitlines()[-1] if out.strip() else '?')
        except OSError:
            print(tool, 'not found')
    try:
        head = subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True,
                              cwd=osp.dirname(osp.abspath(__file__))).stdout.strip()
        print('git', head or '?')
    except OSError:
        pass


def print_ext() -> None:
    """One line: whether the extension loaded, with CUDA, which backends, and why not."""
    from mmvrwkv.ops import available_backends, ext_available, ext_has_cuda
    try:
        from mmvrwkv.ops._ext import ext_load_error
        error = ext_load_error()
    except ImportError:
        error = '?'
    print('ext_available', ext_available(), 'ext_has_cuda', ext_has_cuda(), 'backends',
          available_backends(), 'load_error', error)


# ----------------------------------------------------------------------------- summary, pack

def _read(path: str) -> List[str]:
    try:
        with open(path, errors='replace') as f:
            return f.read().splitlines()
    except OSError:
        return []


def write_summary(title: str, logs: Sequence[str], target_logs: Sequence[str],
                  log_lines: int = 140, tail_lines: int = 25) -> str:
    """$OUT/summary.txt: the step table, build time, extension, test result, the end of each
    log in ``logs``, the target lines, and the tail of every failed step's log."""
    out = out_dir()
    steps = read_steps(out)
    start = _env_number('GPU_CHECK_START', time.time())
    used = int(time.time() - start)
    lines = [f'gpu_check summary  {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M:%SZ}'
             f'  host={socket.gethostname()}  {title}'.rstrip(),
             f"total {int(_env_number('GPU_CHECK_BUDGET', 330))}s budget, {used}s used"]
    env_re = re.compile(r'^(gpu|torch|python|cuda available|nvcc|git) ')
    lines += ['  ' + ln for ln in _read(osp.join(out, 'env.log')) if env_re.match(ln)]
    lines += ['', 'step          rc   seconds  note']
    lines += [f'{s[0]:<12} {s[1]:>4} {s[2]:>9}  {s[3] if len(s) > 3 else ""}' for s in steps]
    lines.append('')
    build = [s for s in steps if s[0] == 'build' and s[1] != '-']
    if build:
        lines.append(f'build time: {build[-1][2]}s')
    ext = _read(osp.join(out, 'ext.log'))
    if ext:
        lines.append(f'extension: {ext[-1]}')
    tests = [ln for ln in _read(osp.join(out, 'pytest_cuda.log'))
             if re.search(r'passed|failed|skipped|deselected|error|no tests ran', ln)]
    if osp.exists(osp.join(out, 'pytest_cuda.log')):
        lines.append(f'pytest -m cuda: {tests[-1] if tests else ""}')
    for name in logs:
        path = osp.join(out, f'{name}.log')
        if osp.exists(path):
            kept = [ln for ln in _read(path)
                    if ln.strip() and not re.match(r'^Traceback|^\s+File ', ln)]
            lines += ['', f'== {name}'] + kept[-log_lines:]
    targets = [ln for name in target_logs for ln in _read(osp.join(out, f'{name}.log'))
               if re.match(r'^(PASS|FAIL|SKIP):|^# \S+\.json ', ln)]  # (with the file names)
    lines += ['', '== target lines'] + (targets or ['(none)'])
    for name, rc, _seconds, *note in steps:
        note = note[0] if note else ''
        failed = note == 'failed' or note.startswith('timeout')
        if failed and osp.exists(osp.join(out, f'{name}.log')):
            lines += ['', f'== tail of {name}.log (rc={rc})']
            lines += _read(osp.join(out, f'{name}.log'))[-tail_lines:]
    text = '\n'.join(lines) + '\n'
    with open(osp.join(out, SUMMARY), 'w') as f:
        f.write(text)
    if osp.exists(osp.join(out, '.steps')):
        os.remove(osp.join(out, '.steps'))
    return text


def pack(max_files: int, keep: Sequence[str]) -> Optional[str]:
    """When $OUT holds more than ``max_files`` files (0: no limit), put all of it in
    gpu_check.tar.gz and leave only summary.txt, the tarball and the first of ``keep`` that
    exist loose, up to ``max_files`` in all. Returns the note added to the summary."""
    out = out_dir()
    files = [n for n in os.listdir(out) if osp.isfile(osp.join(out, n))]
    if max_files <= 0 or len(files) <= max_files:
        return None
    tmp = osp.join(out, f'.{TARBALL}.part')  # hidden until complete, never packed itself
    with tarfile.open(tmp, 'w:gz') as tar:
        for name in sorted(os.listdir(out)):
            if name not in (TARBALL, osp.basename(tmp)):
                tar.add(osp.join(out, name), arcname=name)
    os.chmod(tmp, 0o644)
    os.replace(tmp, osp.join(out, TARBALL))
    loose = [SUMMARY, TARBALL]
    for name in keep:
        if len(loose) < max_files and name not in loose and osp.isfile(osp.join(out, name)):
            loose.append(name)
    for name in os.listdir(out):
        if name not in loose and not name.startswith('.'):
            path = osp.join(out, name)
            if osp.isdir(path) and not osp.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
    note = f'packed: everything in {TARBALL}; loose: {" ".join(loose)}'
    with open(osp.join(out, SUMMARY), 'a') as f:
        f.write(note + '\n')
    return note


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                epilog=__doc__.split('\n\n', 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='cmd', required=True)
    sub.add_parser('init', help='start an empty step log')
    r = sub.add_parser('run', help='run one step under the budget')
    r.add_argument('name')
    r.add_argument('max_seconds', type=float)
    r.add_argument('command', help='a bash command line')
    r.add_argument('--note', action='append', default=[], metavar='RC=TEXT',
                   help='note for an exit status that is not a failure (e.g. 5=no-tests-selected)')
    s = sub.add_parser('skip', help='record a step that does not apply')
    s.add_argument('name')
    s.add_argument('reason')
    sub.add_parser('env', help='print the environment lines')
    sub.add_parser('ext', help='print how the extension loads')
    m = sub.add_parser('summary', help='write $OUT/summary.txt')
    m.add_argument('--title', default='', help='words for the first line (dry run, device)')
    m.add_argument('--logs', nargs='*', default=[], help='steps whose log ends are quoted')
    m.add_argument('--target-logs', nargs='*', default=['targets'],
                   help='steps whose PASS/FAIL/SKIP lines are collected')
    k = sub.add_parser('pack', help='tar everything when more than --max-files files')
    k.add_argument('--max-files', type=int, default=int(os.environ.get('GPU_CHECK_MAX_FILES', 8)))
    k.add_argument('--keep', nargs='*', default=[], help='files to leave loose, best first')
    args = p.parse_args(argv)

    if args.cmd == 'init':
        open(osp.join(out_dir(), '.steps'), 'w').close()
    elif args.cmd == 'run':
        return run_step(args.name, args.max_seconds, args.command, args.note)
    elif args.cmd == 'skip':
        record(args.name, '-', 0, 'skipped:' + args.reason.replace('\n', ' '))
        print(f'[gpu_check] {args.name}: skipped ({args.reason})', flush=True)
    elif args.cmd == 'env':
        print_env()
    elif args.cmd == 'ext':
        print_ext()
    elif args.cmd == 'summary':
        write_summary(args.title, args.logs, args.target_logs)
    elif args.cmd == 'pack':
        pack(args.max_files, args.keep)
    return 0


if __name__ == '__main__':
    sys.exit(main())
