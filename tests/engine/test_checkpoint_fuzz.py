"""Fuzzing the checkpoint gate with mutations of a real Runner checkpoint.

``fuzz_checkpoint.py`` (the driver, run in a subprocess) mutates a checkpoint written by
``tools/train.py`` and ``SafeCheckpointHook`` (state_dict, AdamW state, schedulers, message hub
with HistoryBuffers and numpy, meta with the digest): raw bytes, single pickle opcodes and
arguments, zip records and header fields, and single values of the content. Every case must
load to exactly what the unmutated file loads to, or be refused with a ``CheckpointError``
naming the file. A crash, a hang, another exception, a different object, a file appearing in
the driver's (empty) working directory, a changed ``HistoryBuffer`` table, an allocation
stopped by the driver's address-space limit or a peak RSS past its limit is a failure.

When the driver dies (a signal, or faulthandler ending a hang), the case it was on is recorded
as a crash or a hang and the driver restarts after it. ``-s`` shows the counts per mutator.
``MMVRWKV_FUZZ_CASES`` / ``MMVRWKV_FUZZ_FIRST`` choose the cases; a failing case is rerun by
hand with ``python tests/engine/fuzz_checkpoint.py SEED CASE_PATH --case N`` (the seed's path
is in the failure message).

The main run writes the cases over the seed in its own run folder (a run resuming from its
own checkpoint: the restored ``last_ckpt`` and ``keep_ckpt_ids`` are kept); the run on the
2-block checkpoint writes them to another folder (``load_from`` of a copied file).

``test_harness_reports_each_failure_kind`` shows that the harness can fail: against the
unprotected path (weights-only ``torch.load`` with the real numpy and ``HistoryBuffer``
classes allowed, as before the gate, and no checks after it) and with injected faults, it
reports each kind of failure with its case number.
"""
import collections
import json
import os
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import pytest

pytest.importorskip('mmpretrain')

from tool_helpers import CFG, ROOT, load_tool, tiny_options  # noqa: E402

DRIVER = osp.join(osp.dirname(osp.abspath(__file__)), 'fuzz_checkpoint.py')
#: At least 2,000 cases (26 passes over the weighted mutator list).
CASES = int(os.environ.get('MMVRWKV_FUZZ_CASES', '2106'))
FIRST = int(os.environ.get('MMVRWKV_FUZZ_FIRST', '0'))
#: Cases on the 2-block checkpoint of the other checkpoint tests (one pass of the mutators).
REAL_CASES = int(os.environ.get('MMVRWKV_FUZZ_REAL_CASES', '81'))
#: A driver that keeps dying is not restarted forever.
MAX_RESTARTS = 40


def _driver():
    return load_tool('fuzz_checkpoint', folder='tests/engine')


@pytest.fixture(scope='module')
def small_checkpoint(digits, tmp_path_factory):
    """epoch_1.pth of a 1-epoch tools/train.py run (SafeCheckpointHook, AdamW, two schedulers,
    message hub) of a 1-block, 16-channel VRWKV: every part of a Runner checkpoint, 100 kB."""
    work = str(tmp_path_factory.mktemp('fuzz_seed'))
    small = {'model.backbone.embed_dims': 16, 'model.backbone.depth': 1,
             'model.head.in_channels': 16}
    load_tool('train').main([CFG, '--work-dir', work] + tiny_options(digits, **small))
    return osp.join(work, 'epoch_1.pth')


# ----------------------------------------------------------------------------- running

def _read_jsonl(path: str) -> List[dict]:
    if not osp.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _last_started(progress: str) -> Tuple[Optional[int], bool]:
    """The last case the driver started, and whether its last run finished."""
    with open(progress) as f:
        lines = f.read().split()
    done = bool(lines) and lines[-1] == 'done'
    starts = [int(n) for key, n in zip(lines, lines[1:]) if key == 'start']
    return (starts[-1] if starts else None), done


def _death(proc: subprocess.CompletedProcess) -> Tuple[str, str]:
    """('hang' | 'crash', text) for a driver that did not finish."""
    tail = ' / '.join(proc.stderr.strip().splitlines()[-6:])
    if re.search(r'Timeout \(\d+:\d\d:\d\d', proc.stderr):
        return 'hang', f'faulthandler ended the process: {tail}'
    if proc.returncode < 0:
        return 'crash', f'killed by {signal.Signals(-proc.returncode).name}: {tail}'
    return 'crash', f'exit status {proc.returncode}: {tail}'


def run_fuzz(seed: str, tmp: str, first: int, count: int, extra: Sequence[str] = (),
             in_place: bool = False, budget_s: float = 1800) -> Tuple[List[dict], str]:
    """Run cases ``first .. first+count-1`` in driver subprocesses (cwd: an empty folder),
    restarting after a case that kills the driver. Returns the records and that folder.

    ``in_place``: the cases are written over ``seed`` in its own run folder (as a run
    resumes from its own checkpoint; the seed is restored afterwards), else to a folder of
    their own (as ``load_from`` of a copied checkpoint).
    """
    sandbox = osp.join(tmp, 'cwd')
    os.makedirs(sandbox)
    results, progress = osp.join(tmp, 'results.jsonl'), osp.join(tmp, 'progress.txt')
    if in_place:
        pristine, case_path = osp.join(tmp, 'seed.pth'), seed
        shutil.copyfile(seed, pristine)
    else:
        pristine, case_path = seed, osp.join(tmp, 'elsewhere', osp.basename(seed))
    env = dict(os.environ, OMP_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get('PYTHONPATH')])))
    mutator_of = [name for name, _ in _driver().MUTATORS]
    deaths: List[dict] = []
    start, end, deadline = first, first + count, time.monotonic() + budget_s
    try:
        while start < end:
            cmd = [sys.executable, DRIVER, pristine, case_path, '--first', str(start),
                   '--count', str(end - start), '--results', results, '--progress', progress,
                   *extra]
            proc = subprocess.run(cmd, cwd=sandbox, env=env, capture_output=True, text=True,
                                  timeout=max(deadline - time.monotonic(), 60))
            case, finished = (_last_started(progress) if osp.exists(progress)
                              else (None, False))
            if proc.returncode == 0 and finished:
                break
            assert case is not None and case >= start, (
                f'the fuzz driver failed before its first case (rc {proc.returncode}); is '
                f'the unmutated seed refused?\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}')
            kind, text = _death(proc)
            deaths.append(dict(case=case, mutator=mutator_of[case % len(mutator_of)],
                               outcome='failed', kind=kind, error=text))
            assert len(deaths) <= MAX_RESTARTS, f'the driver died {len(deaths)} times: {deaths}'
            start = case + 1
    finally:
        if in_place:
            shutil.copyfile(pristine, seed)
    records = {r['case']: r for r in _read_jsonl(results)}
    records.update({d['case']: d for d in deaths})
    return [records[k] for k in sorted(records)], sandbox


# ----------------------------------------------------------------------------- reporting

OUTCOMES = ('identical', 'refused', 'failed')


def summary(records: Sequence[dict], title: str) -> str:
    """Counts per mutator family and mutator, and the totals (for the closing note)."""
    per: Dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in records:
        per[r['mutator']][r['outcome']] += 1
        per[r['mutator'].split('.')[0] + '.*'][r['outcome']] += 1
    total = collections.Counter(r['outcome'] for r in records)
    lines = [f'{title}: {len(records)} cases: ' + ', '.join(
        f'{total[o]} {o}' for o in OUTCOMES)]
    lines.append(f'  {"mutator":34s} ' + ' '.join(f'{o:>9s}' for o in OUTCOMES))
    for name in sorted(per, key=lambda n: (n.split('.')[0], not n.endswith('*'), n)):
        lines.append(f'  {name:34s} ' + ' '.join(f'{per[name][o]:9d}' for o in OUTCOMES))
    return '\n'.join(lines)


def failure_classes(records: Sequence[dict]) -> Dict[Tuple[str, str, str], List[int]]:
    """Failures grouped by (kind, mutator, message with numbers and quoted text elided)."""
    classes: Dict[Tuple[str, str, str], List[int]] = collections.defaultdict(list)
    for r in records:
        if r['outcome'] != 'failed':
            continue
        text = r.get('error', '')
        if r.get('kind') == 'loaded_differently':
            text = text.split(':')[0]  # where the content differs
        text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
        text = re.sub(r'\d+', 'N', text)[:160]
        classes[(r.get('kind', '?'), r['mutator'], text)].append(r['case'])
    return classes


def failure_report(records: Sequence[dict], seed: str) -> str:
    classes = failure_classes(records)
    lines = [f'{sum(map(len, classes.values()))} failing cases in {len(classes)} classes '
             '(kind, mutator, message: cases):']
    for (kind, mutator, text), cases in sorted(classes.items(), key=lambda kv: -len(kv[1])):
        lines.append(f'  {len(cases):4d}  {kind:18s} {mutator:32s} {text}  cases '
                     f'{", ".join(map(str, cases[:8]))}')
    lines.append(f'rerun one: {sys.executable} {DRIVER} {seed} CASE_PATH --case N (CASE_PATH: '
                 'the seed\'s own path for the in-place run; keep a copy of the seed)')
    return '\n'.join(lines)


def _check(records: Sequence[dict], sandbox: str, seed: str, count: int, title: str) -> None:
    print('\n' + summary(records, title))
    assert len(records) == count, f'{count - len(records)} cases have no result'
    assert os.listdir(sandbox) == [], f'files appeared in the working directory: ' \
                                      f'{os.listdir(sandbox)}'
    failed = [r for r in records if r['outcome'] == 'failed']
    if failed:
        print(failure_report(records, seed))
    assert not failed, failure_report(records, seed)


# ----------------------------------------------------------------------------- tests

@pytest.mark.slow  # ~2 min on 2 busy cores
def test_fuzz_checkpoint_gate(small_checkpoint, tmp_path):
    """>= 2,000 mutants of a real Runner checkpoint: each loads identically or is refused."""
    records, sandbox = run_fuzz(small_checkpoint, str(tmp_path), FIRST, CASES, in_place=True)
    _check(records, sandbox, small_checkpoint, CASES, 'checkpoint fuzz (1-block seed, in its run)')


def test_fuzz_real_checkpoint(real_checkpoint, tmp_path):
    """One pass of every mutator over the 2-block checkpoint of the other checkpoint tests,
    copied out of its run folder (as for ``load_from``)."""
    records, sandbox = run_fuzz(real_checkpoint, str(tmp_path), 0, REAL_CASES)
    _check(records, sandbox, real_checkpoint, REAL_CASES, 'checkpoint fuzz (2-block seed, copied)')


def test_harness_reports_each_failure_kind(small_checkpoint, tmp_path):
    """Against the unprotected path and with injected faults the harness reports raw
    exceptions, different content, a crash, a hang the alarm stops, a hang only faulthandler
    stops, a marker file, a changed HistoryBuffer table and a refused allocation, each at
    its case, and runs the cases after them."""
    faults = {3: 'crash', 5: 'hang', 7: 'block', 9: 'marker', 11: 'table', 13: 'memory'}
    inject = ','.join(f'{what}:{case}' for case, what in faults.items())
    count = 81  # one pass of the mutators, so that every content mutator runs once
    records, sandbox = run_fuzz(
        small_checkpoint, str(tmp_path), 0, count,
        ['--loader', 'plain', '--inject', inject, '--timeout', '2', '--hard-timeout', '5'],
        in_place=True)
    print('\n' + summary(records, 'unprotected path (self-test)'))
    by_case = {r['case']: r for r in records}
    assert sorted(by_case) == list(range(count)), 'cases after a fault were not run'
    expected = {'crash': 'crash', 'hang': 'timeout', 'block': 'hang', 'marker': 'marker',
                'table': 'class_table', 'memory': 'allocation'}
    for case, what in faults.items():
        assert by_case[case].get('kind') == expected[what], (what, by_case[case])
    assert 'SIGSEGV' in by_case[3]['error']
    assert os.listdir(sandbox) == ['MARKER']
    kinds = collections.Counter(r.get('kind') for r in records if r['outcome'] == 'failed')
    # raw torch/pickle errors instead of CheckpointError, and damaged content that loads
    assert kinds['exception'] >= 10 and kinds['loaded_differently'] >= 10, kinds
    report = failure_report(records, small_checkpoint)
    assert 'loaded_differently' in report and 'content.optimizer_tensor' in report
