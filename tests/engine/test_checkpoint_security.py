"""Checkpoints never run code: one harmless payload per attack vector, through every entry
point that loads a checkpoint.

Each payload would create a marker file if any code from it ran (``open(marker, 'w')``):

- ``reduce``: an object whose ``__reduce__`` calls ``open`` (zip format);
- ``legacy_reduce``: the same in torch's legacy (non-zip) format;
- ``getattr_gadget``: a pickle that only uses what an allow-list with ``builtins.getattr``
  permits: it reaches ``torch.serialization._get_layout.__globals__``, replaces
  ``_maybe_decode_ascii`` with ``eval`` and has the unpickler pass it a string from the file
  (ran with the allow-list mmvrwkv had before; plain torch refuses it);
- ``history_buffer_table``: a HistoryBuffer whose pickled state swaps a class-level
  statistics method for another allowed callable;
- ``meta_config``: a valid training checkpoint whose ``meta['config']`` is Python code
  (mmengine's ``Runner.resume`` executes that text with ``Config.fromstring``).

Entry points: ``tools/train.py --resume``, ``load_from``, ``tools/test.py``, the converter
and mmpretrain's ``ImageClassificationInferencer``. Refused files must raise an error that
names the file and the refused global; ``meta_config`` loads (and resumes) without running.
"""
import io
import os.path as osp
import pickle
import subprocess
import sys

import pytest
import torch

pytest.importorskip('mmpretrain')

from tool_helpers import CFG, ROOT, load_tool, tiny_options  # noqa: E402

pytestmark = pytest.mark.usefixtures('one_thread')

REFUSED = ['reduce', 'legacy_reduce', 'getattr_gadget', 'history_buffer_table']
VECTORS = REFUSED + ['meta_config']
#: What the error must name for each refused vector.
REFUSED_GLOBAL = {'reduce': 'io.open', 'legacy_reduce': 'io.open',
                  'getattr_gadget': 'getattr', 'history_buffer_table': "'mean'"}


# ----------------------------------------------------------------------------- payloads

class _Open:
    """Unpickles as ``open(marker, 'w')``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, 'w')


class _GetAttr:
    """Unpickles as ``getattr(obj, name)``, then (optionally) sets items on the result."""

    def __init__(self, obj, name, items=None):
        self.obj, self.name, self.items = obj, name, items

    def __reduce__(self):
        if self.items is None:
            return getattr, (self.obj, self.name)
        return getattr, (self.obj, self.name), None, None, iter(self.items)


class _PersistentString:
    """Pickled as a persistent id ``(text,)``: the unpickler passes text to
    ``torch.serialization._maybe_decode_ascii``."""

    def __init__(self, text):
        self.text = text


class _PidPickler(pickle.Pickler):
    def persistent_id(self, obj):
        return (obj.text,) if isinstance(obj, _PersistentString) else None


def _write_zip_checkpoint(path, pickle_bytes):
    writer = torch._C.PyTorchFileWriter(str(path))
    writer.write_record('data.pkl', pickle_bytes, len(pickle_bytes))
    writer.write_record('byteorder', b'little', len(b'little'))
    writer.write_end_of_file()


def getattr_gadget_bytes(marker):
    builtins_module = _GetAttr(getattr, '__self__')        # getattr.__self__ is builtins
    evil = _GetAttr(builtins_module, 'eval')
    serialization_globals = _GetAttr(torch.serialization._get_layout, '__globals__',
                                     items=[('_maybe_decode_ascii', evil)])
    code = f"open({str(marker)!r}, 'w').close() or 'storage'"
    buf = io.BytesIO()
    _PidPickler(buf, protocol=2).dump([serialization_globals, _PersistentString(code)])
    return buf.getvalue()


def save_history_buffer_payload(path):
    """A message hub HistoryBuffer whose pickled statistics table maps 'mean' to numpy's
    dtype constructor (an allowed callable, but not HistoryBuffer.mean)."""
    import numpy as np
    from mmengine.logging import HistoryBuffer
    buffer = HistoryBuffer()
    buffer.update(1.0)  # (an empty one pickles bytes(), which the unpickler refuses anyway)
    table = HistoryBuffer._statistics_methods  # pickled by HistoryBuffer.__getstate__
    saved = dict(table)
    table['mean'] = np.dtype
    try:
        torch.save({'meta': {'epoch': 1, 'iter': 1}, 'state_dict': {'w': torch.zeros(1)},
                    'message_hub': {'log_scalars': {'loss': buffer}}}, path)
    finally:
        table.clear()
        table.update(saved)


def make_payload(vector, path, marker, real_checkpoint):
    """Write the checkpoint of ``vector`` to ``path``."""
    if vector in ('reduce', 'legacy_reduce'):
        obj = {'meta': {'epoch': 1, 'iter': 1}, 'state_dict': {'w': torch.zeros(1)},
               'extra': _Open(marker)}
        torch.save(obj, path, _use_new_zipfile_serialization=vector == 'reduce')
    elif vector == 'getattr_gadget':
        _write_zip_checkpoint(path, getattr_gadget_bytes(marker))
    elif vector == 'history_buffer_table':
        save_history_buffer_payload(path)
    elif vector == 'meta_config':
        from mmvrwkv.engine import load_checkpoint_file
        ckpt = load_checkpoint_file(real_checkpoint)
        ckpt['meta']['config'] = (f"open({str(marker)!r}, 'w').close()\n"
                                  'gpu_ids = [0]\n')
        torch.save(ckpt, path)
    else:
        raise ValueError(vector)


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope='module')
def real_checkpoint(digits, tmp_path_factory):
    """epoch_1.pth of a 1-epoch run of the 2-block demo model."""
    work = str(tmp_path_factory.mktemp('security_run'))
    load_tool('train').main([CFG, '--work-dir', work] + tiny_options(digits))
    return osp.join(work, 'epoch_1.pth')


@pytest.fixture
def payload(request, tmp_path, real_checkpoint):
    vector = request.param
    marker = tmp_path / 'MARKER'
    path = tmp_path / f'evil_{vector}.pth'
    make_payload(vector, str(path), marker, real_checkpoint)
    return vector, str(path), marker


def assert_refused(vector, path, text):
    assert path in text, text
    assert REFUSED_GLOBAL[vector] in text, text


# ----------------------------------------------------------------------------- the payloads work

@pytest.mark.parametrize('vector', ['reduce', 'legacy_reduce', 'getattr_gadget'])
def test_payloads_run_code_when_loaded_as_before(vector, tmp_path, real_checkpoint):
    """Guard against toothless tests: each payload creates the marker under the loader it
    attacks -- full unpickling for the reduce payloads, and for the gadget the allow-list
    mmvrwkv had before (real ``getattr`` allowed). Runs in a subprocess (the gadget rewrites
    torch.serialization of the process it runs in)."""
    marker, path = tmp_path / 'MARKER', tmp_path / 'evil.pth'
    make_payload(vector, str(path), marker, real_checkpoint)
    if vector == 'getattr_gadget':
        load = ('import builtins, torch; torch.serialization.add_safe_globals([builtins.getattr])\n'
                f'try: torch.load({str(path)!r}, weights_only=True)\nexcept Exception: pass\n')
    else:
        load = f'import torch; torch.load({str(path)!r}, weights_only=False)\n'
    subprocess.run([sys.executable, '-c', load], cwd=ROOT, timeout=120, check=False,
                   capture_output=True)
    assert marker.exists(), f'{vector}: the payload did not run under the unsafe loader'


def test_meta_config_payload_runs_in_upstream_resume(tmp_path, real_checkpoint):
    """The text mmengine's Runner.resume would execute really is code."""
    from mmengine.config import Config
    marker, path = tmp_path / 'MARKER', tmp_path / 'evil.pth'
    make_payload('meta_config', str(path), marker, real_checkpoint)
    raw = torch.load(str(path), weights_only=True)
    Config.fromstring(raw['meta']['config'], file_format='.py')  # what mmengine does
    assert marker.exists()


# ----------------------------------------------------------------------------- entry points

@pytest.mark.parametrize('payload', VECTORS, indirect=True)
def test_train_resume(payload, trainer, digits, tmp_path, clean_env):
    vector, path, marker = payload
    argv = [CFG, '--work-dir', str(tmp_path / 'work'), '--resume', path] + tiny_options(
        digits, epochs=2)
    if vector in REFUSED:
        with pytest.raises(Exception) as info:
            trainer.main(argv)
        assert_refused(vector, path, str(info.value))
    else:
        trainer.main(argv)  # resumes at epoch 2 without executing meta.config
        assert osp.isfile(tmp_path / 'work' / 'epoch_2.pth')
    assert not marker.exists()


@pytest.mark.parametrize('payload', VECTORS, indirect=True)
def test_load_from(payload, trainer, digits, tmp_path, clean_env):
    vector, path, marker = payload
    argv = [CFG, '--work-dir', str(tmp_path / 'work')] + tiny_options(digits, load_from=path)
    if vector in REFUSED:
        with pytest.raises(Exception) as info:
            trainer.main(argv)
        assert_refused(vector, path, str(info.value))
    else:
        trainer.main(argv)
    assert not marker.exists()


@pytest.mark.parametrize('payload', VECTORS, indirect=True)
def test_test_tool(payload, evaluator, digits, tmp_path, clean_env):
    vector, path, marker = payload
    argv = [CFG, path, '--work-dir', str(tmp_path / 'work')] + tiny_options(digits)
    if vector in REFUSED:
        with pytest.raises(Exception) as info:
            evaluator.main(argv)
        assert_refused(vector, path, str(info.value))
    else:
        assert 'accuracy/top1' in evaluator.main(argv)
    assert not marker.exists()


@pytest.mark.parametrize('payload', VECTORS, indirect=True)
def test_converter(payload, tmp_path, capsys):
    vector, path, marker = payload
    converter = load_tool('model_converters/vrwkv2mmvrwkv')
    code = converter.main([path, str(tmp_path / 'out.pth'), '--arch', 'tiny'])
    err = capsys.readouterr().err
    if vector in REFUSED:
        assert code == 1
        assert_refused(vector, path, err)
    assert not marker.exists()


@pytest.mark.parametrize('payload', VECTORS, indirect=True)
def test_mmpretrain_inferencer(payload, tmp_path):
    vector, path, marker = payload
    from mmengine.config import Config
    from mmpretrain.apis import ImageClassificationInferencer
    import mmvrwkv  # noqa: F401  (what custom_imports does)
    cfg = Config.fromfile(CFG)
    cfg.model.backbone.depth = 2
    if vector in REFUSED:
        with pytest.raises(Exception) as info:
            ImageClassificationInferencer(model=cfg, pretrained=path, device='cpu')
        assert_refused(vector, path, str(info.value))
    else:
        ImageClassificationInferencer(model=cfg, pretrained=path, device='cpu')
    assert not marker.exists()


# ----------------------------------------------------------------------------- the allow-list

def test_allow_list_has_no_generic_callable():
    """Nothing on the list can call or look up arbitrary things: builtins.getattr maps to the
    narrow stand-in, and no eval/exec/__import__/partial/getattr itself is on it."""
    import builtins
    import functools
    from mmvrwkv.engine.checkpoint.loading import _history_buffer_method, mmengine_safe_globals
    entries = mmengine_safe_globals()
    objects = [e[0] if isinstance(e, tuple) else e for e in entries]
    for bad in (builtins.getattr, builtins.eval, builtins.exec, builtins.__import__,
                builtins.setattr, builtins.open, functools.partial):
        assert all(obj is not bad for obj in objects), bad
    assert ('builtins.getattr' in {e[1] for e in entries if isinstance(e, tuple)})
    from mmengine.logging import HistoryBuffer
    assert _history_buffer_method(HistoryBuffer, 'mean') is HistoryBuffer.__dict__['mean']
    for obj, name in ((HistoryBuffer, '__init__'), (HistoryBuffer, '__dict__'),
                      (torch.serialization._get_layout, '__globals__'), (getattr, '__self__')):
        with pytest.raises(pickle.UnpicklingError, match='refused getattr'):
            _history_buffer_method(obj, name)


def test_refuses_to_load_when_real_getattr_is_allowed(tmp_path, real_checkpoint):
    """If other code put the real getattr on torch's list, loading stops altogether."""
    import builtins
    from mmvrwkv.engine import CheckpointError, load_checkpoint_file
    with torch.serialization.safe_globals([builtins.getattr]):
        with pytest.raises(CheckpointError, match='builtins.getattr is on torch'):
            load_checkpoint_file(real_checkpoint)
    assert load_checkpoint_file(real_checkpoint)['meta']['epoch'] == 1


def test_meta_config_is_neutralised(tmp_path, real_checkpoint):
    from mmvrwkv.engine.checkpoint import literal_gpu_ids, load_checkpoint_file
    marker, path = tmp_path / 'MARKER', tmp_path / 'evil.pth'
    make_payload('meta_config', str(path), marker, real_checkpoint)
    assert load_checkpoint_file(str(path))['meta']['config'] == 'gpu_ids = [0]\n'
    ckpt = load_checkpoint_file(str(path))
    ckpt['meta']['config'] = "open('x', 'w')"                    # no gpu_ids: dropped
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
    import shutil
    import threading

    from mmengine.runner.checkpoint import CheckpointLoader

    from mmvrwkv.engine import UnsafeCheckpointError
    served = tmp_path / 'served'
    served.mkdir()
    marker = tmp_path / 'MARKER'
    make_payload('reduce', str(served / 'evil.pth'), marker, real_checkpoint)
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
