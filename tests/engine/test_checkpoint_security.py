"""Checkpoints never run code, corrupt memory or delete files: every attack payload
(``payloads_*.py``, collected by ``payloads.all_payloads``) through every entry point it
applies to (``payloads.ENTRY_POINTS``).

For each (payload, entry point) pair: no marker file appears, the victim folder and its file
(and the payload's ``work_dir_files``) still exist, the process is not killed by a signal and
does not hang; a payload whose outcome is ``'refused'`` fails with an error that names the
file (and ``must_name``), a ``'safe'`` one works. For each payload,
``test_payload_does_harm_unprotected`` runs its ``unprotected`` demonstration in a process
without mmvrwkv and checks that the harm does happen there (marker, deleted victim or a
crash), so that a toothless payload fails the suite. ``test_clean_checkpoint`` runs the
unmodified real checkpoint through each entry point: they all work, so a refusal in the
matrix is the gate's, not a broken entry point's.

How it runs: this file is also the worker (``python test_checkpoint_security.py matrix|harm
JOB``). One worker process imports what the entry points need once, then forks a child per
case, which runs the entry point in-process and reports a JSON record; the worker waits with
a timeout, reads the child's exit status (a signal is a crash, attributed to that case) and
checks the marker, the victim and the payload file after each case. The files of a payload
are built once per model (cls / det / seg, ``payloads.TASK_OF``) and shared by the entry
points of that model; the worker restores the victim after a case that damaged it.
"""
import contextlib
import hashlib
import io
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import pytest
import torch

HERE = osp.dirname(osp.abspath(__file__))
TESTS = osp.dirname(HERE)
if __name__ == '__main__':  # the worker: the paths pytest would add
    sys.path[:0] = [TESTS, HERE]
else:
    pytest.importorskip('mmpretrain')

from payloads import (ENTRY_POINTS, TASK_OF, VICTIM_FILE, WITH_WORK_DIR,  # noqa: E402
                      Payload, all_payloads, payload_modules)
from tool_helpers import CFG, ROOT, tiny_cfg_dict, tiny_options  # noqa: E402

PAYLOADS = all_payloads()
CASES = [(p, ep) for p in PAYLOADS for ep in sorted(p.entry_points)]
CLEAN = '__clean__'  # the control case: the real checkpoint itself
#: Entry points that would build the model from the config text in the checkpoint
#: (mmengine's BaseInferencer with model=None).
CONFIG_FROM_CHECKPOINT = frozenset({'det_inferencer_no_model', 'seg_inferencer_no_model'})

#: Seconds one case may take before it counts as a hang (a case takes seconds).
CASE_TIMEOUT = 240
#: Options that make training validate, keep the best checkpoint and delete old ones, so
#: that restored hook state (best_ckpt, keep_ckpt_ids) is acted on.
HOOK_ACTIONS = {'train_cfg.val_interval': 1, 'default_hooks.checkpoint.interval': 1,
                'default_hooks.checkpoint.max_keep_ckpts': 1,
                'default_hooks.checkpoint.save_best': 'auto'}


# ============================================================================ entry points
# Each runs in a forked child of the worker: (checkpoint, work dir, context) -> summary.
# It raises when the entry point fails; the worker records the error.

TOOLS: Dict[str, Any] = {}
CONFIGS: Dict[str, Any] = {}


class ToolFailed(Exception):
    """A command-line tool returned a non-zero status; the message is what it printed."""


def _train_resume(ckpt: str, work: str, ctx: dict) -> str:
    TOOLS['train'].main([CFG, '--work-dir', work, '--resume', ckpt]
                        + tiny_options(ctx['digits'], epochs=2, **HOOK_ACTIONS))
    assert osp.isfile(osp.join(work, 'epoch_2.pth')), os.listdir(work)
    return 'resumed, trained epoch 2'


def _load_from(ckpt: str, work: str, ctx: dict) -> str:
    TOOLS['train'].main([CFG, '--work-dir', work]
                        + tiny_options(ctx['digits'], load_from=ckpt, **HOOK_ACTIONS))
    assert osp.isfile(osp.join(work, 'epoch_1.pth')), os.listdir(work)
    return 'trained epoch 1 from the weights'


def _test_tool(ckpt: str, work: str, ctx: dict) -> str:
    metrics = TOOLS['test'].main([CFG, ckpt, '--work-dir', work] + tiny_options(ctx['digits']))
    assert 'accuracy/top1' in metrics, metrics
    return f'metrics {sorted(metrics)}'


def _runner_resume_plain(ckpt: str, work: str, ctx: dict) -> str:
    """mmengine's Runner with mmengine's own CheckpointHook (no mmvrwkv tool involved)."""
    from mmengine.config import Config, ConfigDict
    from mmengine.runner import Runner
    cfg = Config.fromfile(CFG)
    cfg.merge_from_dict(tiny_cfg_dict(ctx['digits'], epochs=2, **{'train_cfg.val_interval': 1}))
    cfg.default_hooks.checkpoint = ConfigDict(type='CheckpointHook', interval=1,
                                              max_keep_ckpts=1, save_best='auto')
    cfg.work_dir, cfg.resume, cfg.load_from = work, True, ckpt
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.epoch == 2 and osp.isfile(osp.join(work, 'epoch_2.pth')), os.listdir(work)
    return 'resumed, trained epoch 2'


def _cls_inferencer(ckpt: str, work: str, ctx: dict) -> str:
    from mmpretrain.apis import ImageClassificationInferencer
    inferencer = ImageClassificationInferencer(model=ctx['cls_config'], pretrained=ckpt,
                                               device='cpu')
    return f"predicted {inferencer(ctx['cls_image'])[0]['pred_class']!r}"


def _config(path: str) -> Any:
    """The Config of ``path``, read once per worker (the mmdet:: / mmseg:: base lookups
    take seconds); a copy, as the inferencers are given their own."""
    import copy

    from mmengine.config import Config
    if path not in CONFIGS:
        CONFIGS[path] = Config.fromfile(path)
    return copy.deepcopy(CONFIGS[path])


def _det_inferencer(ckpt: str, work: str, ctx: dict, config: Optional[str] = 'given') -> str:
    from mmdet.apis import DetInferencer
    model = _config(ctx['det_config']) if config == 'given' else None
    inferencer = DetInferencer(model=model, weights=ckpt, device='cpu', show_progress=False)
    result = inferencer(ctx['det_image'], no_save_vis=True)
    return f"{len(result['predictions'][0]['labels'])} detections"


def _seg_inferencer(ckpt: str, work: str, ctx: dict, config: Optional[str] = 'given') -> str:
    from mmseg.apis import MMSegInferencer
    model = _config(ctx['seg_config']) if config == 'given' else None
    inferencer = MMSegInferencer(model=model, weights=ckpt, device='cpu')
    result = inferencer(ctx['seg_image'])
    return f"segmentation {getattr(result['predictions'], 'shape', None)}"


def _get_model(ckpt: str, work: str, ctx: dict) -> str:
    from mmpretrain import get_model
    model = get_model(ctx['cls_config'], pretrained=ckpt, device='cpu')
    return f'{type(model).__name__} loaded'


def _converter(ckpt: str, work: str, ctx: dict) -> str:
    err = io.StringIO()
    out = osp.join(work, 'converted.pth')
    with contextlib.redirect_stderr(err):
        code = TOOLS['converter'].main([ckpt, out, '--config', ctx['cls_config']])
    if code != 0:
        raise ToolFailed(f'exit {code}: {err.getvalue()}')
    return f'converted (exit {code})'


def _pytorch2onnx(ckpt: str, work: str, ctx: dict) -> str:
    code = TOOLS['pytorch2onnx'].main([ctx['cls_config'], '--checkpoint', ckpt, '--shape', '8',
                                       '8', '--out', osp.join(work, 'model.onnx'),
                                       '--exporter', 'legacy'])
    if code != 0:
        raise ToolFailed(f'exit {code}')
    return 'exported'


def _image_demo(ckpt: str, work: str, ctx: dict) -> str:
    results = TOOLS['image_demo'].main([ctx['cls_config'], ckpt, ctx['cls_image'],
                                        '--out-dir', work, '--device', 'cpu'])
    return f'predicted {list(results.values())}'


ENTRY: Dict[str, Callable[[str, str, dict], str]] = {
    'train_resume': _train_resume,
    'load_from': _load_from,
    'test_tool': _test_tool,
    'runner_resume_plain': _runner_resume_plain,
    'cls_inferencer': _cls_inferencer,
    'det_inferencer': _det_inferencer,
    'seg_inferencer': _seg_inferencer,
    'det_inferencer_no_model': lambda c, w, x: _det_inferencer(c, w, x, config=None),
    'seg_inferencer_no_model': lambda c, w, x: _seg_inferencer(c, w, x, config=None),
    'get_model': _get_model,
    'converter': _converter,
    'pytorch2onnx': _pytorch2onnx,
    'image_demo': _image_demo,
}
assert set(ENTRY) == ENTRY_POINTS, set(ENTRY) ^ ENTRY_POINTS

#: The tools each entry point needs (loaded once in the worker, before forking).
TOOL_FILES = {'train_resume': [('train', 'tools/train')], 'load_from': [('train', 'tools/train')],
              'test_tool': [('test', 'tools/test')],
              'converter': [('converter', 'tools/model_converters/vrwkv2mmvrwkv')],
              'pytorch2onnx': [('pytorch2onnx', 'tools/deployment/pytorch2onnx')],
              'image_demo': [('image_demo', 'demo/image_demo')]}
#: The upstream modules each entry point imports (imported once in the worker).
MODULES = {'cls_inferencer': ['mmpretrain.apis'], 'get_model': ['mmpretrain'],
           'det_inferencer': ['mmdet.apis'], 'det_inferencer_no_model': ['mmdet.apis'],
           'seg_inferencer': ['mmseg.apis'], 'seg_inferencer_no_model': ['mmseg.apis'],
           'runner_resume_plain': ['mmengine.runner'], 'pytorch2onnx': ['onnx'],
           'image_demo': ['mmpretrain.apis']}


# ============================================================================ the worker

def _error_record(err: BaseException) -> dict:
    """The error as the user sees it: the outermost message and the chain below it."""
    from mmvrwkv.engine.checkpoint import CheckpointError
    chain, seen, e = [], set(), err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        chain.append(e)
        e = e.__cause__ or e.__context__
    found = [e for e in chain if isinstance(e, CheckpointError)]
    return {'ok': False, 'error': f'{type(err).__name__}: {err}',
            'chain': [f'{type(e).__module__}.{type(e).__qualname__}: {e}' for e in chain],
            'checkpoint_error': None if isinstance(err, ToolFailed) else bool(found),
            'traceback': ''.join(traceback.format_exception(err))[-4000:]}


def _run_matrix_case(case: dict, ctx: dict) -> dict:
    try:
        return {'ok': True, 'summary': ENTRY[case['entry_point']](case['path'], case['work'],
                                                                   ctx)}
    except BaseException as err:  # noqa: BLE001  (SystemExit too: tools may exit)
        return _error_record(err)


def _run_harm_case(case: dict, ctx: dict) -> dict:
    import importlib
    payload = {p.name: p for p in importlib.import_module(case['module']).PAYLOADS}[case['name']]
    rec: Dict[str, Any] = {'ok': True}
    try:
        payload.unprotected(Path(case['path']), Path(case['marker']), Path(case['victim']))
    except BaseException as err:  # noqa: BLE001  (the harm may have happened before)
        rec = {'ok': False, 'error': f'{type(err).__name__}: {err}'}
    rec['mmvrwkv_imported'] = 'mmvrwkv' in sys.modules
    return rec


#: Address space a case may add to the worker's: a runaway allocation fails with an error
#: (which the tests report) instead of waking the kernel's OOM killer on a shared machine.
CASE_EXTRA_ADDRESS_SPACE = 8 << 30


def _limit_address_space() -> None:
    import resource
    with open('/proc/self/statm') as f:
        size = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (size + CASE_EXTRA_ADDRESS_SPACE,
                                            resource.RLIM_INFINITY))


def _in_child(case: dict, run: Callable[[dict, dict], dict], ctx: dict) -> None:
    """The forked child: run the case with its output in the case's log, report, exit."""
    code = 0
    try:
        fd = os.open(case['log'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.chdir(case['dir'])
        _limit_address_space()
        record = run(case, ctx)
        with open(case['result'], 'w') as f:
            json.dump(record, f)
    except BaseException:  # noqa: BLE001
        code = 3
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _fork_case(case: dict, run: Callable[[dict, dict], dict], ctx: dict) -> dict:
    """Run one case in a forked child; its exit status and a hang are recorded too."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(case['result'])
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _in_child(case, run, ctx)
    deadline, status, hang = time.monotonic() + CASE_TIMEOUT, None, False
    while status is None:
        done, raw = os.waitpid(pid, os.WNOHANG)
        if done:
            status = raw
        elif time.monotonic() > deadline:
            os.kill(pid, 9)
            status, hang = os.waitpid(pid, 0)[1], True
        else:
            time.sleep(0.02)
    rc = os.waitstatus_to_exitcode(status)
    try:
        with open(case['result']) as f:
            record = json.load(f)
    except (OSError, ValueError):
        record = {'ok': False, 'error': 'the case reported nothing (killed or crashed)'}
    with contextlib.suppress(OSError), open(case['log'], errors='replace') as f:
        record['log'] = f.read()[-3000:]
    record.update(rc=rc, hang=hang)
    return record


def _file_digest(path: str) -> Optional[str]:
    if not osp.isfile(path):
        return None
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def make_victim(victim: str, extra_files: Tuple[str, ...] = ()) -> None:
    """The victim folder with ``VICTIM_FILE`` (and ``extra_files``) in it."""
    os.makedirs(victim, exist_ok=True)
    for name in (VICTIM_FILE,) + tuple(extra_files):
        with open(osp.join(victim, name), 'w') as f:
            f.write('the test needs this file\n')


def _damage(case: dict, changed_by: Dict[str, str]) -> dict:
    """What the case harmed (the marker and victim are then repaired for the next case
    sharing them). A changed payload file is blamed on the first case after which it had
    changed (``changed_by``); the later ones say so."""
    marker = osp.exists(case['marker'])
    victim_ok = osp.isfile(osp.join(case['victim'], VICTIM_FILE))
    work_files = [f for f in case['work_dir_files'] if case['entry_point'] in WITH_WORK_DIR]
    lost = [f for f in work_files if not osp.isfile(osp.join(case['work'], f))]
    changed = ''
    if case['path'] in changed_by:
        changed = f"changed by an earlier case ({changed_by[case['path']]})"
    elif _file_digest(case['path']) != case['sha256']:
        changed = changed_by[case['path']] = f"changed by this case ({case['entry_point']})"
    if marker:
        os.remove(case['marker'])
    if not victim_ok:
        make_victim(case['victim'])
    return {'marker': marker, 'victim_ok': victim_ok, 'work_files_lost': lost,
            'file_changed': changed}


def _preload(job: dict) -> None:
    """Import what the job's entry points need once, so that each forked case starts warm."""
    import importlib

    import torch
    torch.set_num_threads(1)
    if job['mode'] == 'harm':
        for name in ('numpy', 'mmengine.config', 'mmengine.logging', 'mmengine.runner'):
            importlib.import_module(name)
        assert 'mmvrwkv' not in sys.modules, 'the harm worker must not import mmvrwkv'
        return
    from tool_helpers import load_tool
    import mmvrwkv  # noqa: F401
    import mmvrwkv.engine.checkpoint  # noqa: F401  (_error_record)
    eps = {c['entry_point'] for c in job['cases']}
    for ep in sorted(eps):
        for name in MODULES.get(ep, []):
            importlib.import_module(name)
        for key, tool in TOOL_FILES.get(ep, []):
            if key not in TOOLS:
                folder, name = tool.split('/', 1)
                TOOLS[key] = load_tool(name, folder=folder)
    for task in ('det', 'seg'):
        if any(TASK_OF[ep] == task for ep in eps):
            _config(job['ctx'][f'{task}_config'])
    _speed_up_runner_setup()


def _speed_up_runner_setup() -> None:
    """Work every Runner of every case would repeat, done once or not at all: the
    environment report (subprocesses: gcc, nvcc, ...) is collected once; config texts are
    not pretty-printed with yapf (the same config, unformatted: four passes of ~0.4 s per
    Runner); the objects of all the imports are frozen out of the garbage collector (each
    dataset calls gc.collect()). None of this is on the path of a checkpoint."""
    import copy
    import gc

    import mmengine.config.config as config_module
    import mmengine.runner.runner as runner_module
    env = runner_module.collect_env()
    runner_module.collect_env = lambda: copy.deepcopy(env)
    config_module.FormatCode = lambda text, **kwargs: (text, False)
    gc.collect()
    gc.freeze()


def worker(mode: str, job_file: str) -> int:
    """Run every case of the job file; one JSON line per case in its results file."""
    with open(job_file) as f:
        job = json.load(f)
    job['mode'] = mode
    _preload(job)
    run = _run_matrix_case if mode == 'matrix' else _run_harm_case
    changed_by: Dict[str, str] = {}
    with open(job['results'], 'w') as out:
        for case in job['cases']:
            record = _fork_case(case, run, job['ctx'])
            record.update(name=case['name'], entry_point=case.get('entry_point'), path=case['path'])
            if mode == 'matrix':
                record.update(_damage(case, changed_by))
            else:
                record.update(marker=osp.exists(case['marker']),
                              victim_ok=osp.isfile(osp.join(case['victim'], VICTIM_FILE)),
                              work_files_lost=[f for f in case['work_dir_files'] if not
                                               osp.isfile(osp.join(case['victim'], f))])
            out.write(json.dumps(record) + '\n')
            out.flush()
    return 0


# ============================================================================ the parent

def _lanes(cases: List[dict], n: int) -> List[List[dict]]:
    """``cases`` in ``n`` lanes; the cases sharing a payload file stay in one lane (they
    share its marker and victim, so they must not run at the same time)."""
    groups: Dict[str, List[dict]] = {}
    for case in cases:
        groups.setdefault(case['path'], []).append(case)
    lanes: List[List[dict]] = [[] for _ in range(n)]
    for group in sorted(groups.values(), key=len, reverse=True):
        min(lanes, key=len).extend(group)
    return [lane for lane in lanes if lane]


def _run_worker(mode: str, cases: List[dict], ctx: dict, folder: str) -> Dict[tuple, dict]:
    """Run ``cases`` in worker processes (one per core, at most 2) and collect the records;
    a case that a failed worker did not report gets a ``worker_error`` saying why."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               PYTHONPATH=os.pathsep.join([TESTS, HERE, ROOT, os.environ.get('PYTHONPATH', '')]))
    env.pop('LOCAL_RANK', None)
    lanes, procs = _lanes(cases, min(2, os.cpu_count() or 1)), []
    for i, lane in enumerate(lanes):
        job_file = osp.join(folder, f'{mode}_job_{i}.json')
        results, log = osp.join(folder, f'{mode}_{i}.jsonl'), osp.join(folder, f'{mode}_{i}.log')
        with open(job_file, 'w') as f:
            json.dump({'cases': lane, 'ctx': ctx, 'results': results}, f)
        with open(log, 'w') as out:
            procs.append((subprocess.Popen([sys.executable, osp.abspath(__file__), mode, job_file],
                                           cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT),
                          lane, results, log))
    deadline = time.monotonic() + 600 + (CASE_TIMEOUT + 30) * max(map(len, lanes))
    found: Dict[tuple, dict] = {}
    for proc, lane, results, log in procs:
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if osp.isfile(results):
            with open(results) as f:
                for line in f:
                    rec = json.loads(line)
                    found[rec['name'], rec['entry_point']] = rec
        with open(log, errors='replace') as f:
            why = f'the {mode} worker exited {proc.returncode}: {f.read()[-3000:]}'
        for case in lane:
            found.setdefault((case['name'], case.get('entry_point')), {'worker_error': why})
    return found


def _selected(request, *test_names: str) -> List[Tuple[str, Optional[str]]]:
    """(payload name, entry point) of the collected tests named ``test_names`` (so that
    ``-k`` runs only what it selects)."""
    pairs = []
    for item in request.session.items:
        if getattr(item, 'originalname', None) in test_names and hasattr(item, 'callspec'):
            params = item.callspec.params
            payload = params.get('payload')
            name = payload.name if isinstance(payload, Payload) else CLEAN
            pairs.append((name, params.get('entry_point')))
    return pairs


def _context(digits: str, tiny_config: str, demo_case: Callable, tasks: set) -> dict:
    ctx = {'digits': digits, 'cls_config': tiny_config,
           'cls_image': sorted(Path(digits, 'val', '0').iterdir())[0].as_posix()}
    for task in ('det', 'seg'):
        if task in tasks:
            case = demo_case(task)
            ctx.update({f'{task}_config': case.config, f'{task}_image': case.images[0]})
    return ctx


def _build(payload: Optional[Payload], task: str, base: str, folder: str) -> dict:
    """The payload's file for the model of ``task`` (the real checkpoint for CLEAN), with
    its marker and victim; ``build_error`` if the builder failed or already did harm."""
    name = payload.name if payload else CLEAN
    folder = osp.join(folder, name, task)
    os.makedirs(folder, exist_ok=True)
    files = {'path': osp.join(folder, f'{name}.pth'), 'marker': osp.join(folder, 'MARKER'),
             'victim': osp.join(folder, 'victim'),
             'work_dir_files': list(payload.work_dir_files) if payload else []}
    make_victim(files['victim'])
    try:
        if payload is None:
            shutil.copyfile(base, files['path'])
        else:
            payload.build(Path(files['path']), Path(files['marker']), Path(files['victim']),
                          base)
        assert not osp.exists(files['marker']), 'building the payload created the marker'
        assert osp.isfile(files['path']), 'build() wrote no file'
    except Exception:  # noqa: BLE001  (reported by the tests of this payload)
        files['build_error'] = traceback.format_exc()[-3000:]
    files['sha256'] = _file_digest(files['path'])
    return files


@pytest.fixture(scope='module')
def matrix(request, digits, tiny_config, real_checkpoints, demo_case, tmp_path_factory):
    """The records of every selected (payload, entry point) case (``_run_worker``)."""
    selected = _selected(request, 'test_entry_point', 'test_clean_checkpoint')
    by_name = {p.name: p for p in PAYLOADS}
    tasks = {TASK_OF[ep] for _, ep in selected}
    ctx = _context(digits, tiny_config, demo_case, tasks)
    root = str(tmp_path_factory.mktemp('matrix'))
    builds: Dict[Tuple[str, str], dict] = {}
    cases, records = [], {}
    for name, ep in selected:
        task = TASK_OF[ep]
        if (name, task) not in builds:
            builds[name, task] = _build(by_name.get(name), task, real_checkpoints(task), root)
        files = builds[name, task]
        if 'build_error' in files:
            records[name, ep] = {'worker_error': 'build failed:\n' + files['build_error']}
            continue
        case_dir = osp.join(osp.dirname(files['path']), ep)
        work = osp.join(case_dir, 'work')
        make_victim(work, tuple(files['work_dir_files']) if ep in WITH_WORK_DIR else ())
        cases.append(dict(files, name=name, entry_point=ep, dir=case_dir, work=work,
                          log=osp.join(case_dir, 'log.txt'),
                          result=osp.join(case_dir, 'result.json')))
    if cases:
        records.update(_run_worker('matrix', cases, ctx, root))
    yield records
    shutil.rmtree(root, ignore_errors=True)  # a few GB of payload files


@pytest.fixture(scope='module')
def harm(request, real_checkpoints, tmp_path_factory):
    """The records of the selected payloads' ``unprotected`` demonstrations."""
    selected = {name for name, _ in _selected(request, 'test_payload_does_harm_unprotected')}
    root = str(tmp_path_factory.mktemp('harm'))
    modules = payload_modules()
    cases, records = [], {}
    for payload in PAYLOADS:
        if payload.name not in selected:
            continue
        tasks = {TASK_OF[ep] for ep in payload.entry_points}
        task = 'cls' if 'cls' in tasks else min(tasks)
        files = _build(payload, task, real_checkpoints(task), root)
        make_victim(files['victim'], tuple(payload.work_dir_files))
        if 'build_error' in files:
            records[payload.name, None] = {'worker_error': 'build failed:\n' + files['build_error']}
            continue
        folder = osp.dirname(files['path'])
        cases.append(dict(files, name=payload.name, module=modules[payload.name],
                          dir=folder, log=osp.join(folder, 'harm_log.txt'),
                          result=osp.join(folder, 'harm.json')))
    if cases:
        records.update(_run_worker('harm', cases, {}, root))
    yield records
    shutil.rmtree(root, ignore_errors=True)


# ============================================================================ the tests

def _describe(rec: dict) -> str:
    keep = {k: v for k, v in rec.items() if k not in ('log', 'traceback')}
    return (json.dumps(keep, indent=1)[:6000] + '\n--- traceback\n' + rec.get('traceback', '')
            + '\n--- log tail\n' + rec.get('log', ''))


def assert_no_harm(rec: dict) -> None:
    """No marker, no deleted file, no crash, no hang, the payload file unchanged."""
    assert 'worker_error' not in rec, rec['worker_error']
    text = _describe(rec)
    assert not rec['hang'], 'the entry point hung (killed after %d s)\n%s' % (CASE_TIMEOUT, text)
    assert rec['rc'] >= 0, f'the entry point crashed (signal {-rec["rc"]})\n{text}'
    assert not rec['marker'], f'code from the checkpoint ran (marker created)\n{text}'
    assert rec['victim_ok'], f'the victim folder or its file was deleted\n{text}'
    assert not rec['work_files_lost'], f'files of the work dir were deleted\n{text}'
    assert not rec['file_changed'], f"the checkpoint file was {rec['file_changed']}\n{text}"


@pytest.mark.parametrize('payload,entry_point', [pytest.param(p, ep, id=f'{p.name}-{ep}')
                                                 for p, ep in CASES])
def test_entry_point(payload: Payload, entry_point: str, matrix) -> None:
    """The payload through the entry point: no harm, and the expected outcome."""
    rec = matrix[payload.name, entry_point]
    assert_no_harm(rec)
    if payload.outcome_at(entry_point) == 'safe':
        assert_usable(rec, entry_point)
    else:
        assert_refused(rec, payload.must_name)


def assert_refused(rec: dict, must_name: Optional[str]) -> None:
    """Refused by the gate (a CheckpointError), the message naming the file and ``must_name``."""
    text = _describe(rec)
    assert not rec['ok'], f'the checkpoint was not refused\n{text}'
    assert rec['checkpoint_error'] is not False, f'refused, but not by the gate\n{text}'
    assert rec['path'] in rec['error'], f'the error does not name the file\n{text}'
    if must_name:
        assert must_name in rec['error'], f'the error does not name {must_name!r}\n{text}'


def assert_usable(rec: dict, entry_point: str) -> None:
    """The entry point worked; where it would build the model from the checkpoint's config
    text (``CONFIG_FROM_CHECKPOINT``), a refusal that says to pass the config is the other
    answer the issue allows."""
    if entry_point in CONFIG_FROM_CHECKPOINT and not rec['ok']:
        assert_refused(rec, None)
        assert 'pass the config' in rec['error'].lower(), _describe(rec)
        return
    assert rec['ok'], f'a safe checkpoint was not usable\n{_describe(rec)}'


@pytest.mark.parametrize('entry_point', sorted(ENTRY_POINTS))
def test_clean_checkpoint(entry_point: str, matrix) -> None:
    """The control: the real checkpoint, unchanged, works through every entry point."""
    rec = matrix[CLEAN, entry_point]
    assert_no_harm(rec)
    assert_usable(rec, entry_point)


@pytest.mark.parametrize('payload', [pytest.param(p, id=p.name) for p in PAYLOADS])
def test_payload_does_harm_unprotected(payload: Payload, harm) -> None:
    """Against the path it attacks, without mmvrwkv, the payload does harm: the marker
    appears, the victim (or a work-dir file) is deleted, or the process is killed by a
    signal. Otherwise its matrix tests prove nothing. (The process starts without mmvrwkv;
    a config text that the path executes may import it, which is upstream's doing.)"""
    rec = harm[payload.name, None]
    assert 'worker_error' not in rec, rec['worker_error']
    text = _describe(rec)
    harmed = (rec['marker'] or not rec['victim_ok'] or rec['work_files_lost']
              or (rec['rc'] < 0 and not rec['hang']))
    assert harmed, f'{payload.name}: the payload did no harm on the unprotected path\n{text}'


# ============================================================================ single mechanisms

# ----------------------------------------------------------------------------- the allow-list

def test_meta_config_is_neutralised(tmp_path, real_checkpoint):
    from payloads_basic import build_meta_config, load_trusted

    from mmvrwkv.engine.checkpoint import literal_gpu_ids, load_checkpoint_file
    marker, path = tmp_path / 'MARKER', tmp_path / 'evil.pth'
    build_meta_config(path, marker, tmp_path, real_checkpoint)
    assert load_checkpoint_file(str(path))['meta']['config'] == 'gpu_ids = [0]\n'
    ckpt = load_trusted(real_checkpoint)
    ckpt['meta']['config'] = f"open({str(marker)!r}, 'w')"       # no gpu_ids: dropped
    torch.save(ckpt, str(path))
    assert 'config' not in load_checkpoint_file(str(path))['meta']
    assert literal_gpu_ids('gpu_ids = range(4)') is None          # not a literal: dropped
    assert literal_gpu_ids('a = 1\ngpu_ids = [0, 1, 2]') == [0, 1, 2]
    assert literal_gpu_ids('gpu_ids = [__import__("os")]') is None
    assert literal_gpu_ids('(' * 100000) is None                    # unparsable
    assert not marker.exists()


def test_http_checkpoints_load_through_the_safe_loader(tmp_path, real_checkpoint):
    """mmengine's http(s) scheme is ours too: a URL is downloaded, then loaded safely."""
    import functools
    import http.server
    import threading

    from mmengine.runner.checkpoint import CheckpointLoader
    from payloads_basic import build_reduce

    from mmvrwkv.engine import UnsafeCheckpointError
    served = tmp_path / 'served'
    served.mkdir()
    marker = tmp_path / 'MARKER'
    build_reduce(served / 'evil.pth', marker, tmp_path, real_checkpoint)
    shutil.copy(real_checkpoint, served / 'good.pth')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hub_dir = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / 'hub'))
    try:
        base = f'http://127.0.0.1:{server.server_address[1]}'
        good = CheckpointLoader.load_checkpoint(f'{base}/good.pth', map_location='cpu')
        assert good['meta']['epoch'] == 1
        with pytest.raises(UnsafeCheckpointError, match=r'evil.pth: refused to load.*io.open'):
            CheckpointLoader.load_checkpoint(f'{base}/evil.pth', map_location='cpu')
    finally:
        torch.hub.set_dir(hub_dir)
        server.shutdown()
    assert not marker.exists()


if __name__ == '__main__':
    sys.exit(worker(sys.argv[1], sys.argv[2]))
