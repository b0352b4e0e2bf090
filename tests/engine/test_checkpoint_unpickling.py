"""What torch's weights-only unpickler may build from a checkpoint, and what a checkpoint may
make the loader allocate (``unpickling.py``, ``prescan.py``).

- numpy: forged dtype states (a field outside the item size, an object field with the flags
  cleared, structured, object, subarray, metadata, datetime, string dtypes) are refused, a
  structured scalar (``np.void``) too; plain arrays and scalars come back identical to numpy's
  own unpickling, from numpy 2-style and numpy 1-style pickles.
- the stand-ins: one BUILD each, no use before it, none left in the result, only while our
  loader runs, other code's numpy entries shadowed meanwhile.
- HistoryBuffer: an instance-level ``_statistics_methods`` and a name added by an earlier
  BUILD are refused; the class table is unchanged afterwards; real buffers resume as before.
- allocation: declared sizes against the stored bytes (legacy storages, compressed or
  oversized zip records, persistent ids larger than their record, pickle lengths past the
  end), pickle-level allocations (``bytearray(n)``, ``torch.Tensor(n)``, ``TypedStorage(n)``,
  ``_codecs.encode`` other than latin-1, nested ``_rebuild_from_type_v2``, a view resizing its
  storage); no state or hooks set from the file on a tensor, no attribute on a stand-in.

The payloads of ``payloads_unpickling.py`` also go through every entry point in
``test_checkpoint_security.py``, which shows each one doing harm on the old loader (a segfault,
code from ``meta``, a changed class table, a 1 GiB allocation in a memory-limited child).
Here they are loaded with ``load_checkpoint_file`` directly.
"""
import builtins
import functools
import io
import pickle
import re
import struct
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from payloads_unpickling import (PAYLOADS, HexEncoded, NewObj, PidPickler, Reduce, StoragePid,
                                 deflated, forged_scalar, history_state, own_methods,
                                 pickle_checkpoint, run_unprotected, scalar_function,
                                 storage_pickle, write_legacy, write_zip)

from mmvrwkv.engine.checkpoint import (CheckpointError, CheckpointStructureError,
                                       CorruptCheckpointError, ResourceLimitError,
                                       UnsafeCheckpointError,
                                       load_checkpoint_file, mmengine_safe_globals)
from mmvrwkv.engine.checkpoint import unpickling

pytestmark = pytest.mark.usefixtures('one_thread')


def small_checkpoint(**meta):
    """A checkpoint of the structure mmengine writes, with ``meta`` entries added."""
    return {'meta': dict(epoch=1, iter=1, **meta), 'state_dict': {'w': torch.arange(3.)}}


def save(obj, path, legacy=False):
    torch.save(obj, str(path), _use_new_zipfile_serialization=not legacy)
    return str(path)


def refused(path, error=UnsafeCheckpointError, match=None):
    """The error of loading ``path`` (of type ``error``, naming the file)."""
    with pytest.raises(error) as info:
        load_checkpoint_file(str(path))
    text = str(info.value)
    assert str(path) in text, text
    if match is not None:
        assert match in text, text
    return text


# ----------------------------------------------------------------------------- raw pickles

def op_global(module, name):
    return b'c' + f'{module}\n{name}\n'.encode()


def op_str(text):
    raw = text.encode()
    return b'X' + struct.pack('<I', len(raw)) + raw


def op_int(value):
    return b'J' + struct.pack('<i', value)


PLAIN_STATE = b'(' + op_int(3) + op_str('<') + b'NNN' + op_int(-1) + op_int(-1) + op_int(0) + b't'


def op_dtype(typestr='f8'):
    """REDUCE numpy.dtype(typestr, False, True), without its BUILD."""
    return op_global('numpy', 'dtype') + op_str(typestr) + b'\x89\x88\x87R'


def meta_pickle(value_ops):
    """``{'meta': {'epoch': 1, 'iter': 1, 'x': <value_ops>}}`` as a protocol-2 pickle."""
    return (b'\x80\x02}' + op_str('meta') + b'}' + op_str('epoch') + op_int(1) + b's'
            + op_str('iter') + op_int(1) + b's' + op_str('x') + value_ops + b'ss.')


# ----------------------------------------------------------------------------- numpy dtypes

FORGED_DTYPES = {
    # (REDUCE args, BUILD state) of numpy.dtype; the state's dtypes are real ones
    'field_outside_itemsize': (('V8', False, True),
                               (3, '|', None, ('a',), {'a': (np.dtype('<f8'), 1 << 40)}, 8, 1,
                                0)),
    'object_field_flags_cleared': (('V8', False, True),
                                   (3, '|', None, ('a',), {'a': (np.dtype('O'), 0)}, 8, 1, 0)),
    'fields_on_a_plain_type': (('f8', False, True),
                               (3, '<', None, ('a',), {'a': (np.dtype('O'), 0)}, 8, 1, 0)),
    'forged_itemsize': (('f8', False, True), (3, '<', None, None, None, 4, 1, 0)),
    'forged_flags': (('f8', False, True), (3, '<', None, None, None, -1, -1, 63)),
    'metadata': (('i8', False, True), (4, '<', None, None, None, -1, -1, 0, {'x': 1})),
    'subarray_on_a_plain_type': (('f4', False, True),
                                 (3, '|', (np.dtype('<f4'), (2,)), None, None, 8, 4, 0)),
    'byteorder_of_one_byte_type': (('u1', False, True), (3, '<', None, None, None, -1, -1, 0)),
    'bool_flags': (('f8', 0, 1), (3, '<', None, None, None, -1, -1, 0)),
}
REAL_NON_PLAIN = {
    'structured': np.dtype([('a', '<i4'), ('b', '<f8')]),
    'void': np.dtype('V8'),
    'object': np.dtype('O'),
    'subarray': np.dtype(('<f4', (2,))),
    'datetime': np.dtype('M8[s]'),
    'unicode': np.dtype('<U3'),
    'bytes': np.dtype('S3'),
    'long_double': np.dtype(np.longdouble),
}


@pytest.mark.parametrize('case', sorted(FORGED_DTYPES))
def test_forged_dtype_state_is_refused(case, tmp_path):
    args, state = FORGED_DTYPES[case]
    dtype = Reduce(np.dtype, args, state)
    path = save(small_checkpoint(x=Reduce(scalar_function(), (dtype, bytes(8)))),
                tmp_path / 'forged.pth')
    refused(path, match='numpy.dtype')


@pytest.mark.parametrize('case', sorted(REAL_NON_PLAIN))
@pytest.mark.parametrize('where', ['dtype', 'array', 'scalar'])
def test_non_plain_dtypes_are_refused(case, where, tmp_path):
    dtype = REAL_NON_PLAIN[case]
    if case in ('subarray', 'object') and where != 'dtype':
        pytest.skip('numpy makes these a plain array (subarray) or a Python object (object)')
    value = {'dtype': dtype, 'array': np.zeros(2, dtype), 'scalar': np.zeros(1, dtype)[0]}[where]
    path = save(small_checkpoint(x=value), tmp_path / f'{case}.pth')
    refused(path, match='numpy.dtype')


@pytest.mark.parametrize('payload', [p for p in PAYLOADS if p.name.startswith(('np_', 'hb_'))],
                         ids=lambda p: p.name)
def test_unpickling_payloads_are_refused(payload, tmp_path, real_checkpoint):
    marker, path = tmp_path / 'MARKER', tmp_path / 'evil.pth'
    payload.build(path, marker, tmp_path / 'victim', real_checkpoint)
    refused(path, match=payload.must_name)
    assert not marker.exists()


def test_forged_dtype_crashes_the_old_loader(tmp_path):
    """The harm, in a child: numpy reads the file's bytes as a PyObject* (or 2^40 bytes away)."""
    for field, offset, data in ((np.dtype('O'), 0, struct.pack('<Q', 0x10)),
                                (np.dtype('<f8'), 1 << 40, bytes(8))):
        path = save({'x': forged_scalar(field, offset, data)}, tmp_path / 'forged.pth')
        result = run_unprotected(path, "print(repr(old_load(PATH)['x']['a']))")
        assert result.returncode == -11, (result.returncode, result.stderr[-2000:])


# ----------------------------------------------------------------------------- numpy round trip

def plain_values():
    """Arrays and scalars of every plain dtype, both byte orders, C and Fortran order."""
    rng = np.random.default_rng(0)
    arrays, scalars = [], []
    for typestr in sorted(unpickling.PLAIN_TYPESTRS):
        orders = ('|',) if typestr[1:] == '1' else ('<', '>')
        for order in orders:
            dtype = np.dtype(order.replace('|', '') + typestr)
            data = rng.integers(0, 2 if typestr == 'b1' else 100, size=(3, 4)).astype(dtype)
            arrays += [data, np.asfortranarray(data), data[0], np.array(data[0, 0]),
                       np.zeros((0, 3), dtype)]
            scalars.append(data[1, 2])
    return arrays, scalars


def assert_identical_numpy(got, want):
    assert type(got) is type(want), (type(got), type(want))
    assert got.dtype == want.dtype and got.dtype.str == want.dtype.str
    assert got.tobytes() == want.tobytes()
    if isinstance(want, np.ndarray):
        assert got.shape == want.shape
        assert got.flags['C_CONTIGUOUS'] == want.flags['C_CONTIGUOUS']
        assert got.flags['F_CONTIGUOUS'] == want.flags['F_CONTIGUOUS']
        assert got.flags['WRITEABLE'] and got.flags['OWNDATA']


def numpy1_style(path, out):
    """The same zip checkpoint as numpy 1 pickles it (``numpy.core`` for ``numpy._core``)."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, 'w', zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith('/data.pkl'):
                assert b'numpy._core.multiarray' in data
                data = data.replace(b'numpy._core.multiarray', b'numpy.core.multiarray')
            dst.writestr(info.filename, data)
    return str(out)


@pytest.mark.parametrize('style', ['numpy2', 'numpy1', 'legacy_format'])
def test_plain_numpy_values_round_trip(style, tmp_path):
    arrays, scalars = plain_values()
    path = save(small_checkpoint(arrays=arrays, scalars=scalars), tmp_path / 'plain.pth',
                legacy=style == 'legacy_format')
    if style == 'numpy1':
        path = numpy1_style(path, tmp_path / 'numpy1.pth')
    want = torch.load(path, weights_only=False)['meta']  # numpy's own unpickling
    got = load_checkpoint_file(path)['meta']
    assert len(got['arrays']) == len(arrays) and len(got['scalars']) == len(scalars)
    for g, w in zip(got['arrays'] + got['scalars'], want['arrays'] + want['scalars']):
        assert_identical_numpy(g, w)


def unpickle(path):
    """Only the unpickling step of the loader (no structure checks after it)."""
    with open(path, 'rb') as f, unpickling.stand_ins_registered():
        raw = torch.load(f, weights_only=True)
    return unpickling.resolve_stand_ins(raw, str(path))


def test_plain_dtypes_round_trip(tmp_path):
    """Standalone dtypes (the structure check refuses them in a checkpoint, but the stand-in
    makes the real ones), shared like numpy's pickler shares them."""
    arrays, _ = plain_values()
    dtypes = [a.dtype for a in arrays]
    path = save({'dtypes': dtypes, 'shared': (dtypes[0], dtypes[0])}, tmp_path / 'd.pth')
    got, want = unpickle(path), torch.load(path, weights_only=False)
    assert all(type(g) is type(w) and g == w and g.str == w.str
               for g, w in zip(got['dtypes'], want['dtypes']))
    assert got['shared'][0] is got['shared'][1]


def test_real_checkpoint_loads_as_numpy_and_mmengine_wrote_it(real_checkpoint):
    """The message hub of a real Runner checkpoint: real HistoryBuffers with real arrays,
    identical to full unpickling, that resume (statistics, deepcopy) as upstream."""
    import copy

    from mmengine.logging import HistoryBuffer
    table = dict(HistoryBuffer._statistics_methods)
    want = torch.load(real_checkpoint, weights_only=False)['message_hub']
    got = load_checkpoint_file(real_checkpoint)['message_hub']
    assert got['log_scalars'].keys() == want['log_scalars'].keys()
    assert got['log_scalars']
    for key, buffer in got['log_scalars'].items():
        assert type(buffer) is HistoryBuffer
        expected = vars(want['log_scalars'][key])
        assert set(vars(buffer)) == {'max_length', '_log_history', '_count_history'}
        assert buffer.max_length == expected['max_length']
        for name in ('_log_history', '_count_history'):
            assert_identical_numpy(getattr(buffer, name), expected[name])
        assert buffer.statistics('mean') == buffer.mean()
    copy.deepcopy(got)
    assert HistoryBuffer._statistics_methods == table
    for key, value in want['runtime_info'].items():  # ('cfg' is neutralised: not compared)
        if isinstance(value, (np.ndarray, np.generic)):
            assert_identical_numpy(got['runtime_info'][key], value)


# ----------------------------------------------------------------------------- stand-in rules

def test_second_build_is_refused(tmp_path):
    ops = op_dtype() + PLAIN_STATE + b'b' + PLAIN_STATE + b'b'
    pickle_checkpoint(tmp_path / 'x.pth', meta_pickle(ops))
    refused(tmp_path / 'x.pth', match='second BUILD')


def test_use_before_build_is_refused(tmp_path):
    unbuilt = Reduce(np.dtype, ('f8', False, True))  # no state: no BUILD
    path = save(small_checkpoint(x=Reduce(scalar_function(), (unbuilt, bytes(8)))),
                tmp_path / 'x.pth')
    refused(path, match='before its BUILD')


def test_unbuilt_stand_in_in_the_result_is_refused(tmp_path):
    path = save(small_checkpoint(x=Reduce(np.dtype, ('f8', False, True))), tmp_path / 'x.pth')
    text = refused(path, match='before its BUILD')
    assert "meta['x']" in text, text


def test_history_buffer_method_outside_a_buffer_is_refused(tmp_path):
    from mmengine.logging import HistoryBuffer
    path = save(small_checkpoint(x=HistoryBuffer.mean), tmp_path / 'x.pth')
    text = refused(path, match="getattr(HistoryBuffer, 'mean')")
    assert "meta['x']" in text, text


@pytest.mark.parametrize('case', ['ndarray_called', 'reconstruct_args', 'scalar_bytes',
                                  'array_bytes', 'negative_shape', 'array_dtype'])
def test_numpy_constructors_take_only_what_numpy_writes(case, tmp_path):
    try:
        from numpy._core import multiarray
    except ImportError:
        from numpy.core import multiarray
    f8 = np.dtype('f8')
    value = {
        'ndarray_called': Reduce(np.ndarray, ((2,),)),
        'reconstruct_args': Reduce(multiarray._reconstruct, (np.ndarray, (5,), b'b')),
        'scalar_bytes': Reduce(multiarray.scalar, (f8, bytes(7))),
        'array_bytes': Reduce(multiarray._reconstruct, (np.ndarray, (0,), b'b'),
                              (1, (4,), f8, False, bytes(8))),
        'negative_shape': Reduce(multiarray._reconstruct, (np.ndarray, (0,), b'b'),
                                 (1, (-1,), f8, False, b'')),
        'array_dtype': Reduce(multiarray._reconstruct, (np.ndarray, (0,), b'b'),
                              (1, (1,), 'f8', False, bytes(8))),
    }[case]
    refused(save(small_checkpoint(x=value), tmp_path / 'x.pth'), match='numpy')


def test_cycles_and_depth_are_refused_without_recursion(tmp_path):
    loop = []
    loop.append(loop)
    text = refused(save(small_checkpoint(x=loop), tmp_path / 'loop.pth'),
                   CheckpointStructureError, match='cycle')
    assert "meta['x']" in text
    n = 100_000  # nested lists, built iteratively by the unpickler
    pickle_checkpoint(tmp_path / 'deep.pth', meta_pickle(b']' * n + b'a' * (n - 1)))
    refused(tmp_path / 'deep.pth', CheckpointStructureError, match='nested deeper')


# ----------------------------------------------------------------------------- the allow-list

def test_allow_list_has_no_generic_callable():
    """Nothing on the list can call or look up arbitrary things: ``builtins.getattr`` maps to
    the narrow stand-in, and neither the real numpy / mmengine classes nor eval, exec,
    __import__, partial or getattr itself are on it."""
    from mmengine.logging import HistoryBuffer
    entries = mmengine_safe_globals()
    assert all(isinstance(e, tuple) and len(e) == 2 for e in entries)
    objects = [obj for obj, _ in entries]
    for bad in (builtins.getattr, builtins.eval, builtins.exec, builtins.__import__,
                builtins.setattr, builtins.open, functools.partial, np.dtype, np.ndarray,
                HistoryBuffer, scalar_function()):
        assert all(obj is not bad for obj in objects), bad
    names = dict((name, obj) for obj, name in entries)
    assert names['builtins.getattr'] is unpickling._history_buffer_method
    stand_in = names['mmengine.logging.history_buffer.HistoryBuffer']
    token = unpickling._history_buffer_method(stand_in, 'mean')
    assert not callable(token) and token.name == 'mean'
    for obj, name in ((stand_in, '__init__'), (stand_in, '__setstate__'),
                      (stand_in, 'statistics'), (HistoryBuffer, 'mean'),
                      (torch.serialization._get_layout, '__globals__'), (getattr, '__self__')):
        with pytest.raises(unpickling.StandInRefusal, match='refused getattr'):
            unpickling._history_buffer_method(obj, name)


def test_refuses_to_load_when_real_getattr_is_allowed(tmp_path, real_checkpoint):
    """If other code put the real getattr on torch's list, loading stops altogether."""
    with torch.serialization.safe_globals([builtins.getattr]):
        with pytest.raises(CheckpointError, match='builtins.getattr is on torch'):
            load_checkpoint_file(real_checkpoint)
    assert load_checkpoint_file(real_checkpoint)['meta']['epoch'] == 1


def test_stand_ins_are_on_torchs_list_only_while_loading(real_checkpoint):
    before = torch.serialization.get_safe_globals()
    load_checkpoint_file(real_checkpoint)
    assert set(torch.serialization.get_safe_globals()) == set(before)
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(real_checkpoint, weights_only=True)  # torch alone: no stand-ins left


def test_numpy_entries_of_other_code_are_shadowed_while_loading(tmp_path):
    """Real numpy classes on torch's list (the old allow-list, registered by other code) do
    not reach the unpickler while our loader runs, and are back afterwards."""
    old = [np.dtype, np.ndarray] + [getattr(np.dtypes, n) for n in dir(np.dtypes)
                                    if n.endswith('DType')]
    old += [(scalar_function(), 'numpy._core.multiarray.scalar')]
    args, state = FORGED_DTYPES['object_field_flags_cleared']
    path = save(small_checkpoint(x=Reduce(scalar_function(), (Reduce(np.dtype, args, state),
                                                              bytes(8)))), tmp_path / 'x.pth')
    with torch.serialization.safe_globals(old):
        listed = set(torch.serialization.get_safe_globals())
        refused(path, match='numpy.dtype')
        assert set(torch.serialization.get_safe_globals()) == listed


# ----------------------------------------------------------------------------- HistoryBuffer

def history_checkpoint(buffer):
    ckpt = small_checkpoint()
    ckpt['message_hub'] = {'log_scalars': OrderedDict(loss=buffer), 'runtime_info': {},
                           'resumed_keys': {}}
    return ckpt


@pytest.mark.parametrize('case', ['instance_table', 'added_name', 'mean_replaced',
                                  'missing_key', 'max_length', 'two_d', 'lengths',
                                  'arguments'])
def test_history_buffer_state_is_checked_and_table_unchanged(case, tmp_path):
    from mmengine.logging import HistoryBuffer
    HistoryBuffer()  # (the class table fills on the first buffer made)
    table = dict(HistoryBuffer._statistics_methods)
    state = history_state(own_methods())
    if case == 'instance_table':
        state['_statistics_methods'] = {'mean': HistoryBuffer.max}
    elif case == 'added_name':
        state['statistics_methods'] = {'statistics': HistoryBuffer.mean}
    elif case == 'mean_replaced':
        state['statistics_methods'] = {'mean': np.dtype}
    elif case == 'missing_key':
        del state['max_length']
    elif case == 'max_length':
        state['max_length'] = True
    elif case == 'two_d':
        state['_log_history'] = np.zeros((2, 1))
    elif case == 'lengths':
        state['_count_history'] = np.array([1])
    buffer = (Reduce(HistoryBuffer, (1,), state) if case == 'arguments'
              else NewObj(HistoryBuffer, state))
    text = refused(save(history_checkpoint(buffer), tmp_path / 'hb.pth'), match='HistoryBuffer')
    if case in ('instance_table', 'added_name', 'mean_replaced'):
        assert {'instance_table': "'_statistics_methods'", 'added_name': "'statistics'",
                'mean_replaced': "'mean'"}[case] in text, text
    assert HistoryBuffer._statistics_methods == table
    assert all(HistoryBuffer._statistics_methods[k] is v for k, v in table.items())


@pytest.mark.parametrize('how', ['newobj', 'reduce'])
def test_history_buffer_as_mmengine_writes_it_loads(how, tmp_path):
    from mmengine.logging import HistoryBuffer
    state = history_state(own_methods())
    buffer = NewObj(HistoryBuffer, state) if how == 'newobj' else Reduce(HistoryBuffer, (), state)
    got = load_checkpoint_file(save(history_checkpoint(buffer), tmp_path / 'hb.pth'))
    loaded = got['message_hub']['log_scalars']['loss']
    assert type(loaded) is HistoryBuffer and loaded.mean() == 1.5 and loaded.max_length == 1000


# ----------------------------------------------------------------------------- allocation

@pytest.mark.parametrize('payload', [p for p in PAYLOADS if p.name.startswith('alloc_')],
                         ids=lambda p: p.name)
def test_allocation_payloads_are_refused(payload, tmp_path):
    path = tmp_path / 'evil.pth'
    payload.build(path, tmp_path / 'MARKER', tmp_path / 'victim', '')
    error = (CorruptCheckpointError if payload.name == 'alloc_legacy_string_length'
             else ResourceLimitError)
    refused(path, error, match=payload.must_name)


def test_deflate_bomb_is_small_on_disk(tmp_path):
    payload = next(p for p in PAYLOADS if p.name == 'alloc_zip_deflate_bomb')
    path = tmp_path / 'bomb.pth'
    payload.build(path, tmp_path / 'MARKER', tmp_path / 'victim', '')
    assert path.stat().st_size < 1_200_000
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo('archive/data/0').file_size == 1 << 30


def test_storage_larger_than_its_record_is_refused(tmp_path):
    """(torch 2.14 checks the record size itself before allocating; older ones did not.)"""
    write_zip(tmp_path / 'x.pth', stored_records(storage_pickle(1 << 30, legacy=False)))
    text = refused(tmp_path / 'x.pth', ResourceLimitError, match="storage '0'")
    assert '1073741824' in text and 'stores 4 bytes' in text


def stored_records(pickle_bytes):
    """The records of a zip checkpoint with one 4-byte storage '0', STORED as torch writes."""
    return [(n, d, 0, zlib.crc32(d), len(d)) for n, d in (
        ('archive/data.pkl', pickle_bytes), ('archive/byteorder', b'little'),
        ('archive/version', b'3\n'), ('archive/data/0', bytes(4)))]


def test_zip_structure_is_checked(tmp_path):
    good = stored_records(storage_pickle(4, legacy=False))
    write_zip(tmp_path / 'good.pth', good)
    assert load_checkpoint_file(str(tmp_path / 'good.pth'))['state_dict']['w'].tolist() == [0] * 4
    # one small deflated record is enough to be refused
    write_zip(tmp_path / 'deflated.pth', good[:3] + [('archive/data/0',) + deflated(bytes(4))])
    refused(tmp_path / 'deflated.pth', ResourceLimitError, match="'archive/data/0' is compressed")
    # the same name twice (ignoring case)
    write_zip(tmp_path / 'twice.pth', good + [('ARCHIVE/DATA/0', bytes(4), 0, 0, 4)])
    refused(tmp_path / 'twice.pth', CorruptCheckpointError, match='twice')
    # a record that declares more than the file holds
    write_zip(tmp_path / 'long.pth', good)
    raw = bytearray((tmp_path / 'long.pth').read_bytes())
    central = raw.rfind(b'PK\x01\x02')  # the last record's central entry: data/0
    raw[central + 20:central + 28] = struct.pack('<LL', 1 << 30, 1 << 30)
    (tmp_path / 'long.pth').write_bytes(bytes(raw))
    refused(tmp_path / 'long.pth', ResourceLimitError, match='declares 1073741824 bytes')


def test_ambiguous_central_directory_is_refused(tmp_path):
    """A zip64 end record pointing one byte off: Python's zipfile compensates (and would
    check other records than torch's miniz reads), so the file is refused."""
    raw = bytearray(Path(save(small_checkpoint(), tmp_path / 'ok.pth')).read_bytes())
    end64 = raw.rfind(b'PK\x06\x06')
    offset, = struct.unpack('<Q', raw[end64 + 48:end64 + 56])
    raw[end64 + 48:end64 + 56] = struct.pack('<Q', offset + 1)
    (tmp_path / 'off.pth').write_bytes(bytes(raw))
    refused(tmp_path / 'off.pth', CorruptCheckpointError, match='ambiguous')


def test_tar_checkpoints_are_refused_before_torch_reads_their_headers(tmp_path):
    import tarfile
    with tarfile.open(tmp_path / 'old.pth', 'w', format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo('storages')
        info.size, info.pax_headers = 3, {'comment': 'x'}
        archive.addfile(info, io.BytesIO(b'abc'))
    refused(tmp_path / 'old.pth', CorruptCheckpointError, match='tar archive')


def test_overlapping_zip_records_are_refused(tmp_path):
    """Two names for the same stored bytes (a record loaded twice from one copy)."""
    good = stored_records(storage_pickle(4, legacy=False))
    write_zip(tmp_path / 'x.pth', good)
    raw = (tmp_path / 'x.pth').read_bytes()
    start = raw.rfind(b'PK\x01\x02')
    end = raw.rfind(b'PK\x05\x06')
    alias = bytearray(raw[start:end])  # the central entry of data/0, renamed data/1
    alias[-1:] = b'1'
    count, size, offset = len(good) + 1, end - raw.find(b'PK\x01\x02') + len(alias), \
        raw.find(b'PK\x01\x02')
    eocd = struct.pack('<4s4H2LH', b'PK\x05\x06', 0, 0, count, count, size, offset, 0)
    (tmp_path / 'x.pth').write_bytes(raw[:end] + bytes(alias) + eocd)
    refused(tmp_path / 'x.pth', ResourceLimitError, match='overlap')


def test_legacy_storages_are_bounded_by_the_bytes_after_the_pickles(tmp_path):
    write_legacy(tmp_path / 'ok.pth', storage_pickle(4, legacy=True), [(4, bytes(4))])
    assert load_checkpoint_file(str(tmp_path / 'ok.pth'))['state_dict']['w'].numel() == 4
    write_legacy(tmp_path / 'big.pth', storage_pickle(64, legacy=True), [(64, bytes(4))])
    text = refused(tmp_path / 'big.pth', ResourceLimitError, match='64 bytes in all')
    assert 'only 12 bytes' in text
    truncated = (tmp_path / 'ok.pth').read_bytes()[:120]
    (tmp_path / 'cut.pth').write_bytes(truncated)
    refused(tmp_path / 'cut.pth', CorruptCheckpointError)


def test_pickle_level_allocations_are_refused(tmp_path):
    for name, value in (
            ('bytearray', Reduce(bytearray, (1 << 40,))),
            ('tensor', Reduce(torch.Tensor, (1 << 20, 1 << 20))),
            ('typed_tensor', Reduce(torch.FloatTensor, (1 << 40,))),
            ('qtensor', Reduce(torch._utils._rebuild_qtensor, (None, 0, (1 << 40,), (1,),
                                                                 None, False, None)))):
        pickle_checkpoint(tmp_path / f'{name}.pth', pickle.dumps({'meta': value}, protocol=2))
        refused(tmp_path / f'{name}.pth', ResourceLimitError)


def test_opcodes_the_unpickler_does_not_allow_are_refused(tmp_path):
    pickle_checkpoint(tmp_path / 'p4.pth', pickle.dumps(small_checkpoint(), protocol=4))
    refused(tmp_path / 'p4.pth', UnsafeCheckpointError, match='opcode')


def test_undecodable_persistent_id_is_refused(tmp_path):
    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ('storage', torch.ByteStorage, '0', 'cpu', obj.numel) \
                if isinstance(obj, StoragePid) else None
    for numel in (-1, 'four', 2.0):
        buf = io.BytesIO()
        Pickler(buf, protocol=2).dump({'meta': StoragePid('0', numel, False)})
        pickle_checkpoint(tmp_path / 'pid.pth', buf.getvalue())
        refused(tmp_path / 'pid.pth', CorruptCheckpointError, match='persistent id')


def test_prescan_refuses_lookups_and_ids_before_torch_runs_them(tmp_path):
    """A getattr other than HistoryBuffer's methods, and a persistent id that is not a storage
    (torch hands its first item to ``_maybe_decode_ascii``), are refused by the scan."""
    from mmvrwkv.engine.checkpoint.prescan import prescan_checkpoint

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return (obj.key,) if isinstance(obj, StoragePid) else None
    cases = {'refused getattr(torch.serialization._get_layout': pickle.dumps(
        {'x': Reduce(getattr, (torch.serialization._get_layout, '__globals__'))}, protocol=2)}
    buf = io.BytesIO()
    Pickler(buf, protocol=2).dump({'meta': StoragePid("open('x') or 'storage'", 0, False)})
    cases['is not a storage reference'] = buf.getvalue()
    for match, data in cases.items():
        pickle_checkpoint(tmp_path / 'x.pth', data)
        with open(tmp_path / 'x.pth', 'rb') as f, pytest.raises(UnsafeCheckpointError,
                                                                match=re.escape(match)):
            prescan_checkpoint(f, str(tmp_path / 'x.pth'))


def test_real_checkpoint_passes_the_prescan(real_checkpoint, tmp_path):
    from mmvrwkv.engine.checkpoint.prescan import prescan_checkpoint
    with open(real_checkpoint, 'rb') as f:
        prescan_checkpoint(f, real_checkpoint)
        assert f.tell() == 0
    legacy = save(torch.load(real_checkpoint, weights_only=False), tmp_path / 'legacy.pth',
                  legacy=True)
    assert load_checkpoint_file(legacy)['meta']['epoch'] == 1



# ----------------------------------------------------------------------------- computed sizes

NEW_ALLOCATIONS = ('alloc_codecs_doubling', 'alloc_nested_rebuild', 'alloc_typed_storage_view',
                   'alloc_legacy_view_resize')


@pytest.mark.parametrize('name', NEW_ALLOCATIONS)
def test_computed_allocations_ask_the_old_loader_for_1_gib(name, tmp_path):
    """Each of these small files makes torch's weights-only loader (without our gate) allocate
    1 GiB (a memory-limited child reports the failed allocation)."""
    payload = next(p for p in PAYLOADS if p.name == name)
    path, marker = tmp_path / 'evil.pth', tmp_path / 'MARKER'
    payload.build(path, marker, tmp_path / 'victim', '')
    assert path.stat().st_size < 4096
    payload.unprotected(path, marker, tmp_path / 'victim')
    assert marker.exists(), name


def prescan_refuses(tmp_path, value, error, match):
    """``{'meta': value}`` (protocol 2) is refused by the prescan with ``error``."""
    from mmvrwkv.engine.checkpoint.prescan import prescan_checkpoint
    pickle_checkpoint(tmp_path / 'x.pth', pickle.dumps({'meta': value}, protocol=2))
    with open(tmp_path / 'x.pth', 'rb') as f, pytest.raises(error, match=re.escape(match)):
        prescan_checkpoint(f, str(tmp_path / 'x.pth'))
    refused(tmp_path / 'x.pth', CheckpointError)


def test_codecs_encode_only_makes_bytes_from_a_string_of_the_file(tmp_path):
    import _codecs
    for value in (HexEncoded(b'ab'), Reduce(_codecs.encode, ('ab', 'hex')),
                  Reduce(_codecs.encode, ('ab', 'utf-16')), Reduce(_codecs.encode, ('ab',)),
                  Reduce(_codecs.encode, (Reduce(complex, (1, 2)), 'latin1'))):
        prescan_refuses(tmp_path, value, ResourceLimitError, '_codecs.encode(')
    # bytes as protocol 2 writes them load (memoised texts included)
    data = {'a': b'\x00\xffabc', 'b': b'\x00\xffabc', 'c': b''}
    path = save(small_checkpoint(**data), tmp_path / 'ok.pth')
    meta = load_checkpoint_file(path)['meta']
    assert {k: meta[k] for k in data} == data


def test_codecs_stand_in_refuses_other_codecs_without_the_prescan(tmp_path):
    """Behind the prescan, the unpickler itself only has the narrow ``_codecs.encode`` while
    our loader runs (in torch's default table, which it reads first); torch's own is back
    afterwards."""
    import _codecs
    from torch._weights_only_unpickler import _get_allowed_globals
    pickle_checkpoint(tmp_path / 'hex.pth', pickle.dumps({'meta': HexEncoded(b'ab')}, protocol=2))
    with unpickling.stand_ins_registered():
        assert _get_allowed_globals()['_codecs.encode'] is unpickling._latin1_bytes
        with pytest.raises(unpickling.StandInRefusal, match="only \\(text, 'latin1'\\)"):
            torch.load(tmp_path / 'hex.pth', weights_only=True)
    assert _get_allowed_globals()['_codecs.encode'] is _codecs.encode
    assert unpickling._latin1_bytes('a\xff', 'latin1') == b'a\xff'


def rebuild_from_type(func, args, state=None, new_type=torch.Tensor):
    return Reduce(torch._tensor._rebuild_from_type_v2, (func, new_type, args, state))


def test_rebuild_from_type_takes_only_torch_helpers_and_no_state(tmp_path):
    rebuild = torch._tensor._rebuild_from_type_v2
    nested = rebuild_from_type(rebuild, (torch.FloatTensor, torch.Tensor, (1 << 28,), {}), {})
    prescan_refuses(tmp_path, nested, ResourceLimitError, 'with the function '
                    'torch._tensor._rebuild_from_type_v2')
    prescan_refuses(tmp_path, rebuild_from_type(torch.FloatTensor, (8,)), ResourceLimitError,
                    'torch.FloatTensor(...)')
    prescan_refuses(tmp_path, rebuild_from_type(OrderedDict, ()), ResourceLimitError,
                    'with the function collections.OrderedDict')
    tensor = torch.arange(3.)
    tensor.note = 'x'  # torch.save writes _rebuild_from_type_v2(..., {'note': 'x'})
    parameter = torch.nn.Parameter(torch.arange(3.))
    parameter.note = 'x'  # _rebuild_parameter_with_state(..., {'note': 'x'})
    from mmvrwkv.engine.checkpoint.prescan import prescan_checkpoint
    for value, match in ((tensor, 'the state a dict of 1 item'),
                         (parameter, '_rebuild_parameter_with_state is given the state')):
        path = save({'state_dict': {'w': value}}, tmp_path / 'attr.pth')
        with open(path, 'rb') as f, pytest.raises(UnsafeCheckpointError, match=match):
            prescan_checkpoint(f, path)
        refused(path, match=match)


def test_rebuild_from_type_state_cannot_set_attributes(tmp_path):
    """The state of ``_rebuild_from_type_v2`` (``setattr`` on the result): only None or an
    empty dict that stays empty; a type other than Tensor / Parameter is refused."""
    inner = (StoragePid('0', 4, False), 0, (4,), (1,), False, OrderedDict())

    def dumped(value):
        buf = io.BytesIO()
        PidPickler(buf, protocol=2).dump({'state_dict': {'w': value}})
        return buf.getvalue()

    from mmvrwkv.engine.checkpoint.prescan import prescan_checkpoint
    cases = {
        'the state a dict of 1 item': rebuild_from_type(torch._utils._rebuild_tensor_v2,
                                                        inner, {'_built': True}),
        'given the state (': rebuild_from_type(torch._utils._rebuild_tensor_v2, inner,
                                              ({}, {'_value': 1})),
        'makes a numpy.dtype': rebuild_from_type(torch._utils._rebuild_tensor_v2, inner,
                                                 new_type=np.dtype),
    }
    for match, value in cases.items():
        write_zip(tmp_path / 'x.pth', stored_records(dumped(value)))
        with open(tmp_path / 'x.pth', 'rb') as f, pytest.raises(UnsafeCheckpointError,
                                                                match=re.escape(match)):
            prescan_checkpoint(f, str(tmp_path / 'x.pth'))
    for state_ok in (None, {}):
        value = rebuild_from_type(torch._utils._rebuild_tensor_v2, inner, state_ok)
        write_zip(tmp_path / 'ok.pth', stored_records(dumped(value)))
        with open(tmp_path / 'ok.pth', 'rb') as f:
            prescan_checkpoint(f, str(tmp_path / 'ok.pth'))


def test_a_dict_handed_to_a_rebuild_helper_stays_empty(tmp_path):
    """Backward hooks (kept by the tensor) and a state, filled by SETITEM after the call."""
    from mmvrwkv.engine.checkpoint.prescan import prescan_checkpoint
    hooks = OrderedDict()
    tensor = Reduce(torch._utils._rebuild_tensor_v2,
                    (StoragePid('0', 4, False), 0, (4,), (1,), False, hooks))
    buf = io.BytesIO()
    PidPickler(buf, protocol=2).dump({'state_dict': {'w': tensor}})
    raw = buf.getvalue()
    # append ``top['x'] = hooks`` with ``hooks['a'] = 1`` after the tensor (BINGET its slot)
    ops = list(pickletools_ops(raw))
    after = ops_after(ops, 'collections OrderedDict')  # GLOBAL, BINPUT, ..., REDUCE, BINPUT
    reduce_at = next(i for i, (name, _) in enumerate(after) if name == 'REDUCE')
    slot = after[reduce_at + 1][1]
    assert after[reduce_at + 1][0] == 'BINPUT'
    tail = op_str('x') + b'h' + bytes([slot]) + op_str('a') + op_int(1) + b'ss'
    patched = raw[:-1] + tail + b'.'  # (the top-level dict is on the stack before STOP)
    write_zip(tmp_path / 'x.pth', stored_records(patched))
    with open(tmp_path / 'x.pth', 'rb') as f, pytest.raises(
            UnsafeCheckpointError, match='adds items to the backward hooks'):
        prescan_checkpoint(f, str(tmp_path / 'x.pth'))
    hooked = Reduce(torch._utils._rebuild_tensor_v2,
                    (StoragePid('0', 4, False), 0, (4,), (1,), False, {'a': torch.device}))
    buf = io.BytesIO()
    PidPickler(buf, protocol=2).dump({'state_dict': {'w': hooked}})
    write_zip(tmp_path / 'h.pth', stored_records(buf.getvalue()))
    refused(tmp_path / 'h.pth', UnsafeCheckpointError, match='backward hooks')


def pickletools_ops(raw):
    import pickletools
    for opcode, arg, _ in pickletools.genops(raw):
        yield opcode.name, arg


def ops_after(ops, global_arg):
    start = next(i for i, (name, arg) in enumerate(ops) if arg == global_arg)
    return ops[start:]


def test_tensors_are_built_only_over_the_files_storages_and_inside_them(tmp_path):
    for storage_call in (Reduce(torch.storage.TypedStorage, (1,)),
                         Reduce(torch.UntypedStorage, (1 << 30,))):
        value = Reduce(torch._utils._rebuild_tensor_v2,
                       (storage_call, 0, (8,), (1,), False, OrderedDict()))
        prescan_refuses(tmp_path, value, ResourceLimitError, 'torch.storage.')
    prescan_refuses(tmp_path, Reduce(torch._utils._rebuild_tensor_v2,
                                     (Reduce(complex, (1, 0)), 0, (8,), (1,), False,
                                      OrderedDict())),
                    ResourceLimitError, 'is given <a computed value> as its storage')
    # a view past its storage: zip (torch refuses, not resizable) and legacy (resizable)
    for offset, size, stride in ((0, (5,), (1,)), (1, (4,), (1,)), (0, (2, 2), (3, 1))):
        tensor = Reduce(torch._utils._rebuild_tensor_v2,
                        (StoragePid('0', 4, False), offset, size, stride, False, OrderedDict()))
        buf = io.BytesIO()
        PidPickler(buf, protocol=2).dump({'state_dict': {'w': tensor}})
        write_zip(tmp_path / 'zip.pth', stored_records(buf.getvalue()))
        refused(tmp_path / 'zip.pth', ResourceLimitError, match='which holds 4')
    write_legacy(tmp_path / 'leg.pth', storage_pickle(4, legacy=True, shown=5), [(4, bytes(4))])
    refused(tmp_path / 'leg.pth', ResourceLimitError, match='spans 5 bytes')
    # a shape that fits exactly, and an empty one, load
    for size, stride in (((2, 2), (2, 1)), ((0, 9), (9, 1))):
        tensor = Reduce(torch._utils._rebuild_tensor_v2,
                        (StoragePid('0', 4, False), 0, size, stride, False, OrderedDict()))
        buf = io.BytesIO()
        PidPickler(buf, protocol=2).dump({'state_dict': {'w': tensor}})
        write_zip(tmp_path / 'ok.pth', stored_records(buf.getvalue()))
        assert load_checkpoint_file(str(tmp_path / 'ok.pth'))['state_dict']['w'].shape == size


def test_build_on_a_tensor_is_refused(tmp_path):
    """``BUILD`` on a rebuilt tensor is ``Tensor.set_(*state)`` (a legacy storage is resized
    to the view); torch.save never writes it."""
    tensor = Reduce(torch._utils._rebuild_tensor_v2,
                    (StoragePid('0', 4, False), 0, (1,), (1,), False, OrderedDict()),
                    (StoragePid('0', 4, False), 0, (1 << 30,), (1,)))
    buf = io.BytesIO()
    PidPickler(buf, protocol=2).dump({'state_dict': {'w': tensor}})
    write_zip(tmp_path / 'z.pth', stored_records(buf.getvalue()))
    refused(tmp_path / 'z.pth', UnsafeCheckpointError, match='BUILD')


def test_stand_ins_cannot_be_marked_built_from_outside():
    """torch sets attributes from the file with ``setattr`` (``_set_obj_state``) or through
    ``__dict__``: a stand-in has no ``__dict__`` and refuses ``setattr``."""
    stand_ins = [unpickling._DtypeStandIn('f8', False, True), unpickling._ArrayStandIn._blank(),
                 unpickling._HistoryBufferStandIn()]
    for stand_in in stand_ins:
        assert not hasattr(stand_in, '__dict__')
        for attempt in (lambda: setattr(stand_in, '_built', True),
                        lambda: torch._utils._set_obj_state(stand_in, {'_value': 1}),
                        lambda: torch._utils._set_obj_state(stand_in, (None, {'_built': True})),
                        lambda: delattr(stand_in, '_built')):
            with pytest.raises(unpickling.StandInRefusal, match='attribute'):
                attempt()
        with pytest.raises(unpickling.StandInRefusal, match='before its BUILD'):
            stand_in.value()
