"""After unpickling: the structure check, the config texts, the digest of the whole content.

- ``structure.validate_checkpoint``: each rule with a crafted file or object (``meta`` not a
  dict, a ``state_dict`` with a non-str key or a non-tensor value, a stride-0 2^17 x 2^17
  tensor, a meta-device tensor, cycles, deep nesting, shared-reference blow-ups, numpy
  dtypes, HistoryBuffer attributes, scheduler states); every refusal is a
  ``CheckpointStructureError`` that names the file and the key path, never a raw error;
- a clean Runner checkpoint loads with its content unchanged (but for the config texts);
- ``config_text``: the texts in ``meta['config']``, ``meta['cfg']`` and
  ``message_hub.runtime_info['cfg']`` never leave the loader, and they do run code under
  ``Config.fromstring`` when read with plain ``torch.load`` (so the test can fail);
- ``digest``: a flipped byte in an optimizer moment or in a scheduler value of a checkpoint
  written by our hook is refused and the damaged part named, while ``torch.load`` reads it
  silently; files with only the older ``state_dict_sha256`` still verify.
"""
import copy
import os.path as osp
import pickle
import struct
from collections import Counter, OrderedDict

import numpy as np
import pytest
import torch

pytest.importorskip('mmpretrain')

from mmengine.logging import HistoryBuffer  # noqa: E402

from payloads_structure import (PAYLOADS, build_cfg_text, flip_byte_in_record,  # noqa: E402
                                huge_stride0_tensor, largest_exp_avg, load_raw, marker_code,
                                run_config_text_as_upstream, tensor_record)
from mmvrwkv.engine.checkpoint import (CHECKPOINT_DIGEST_KEY, DIGEST_KEY,  # noqa: E402
                                       CheckpointDigestError, CheckpointError,
                                       CheckpointStructureError, add_digest, checkpoint_digest,
                                       load_checkpoint_file, neutralise_config_texts,
                                       validate_checkpoint, verify_digest)
from mmvrwkv.engine.checkpoint import structure  # noqa: E402

pytestmark = pytest.mark.usefixtures('one_thread')

PAYLOAD = {p.name: p for p in PAYLOADS}


def small_checkpoint(**sections):
    ckpt = {'meta': {'epoch': 1, 'iter': 2}, 'state_dict': OrderedDict(w=torch.ones(2, 3))}
    ckpt.update(sections)
    return ckpt


def refused(path, match, error=CheckpointStructureError):
    """Loading ``path`` raises ``error`` naming it and ``match``."""
    with pytest.raises(error) as info:
        load_checkpoint_file(str(path))
    text = str(info.value)
    assert str(path) in text, text
    assert match in text, text
    return text


def refused_object(obj, match):
    with pytest.raises(CheckpointStructureError) as info:
        validate_checkpoint(obj, 'F.pth')
    text = str(info.value)
    assert text.startswith('F.pth: ') and match in text, text
    return text


def write_pickle(path, pickle_bytes):
    """A zip checkpoint whose data.pkl is ``pickle_bytes`` (for what torch.save cannot write)."""
    writer = torch._C.PyTorchFileWriter(str(path))
    writer.write_record('data.pkl', pickle_bytes, len(pickle_bytes))
    writer.write_record('byteorder', b'little', len(b'little'))
    writer.write_end_of_file()


def assert_same(a, b, where='checkpoint'):
    """Same types and values all the way down (tensors, arrays, HistoryBuffers included)."""
    assert type(a) is type(b), f'{where}: {type(a)} vs {type(b)}'
    if isinstance(a, dict):
        assert list(a) == list(b), f'{where}: keys {list(a)} vs {list(b)}'
        for key in a:
            assert_same(a[key], b[key], f'{where}[{key!r}]')
        if type(a) is OrderedDict:  # torch's _metadata
            assert_same(dict(vars(a)), dict(vars(b)), f'{where}.__dict__')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f'{where}[{i}]')
    elif isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and np.array_equal(a, b), where
    elif isinstance(a, HistoryBuffer):
        assert_same(vars(a), vars(b), where)
    else:
        assert a == b or (a != a and b != b), f'{where}: {a!r} vs {b!r}'


# ----------------------------------------------------------------------------- clean files

def test_clean_runner_checkpoint_loads_unchanged(real_checkpoint):
    raw = load_raw(real_checkpoint)
    loaded = load_checkpoint_file(real_checkpoint)
    # the two config texts are removed; nothing else differs
    assert 'cfg' in raw['meta'] and 'cfg' in raw['message_hub']['runtime_info']
    assert 'cfg' not in loaded['meta'] and 'cfg' not in loaded['message_hub']['runtime_info']
    expected = copy.copy(raw)
    expected['meta'] = {k: v for k, v in raw['meta'].items() if k != 'cfg'}
    info = OrderedDict((k, v) for k, v in raw['message_hub']['runtime_info'].items()
                       if k != 'cfg')
    expected['message_hub'] = {**raw['message_hub'], 'runtime_info': info}
    assert_same(expected, loaded)
    # the hook digested every section, optimizer and schedulers included
    sections = loaded['meta'][CHECKPOINT_DIGEST_KEY]
    assert set(sections) == set(loaded) >= {'meta', 'state_dict', 'message_hub', 'optimizer',
                                            'param_schedulers'}
    assert verify_digest(loaded, real_checkpoint) is True
    assert checkpoint_digest(loaded) == checkpoint_digest(raw) == sections


def test_official_layouts_pass(tmp_path):
    """A bare state dict, mmcv 1.x {'state_dict', 'meta'} and MAE's {'model'} load."""
    sd = torch.nn.Linear(3, 2).state_dict()       # OrderedDict with torch's _metadata
    mmcv1 = {'meta': {'mmcv_version': '1.7.0', 'config': 'gpu_ids = [0]\nx = 1\n',
                      'CLASSES': ('a', 'b'), 'env_info': 'sys.platform: linux',
                      'epoch': 3, 'iter': 30, 'hook_msgs': {'last_ckpt': 'x.pth'}},
             'state_dict': sd, 'optimizer': torch.optim.SGD(
                 torch.nn.Linear(3, 2).parameters(), lr=0.1).state_dict()}
    for name, obj in {'bare': sd, 'mmcv1': mmcv1, 'mae': {'model': sd}}.items():
        path = tmp_path / f'{name}.pth'
        torch.save(obj, path)
        loaded = load_checkpoint_file(str(path))
        assert torch.equal(loaded.get('model', loaded.get('state_dict', loaded))['weight'],
                           sd['weight'])
    assert load_checkpoint_file(str(tmp_path / 'mmcv1.pth'))['meta']['config'] == 'gpu_ids = [0]\n'
    # numpy values, HistoryBuffers, torch dtypes and complex numbers are plain values
    hb = HistoryBuffer()
    hb.update(1.5)
    hub = {'log_scalars': OrderedDict(loss=copy.deepcopy(hb)),
           'runtime_info': OrderedDict(best=np.float64(0.5), hist=np.arange(3, dtype=np.int32),
                                       dtype=torch.float16, z=1 + 2j, size=torch.Size([2])),
           'resumed_keys': {'loss': True}}
    validate_checkpoint(small_checkpoint(message_hub=hub), 'F.pth')


def test_runner_checkpoint_has_exactly_its_sections(real_checkpoint):
    """A Runner checkpoint (message_hub / param_schedulers) with a section renamed, e.g. by a
    damaged memoised key string (fuzz cases 'meta' -> 'metameta...', 'param_schedulers' ->
    'param_schdulers'), or missing, is refused: mmengine would ignore the unknown key and
    resume without that state, and without meta there is no digest to notice."""
    ckpt = load_checkpoint_file(real_checkpoint)
    validate_checkpoint(ckpt, 'F.pth')
    renamed = dict(ckpt)
    renamed['param_schdulers'] = renamed.pop('param_schedulers')
    refused_object(renamed, "param_schdulers is not a section of mmengine's Runner")
    without_meta = dict(ckpt)
    without_meta['metameta'] = without_meta.pop('meta')
    refused_object(without_meta, 'metameta is not a section')
    del without_meta['metameta']
    refused_object(without_meta, 'meta is missing: a Runner checkpoint always has')
    hub_only = {'message_hub': ckpt['message_hub'], 'state_dict': ckpt['state_dict']}
    refused_object(hub_only, 'meta is missing')
    # mmcv 1.x files (meta / state_dict / optimizer) and other layouts keep their own keys
    validate_checkpoint({'state_dict': ckpt['state_dict'], 'author': 'x'}, 'F.pth')


# ----------------------------------------------------------------------------- containers

def test_meta_that_is_not_a_dict(tmp_path):
    for meta, kind in [([('config', 'x')], 'list'), ((('config', 'x'),), 'tuple')]:
        path = tmp_path / f'meta_{kind}.pth'
        torch.save({'meta': meta, 'state_dict': {'w': torch.zeros(1)}}, path)
        refused(path, f'meta is a {kind}, not a dict')
    # a numpy structured scalar answers meta['config'] like a dict (issue 21, item 2)
    void = np.zeros((), dtype=[('config', 'S8')])[()]
    assert void['config'] == b''
    refused_object({'meta': void}, 'meta is a numpy.void, not a dict')
    refused_object([1, 2], 'the checkpoint is a list, not a dict')


def test_look_alike_containers_are_refused(tmp_path):
    path = tmp_path / 'counter.pth'
    torch.save(small_checkpoint(optimizer={'state': Counter(a=1)}), path)
    refused(path, "optimizer['state'] is a collections.Counter")
    path = tmp_path / 'set.pth'
    torch.save(small_checkpoint(extra={1, 2}), path)
    refused(path, 'extra is a set')
    shadow = OrderedDict(a=1)
    shadow.items = lambda: iter([])               # would hide the entries from a naive walk
    refused_object(small_checkpoint(meta=shadow), "carries the instance attribute 'items'")
    refused_object(small_checkpoint(extra=bytearray(b'x')), 'extra is a bytearray')
    refused_object(small_checkpoint(extra=[HistoryBuffer.mean]), 'extra[0] is a function')


def test_state_dict_keys_and_values(tmp_path):
    path = tmp_path / 'int_key.pth'
    torch.save({'state_dict': {'w': torch.zeros(1), 3: torch.zeros(1)}}, path)
    refused(path, 'state_dict has the key 3 of type int')
    path = tmp_path / 'value.pth'
    torch.save({'state_dict': {'w': torch.zeros(1), 'b': [1.0]}}, path)
    refused(path, "state_dict['b'] is a list, not a tensor")
    # torch's nn.Module extra state may be any plain value
    validate_checkpoint({'state_dict': {'m._extra_state': {'v': 1}}}, 'F.pth')
    refused_object({'state_dict': {'m._extra_state': {1, 2}}}, "state_dict['m._extra_state']")


def test_meta_fields(tmp_path):
    refused_object(small_checkpoint(meta={'epoch': '1'}), "meta['epoch'] is '1', not a non-")
    refused_object(small_checkpoint(meta={'iter': -1}), "meta['iter'] is -1")
    refused_object(small_checkpoint(meta={'cfg': b'x'}), "meta['cfg'] is a bytes, not a config")
    refused_object(small_checkpoint(meta={'dataset_meta': {1: 'a'}}), 'has the key 1')


def test_message_hub_shape():
    refused_object(small_checkpoint(message_hub={'runtime_info': {}, 'extra': {}}),
                   "message_hub.extra is not part of mmengine's MessageHub state")
    refused_object(small_checkpoint(message_hub={'resumed_keys': {'a': 1}}),
                   "message_hub.resumed_keys['a'] is an int, not a bool")
    refused_object(small_checkpoint(message_hub={'runtime_info': [('cfg', 'x')]}),
                   'message_hub.runtime_info is a list, not a dict')


def test_history_buffer_attributes():
    hb = HistoryBuffer()
    hb.update(1.0)
    odd = copy.deepcopy(hb)
    odd.__dict__['_statistics_methods'] = {}      # issue 21, item 6: an instance-level table
    refused_object(small_checkpoint(message_hub={'log_scalars': {'loss': odd}}),
                   "'_statistics_methods'")
    bad = copy.deepcopy(hb)
    bad._log_history = np.array(['x'])
    refused_object(small_checkpoint(message_hub={'log_scalars': {'loss': bad}}), "kind 'U'")
    refused_object(small_checkpoint(extra=[copy.deepcopy(hb)]), 'is a mmengine.logging')


def test_scheduler_state_cannot_replace_attributes():
    for key in ('optimizer', 'step', '__class__'):
        refused_object(small_checkpoint(param_schedulers=[{key: 1}]),
                       f"param_schedulers[0][{key!r}] would replace")
    refused_object(small_checkpoint(param_schedulers={'x': ({'last_step': 1},)}),
                   "param_schedulers['x'] is a tuple, not a list")
    validate_checkpoint(small_checkpoint(param_schedulers={'x': [{'last_step': 1}]},
                                         message_hub={}), 'F.pth')


# ----------------------------------------------------------------------------- limits

def test_cycle(tmp_path):
    loop = []
    loop.append(loop)
    path = tmp_path / 'cycle.pth'
    torch.save(small_checkpoint(meta={'x': loop}), path)
    raw = load_raw(path)['meta']['x']
    assert raw[0] is raw
    # (the stand-in resolution of the unpickler may see it first: either refuses)
    refused(path, 'contains itself', CheckpointError)
    refused_object(small_checkpoint(meta={'x': loop}), "meta['x'][0] contains itself (a ref")
    d = {}
    d['self'] = d
    refused_object(small_checkpoint(optimizer=d), 'contains itself')


def test_deep_nesting_is_refused_not_a_recursion_error(tmp_path):
    depth = 200_000
    # {'meta': {'epoch': 1}, 'message_hub': {'runtime_info': {'x': [[[...]]]}}} by hand:
    # torch.save itself recurses; the weights-only unpickler does not
    nested = b']' * depth + b'a' * (depth - 1)
    data = (b'\x80\x02}(X\x04\x00\x00\x00meta}X\x05\x00\x00\x00epochK\x01s'
            b'X\x0b\x00\x00\x00message_hub}X\x0c\x00\x00\x00runtime_info}X\x01\x00\x00\x00x'
            + nested + b'ssu.')
    path = tmp_path / 'deep.pth'
    write_pickle(path, data)
    raw = load_raw(path)
    with pytest.raises(RecursionError):  # what mmengine's deepcopy on resume would meet
        copy.deepcopy(raw['message_hub']['runtime_info']['x'])
    refused(path, 'nested deeper than', CheckpointError)  # (the stand-in resolution may see
    deep = [0]                                            # it first: either refuses)
    for _ in range(structure.MAX_DEPTH):
        deep = [deep]
    refused_object(small_checkpoint(meta={'x': deep}),
                   f'is nested deeper than {structure.MAX_DEPTH} levels')


def test_shared_references_cannot_blow_up(tmp_path):
    tree = [0]
    for _ in range(25):                            # 2^25 leaves through 25 shared lists
        tree = [tree, tree]
    path = tmp_path / 'dag.pth'
    torch.save(small_checkpoint(meta={'x': tree}), path)
    assert osp.getsize(path) < 10_000
    refused(path, f'beyond the {structure.MAX_NODES} values')
    big = torch.zeros(1 << 20)                     # 4 MiB, presented 200 times
    refused_object(small_checkpoint(extra=[big] * 200), 'the same data referenced over')


# ----------------------------------------------------------------------------- tensors

def test_stride0_expansion_is_refused_before_any_copy(tmp_path):
    path = tmp_path / 'stride0.pth'
    torch.save({'meta': {'epoch': 1}, 'state_dict': {'w': huge_stride0_tensor()}}, path)
    assert osp.getsize(path) < 10_000
    raw = load_raw(path)['state_dict']['w']
    assert raw.shape == (2 ** 17, 2 ** 17) and raw.stride() == (0, 0)
    refused(path, "state_dict['w'] has stride 0 on a dimension of size 131072")
    # overlapping strides present more bytes than the storage holds
    overlap = torch.arange(8.).as_strided((4, 4), (1, 1))
    refused_object({'state_dict': {'w': overlap}}, 'from 32 bytes of storage (overlapping')
    validate_checkpoint({'state_dict': {'w': torch.zeros(3, 1).expand(3, 1),
                                        't': torch.arange(6.).reshape(2, 3).t()}}, 'F.pth')


def test_stride0_payload_harm_is_real(tmp_path, real_checkpoint):
    """Unguarded, the stride-0 weight asks for 64 GiB (capped in a subprocess) and fails with
    an error that does not name the file; the meta tensor fails with NotImplementedError."""
    for name in ('stride0_tensor', 'meta_tensor'):
        payload = PAYLOAD[name]
        path, marker = tmp_path / f'{name}.pth', tmp_path / f'{name}.marker'
        payload.build(path, marker, tmp_path, real_checkpoint)
        payload.unprotected(path, marker, tmp_path)
        assert marker.exists(), name
        refused(path, payload.must_name)


def test_meta_and_other_layouts(tmp_path):
    path = tmp_path / 'meta_device.pth'
    torch.save({'state_dict': {'w': torch.empty(3, 4, device='meta')}}, path)
    refused(path, "state_dict['w'] is a meta-device tensor")
    # (a sparse file is refused before unpickling, by the prescan of declared sizes)
    refused_object({'state_dict': {'w': torch.eye(3).to_sparse()}}, 'is a torch.sparse_coo')
    q = torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.qint8)
    refused_object({'state_dict': {'w': q}}, 'is a quantized tensor')
    with_grad = torch.ones(2, requires_grad=True)
    with_grad.grad = torch.ones(2)
    refused_object({'state_dict': {'w': with_grad}}, 'with a gradient')
    tagged = torch.ones(2)
    tagged.note = 'x'
    refused_object({'state_dict': {'w': tagged}}, "Python attributes ('note')")


def test_numpy_dtypes():
    validate_checkpoint(small_checkpoint(extra=[np.zeros(2, np.float16), np.bool_(True),
                                                np.complex64(1j), np.uint8(3)]), 'F.pth')
    for bad, what in [(np.array(['a']), "kind 'U'"), (np.array([None], dtype=object), "'O'"),
                      (np.zeros(2, dtype=[('a', 'f4')]), "kind 'V'"),
                      (np.zeros(1, dtype=np.dtype('f8', metadata={'k': 1})), 'metadata'),
                      (np.datetime64('2020-01-01'), "kind 'M'"), (np.str_('x'), "kind 'U'")]:
        refused_object(small_checkpoint(extra=[bad]), what)


# ----------------------------------------------------------------------------- config texts

def test_config_texts_run_code_when_read_as_upstream(tmp_path, real_checkpoint):
    """The loader removes each text; the unprotected demonstration: what
    BaseInferencer._init_model(model=None) does with the raw file runs it."""
    for where in ('runtime_info', 'meta'):
        path, marker = tmp_path / f'{where}.pth', tmp_path / f'{where}.marker'
        build_cfg_text(where)(path, marker, tmp_path, real_checkpoint)
        loaded = load_checkpoint_file(str(path))        # the loader removes both texts
        assert 'cfg' not in loaded['meta'] and 'cfg' not in loaded['message_hub']['runtime_info']
        assert not marker.exists()
        run_config_text_as_upstream(path)
        assert marker.exists(), where


def test_config_texts_never_leave_the_loader(tmp_path, real_checkpoint, monkeypatch):
    from mmengine.config import Config
    marker = tmp_path / 'MARKER'
    ckpt = load_raw(real_checkpoint)
    code = marker_code(marker)
    ckpt['meta']['config'] = code + 'gpu_ids = [0]\n'
    ckpt['meta']['cfg'] = code
    ckpt['message_hub']['runtime_info']['cfg'] = code
    path = tmp_path / 'texts.pth'
    torch.save(ckpt, path)
    calls = []
    monkeypatch.setattr(Config, 'fromstring', staticmethod(lambda *a, **k: calls.append(a)))
    loaded = load_checkpoint_file(str(path))
    assert loaded['meta']['config'] == 'gpu_ids = [0]\n'
    assert 'cfg' not in loaded['meta'] and 'cfg' not in loaded['message_hub']['runtime_info']
    assert calls == [] and not marker.exists()
    # the texts are not part of the digest: the file verifies before and after neutralising
    assert verify_digest(ckpt, str(path)) is True
    neutralise_config_texts(ckpt)
    assert verify_digest(ckpt, str(path)) is True
    # inferencers given only weights find no config in what the loader returns
    with pytest.raises(KeyError):
        loaded['message_hub']['runtime_info']['cfg']


# ----------------------------------------------------------------------------- digest

def test_flipped_optimizer_byte_is_refused(tmp_path, real_checkpoint):
    payload = PAYLOAD['optimizer_byte_flip']
    path, marker = tmp_path / 'flip.pth', tmp_path / 'MARKER'
    payload.build(path, marker, tmp_path, real_checkpoint)
    clean, damaged = largest_exp_avg(load_raw(real_checkpoint)), largest_exp_avg(load_raw(path))
    assert not torch.equal(clean, damaged)          # torch.load reads it silently
    payload.unprotected(path, marker, tmp_path)
    assert marker.exists()
    with pytest.raises(CheckpointDigestError) as info:
        load_checkpoint_file(str(path))
    text = str(info.value)
    assert str(path) in text and 'the optimizer state (optimizer) differs' in text, text
    assert isinstance(info.value, CheckpointError)


def test_flipped_scheduler_value_is_refused(tmp_path, real_checkpoint):
    raw = load_raw(real_checkpoint)
    data = open(real_checkpoint, 'rb').read()
    floats = [v for s in raw['param_schedulers'] for v in s.values()
              if type(v) is float and v and data.count(b'G' + struct.pack('>d', v)) == 1]
    assert floats, raw['param_schedulers']
    encoded = b'G' + struct.pack('>d', floats[0])
    flipped = bytearray(data)
    flipped[data.index(encoded) + 8] ^= 0x01       # the last mantissa byte
    path = tmp_path / 'sched.pth'
    path.write_bytes(bytes(flipped))
    assert load_raw(path)['param_schedulers'] != raw['param_schedulers']
    with pytest.raises(CheckpointDigestError,
                       match=r'sched\.pth: .*scheduler state \(param_schedulers\) differs'):
        load_checkpoint_file(str(path))


def test_flipped_weight_byte_is_refused(tmp_path, real_checkpoint):
    raw = load_raw(real_checkpoint)
    name = max(raw['state_dict'], key=lambda k: raw['state_dict'][k].numel())
    path = tmp_path / 'weights.pth'
    path.write_bytes(open(real_checkpoint, 'rb').read())
    flip_byte_in_record(str(path), tensor_record(str(path), raw['state_dict'][name]))
    with pytest.raises(CheckpointDigestError, match='weights.pth: the weights do not match'):
        load_checkpoint_file(str(path))


def test_older_files_and_files_without_digest(tmp_path, real_checkpoint):
    raw = load_raw(real_checkpoint)
    # written before issue 21: only state_dict_sha256
    old = dict(raw, meta={k: v for k, v in raw['meta'].items() if k != CHECKPOINT_DIGEST_KEY})
    path = tmp_path / 'old.pth'
    torch.save(old, path)
    assert DIGEST_KEY in load_checkpoint_file(str(path))['meta']
    flip_byte_in_record(str(path), tensor_record(str(path), next(iter(
        t for t in raw['state_dict'].values() if t.numel() > 8))))
    with pytest.raises(CheckpointDigestError, match='old.pth: the weights do not match'):
        load_checkpoint_file(str(path))
    # no digest at all (official, plain mmengine): loads
    plain = dict(raw, meta={k: v for k, v in raw['meta'].items()
                            if k not in (DIGEST_KEY, CHECKPOINT_DIGEST_KEY)})
    torch.save(plain, tmp_path / 'plain.pth')
    assert verify_digest(load_checkpoint_file(str(tmp_path / 'plain.pth')), 'x') is None
    # a section added or removed after the digest was written is damage too
    for changed, what in [(dict(raw, extra=1), "'extra' (not in the digest)"),
                          ({k: v for k, v in raw.items() if k != 'optimizer'},
                           "'optimizer' (missing)")]:
        with pytest.raises(CheckpointDigestError, match=what.replace('(', r'\(').replace(
                ')', r'\)')):
            verify_digest(changed, 'F.pth')
    bad = dict(raw, meta=dict(raw['meta'], **{CHECKPOINT_DIGEST_KEY: 'abc'}))
    with pytest.raises(CheckpointDigestError, match='not a dict of section digests'):
        verify_digest(bad, 'F.pth')


def test_digest_is_canonical():
    base = small_checkpoint(optimizer={'state': {0: {'step': torch.tensor(3.)}},
                                       'param_groups': [{'lr': 0.1, 'betas': (0.9, 0.99)}]})
    digest = checkpoint_digest(base)
    assert checkpoint_digest(copy.deepcopy(base)) == digest
    strided = copy.deepcopy(base)
    strided['state_dict']['w'] = torch.ones(3, 2).t()           # same values, other strides
    assert checkpoint_digest(strided) == digest
    for change in [lambda c: c['optimizer']['param_groups'][0].update(betas=[0.9, 0.99]),
                   lambda c: c['optimizer']['param_groups'][0].update(lr=0.1000000001),
                   lambda c: c['optimizer']['state'][0].update(step=torch.tensor(3.).double()),
                   lambda c: c['meta'].update(epoch=True),
                   lambda c: c['meta'].update(epoch=1.0),
                   lambda c: c['optimizer']['state'][0]['step'].add_(1e-6)]:
        changed = copy.deepcopy(base)
        change(changed)
        assert checkpoint_digest(changed) != digest
    ordered = copy.deepcopy(base)
    ordered['meta'] = {'iter': 2, 'epoch': 1}                   # key order is content
    assert checkpoint_digest(ordered)['meta'] != digest['meta']
    # add_digest is idempotent, and the digest entries are left out of the digest
    first = add_digest(base)
    assert add_digest(base) == first and verify_digest(base, 'F.pth') is True


def test_digest_runs_on_big_ints_and_odd_text():
    ckpt = small_checkpoint(meta={'big': 10 ** 5000, 'neg': -(1 << 70), 's': '\ud800x'})
    add_digest(ckpt)
    assert verify_digest(ckpt, 'F.pth') is True


def test_error_classes():
    assert issubclass(CheckpointStructureError, CheckpointError)
    assert issubclass(CheckpointDigestError, CheckpointError)
    assert pickle.loads(pickle.dumps(CheckpointStructureError('x'))).args == ('x',)
