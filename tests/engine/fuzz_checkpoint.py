"""Fuzz driver for mmvrwkv's checkpoint loader; ``test_checkpoint_fuzz.py`` runs it in a
subprocess (a crash or a hang must not take pytest down with it).

Each case mutates a real Runner checkpoint (the *seed*) once, writes it to one fixed path and
loads it with :func:`mmvrwkv.engine.load_checkpoint_file`. The oracle: the case either loads to
an object identical to what the unmutated seed loads to (same types, keys and values; tensors
and numpy arrays equal in dtype, shape and bytes), or it is refused with a ``CheckpointError``
whose message names the file. Everything else is a failure: another exception, a different
object, a signal, a hang, an allocation the address-space limit stops, a peak RSS past the
limit, a file appearing in the working directory or beside the case file, a changed
``HistoryBuffer`` method table.

Mutators (``MUTATORS``; case ``n`` uses ``MUTATORS[n % len]`` and ``random.Random`` seeded
from ``n``, so one case number reproduces one file):

- ``bytes.*``: raw bytes anywhere, or inside the pickle, the zip headers or the tensor data;
- ``pickle.*``: one opcode or argument of ``data.pkl`` (found with ``pickletools.genops``)
  changed, the pickle re-zipped with torch's own writer and the other records kept;
- ``zip.*``: header fields, record names, compression, duplicate, missing, swapped and
  reordered records;
- ``content.*``: one value of the unpickled seed changed (an optimizer tensor, a numpy array
  of a ``HistoryBuffer``, a ``meta`` value, ...) and saved again with ``torch.save``.

Each mutant is written to one path, CASE_PATH, and loaded from there, like the unmutated
seed for the reference: the loader judges restored paths against the file's folder, so
CASE_PATH decides whether the checkpoint sits in its own run folder (resume) or elsewhere
(``load_from`` of a copied file).

Output: one JSON line per case in ``--results`` (written with ``os.write`` on an append-only
descriptor, so a crash keeps what was written), and a ``start`` line in ``--progress`` before
each case so that the caller can name the case that killed the process.

Run by hand: ``python tests/engine/fuzz_checkpoint.py SEED CASE_PATH --first 0 --count 50``
(``--case N`` for one case with its record printed, ``--write-only`` to keep the mutated file
without loading it).
"""
import argparse
import collections
import copy
import faulthandler
import functools
import io
import json
import logging
import math
import os
import os.path as osp
import pickle
import pickletools
import random
import resource
import signal
import struct
import sys
import traceback
import warnings
import zipfile
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple



# ============================================================================ seed model

class Op(NamedTuple):
    """One pickle opcode of data.pkl: ``data[pos:end]`` encodes it."""
    code: pickletools.OpcodeInfo
    arg: Any
    pos: int
    end: int


class ZipEntry(NamedTuple):
    """A record of the seed zip: its name, bytes and where its headers lie in the file."""
    name: str
    data: bytes
    local: int      # offset of the local header
    central: int    # offset of the central directory entry
    data_start: int  # offset of the data in the file


class Seed:
    """The unmutated checkpoint, parsed once: bytes, zip layout, pickle opcodes, content."""

    def __init__(self, raw: bytes, content: Any) -> None:
        self.raw = raw
        self.content = content  # unpickled, before the loader's post-load steps
        zf = zipfile.ZipFile(io.BytesIO(raw))
        self.prefix = zf.infolist()[0].filename.split('/', 1)[0]
        self.entries = _parse_zip(raw, zf)
        self.records = [(e.name.split('/', 1)[1], e.data) for e in self.entries]
        self.pickle = dict(self.records)['data.pkl']
        self.ops = _genops(self.pickle)
        self.memo_globals = _memo_globals(self.ops)
        self.eocd, self.zip64_eocd = raw.rfind(b'PK\x05\x06'), raw.rfind(b'PK\x06\x06')
        self.data_keys = sorted(
            (n[len('data/'):] for n, _ in self.records if n.startswith('data/')),
            key=lambda k: (len(k), k))
        self.data_owner = _data_owners(self.records, content)


def _parse_zip(raw: bytes, zf: zipfile.ZipFile) -> List[ZipEntry]:
    """Where each record's local header, central entry and data lie in ``raw``."""
    entries, pos = [], _central_directory_offset(raw)
    for info in zf.infolist():
        assert raw[pos:pos + 4] == b'PK\x01\x02', 'central directory not where expected'
        name_len, extra_len, comment_len = struct.unpack_from('<HHH', raw, pos + 28)
        local = info.header_offset
        lname, lextra = struct.unpack_from('<HH', raw, local + 26)
        data_start = local + 30 + lname + lextra
        entries.append(ZipEntry(info.filename, zf.read(info), local, pos, data_start))
        pos += 46 + name_len + extra_len + comment_len
    return entries


def _central_directory_offset(raw: bytes) -> int:
    (offset,) = struct.unpack_from('<I', raw, raw.rfind(b'PK\x05\x06') + 16)
    if offset == 0xFFFFFFFF:  # zip64 (torch writes its end records)
        (offset,) = struct.unpack_from('<Q', raw, raw.rfind(b'PK\x06\x06') + 48)
    return offset


def _genops(data: bytes) -> List[Op]:
    ops, found = [], list(pickletools.genops(data))
    for i, (code, arg, pos) in enumerate(found):
        end = found[i + 1][2] if i + 1 < len(found) else pos + 1
        ops.append(Op(code, arg, pos, end))
    return ops


def _memo_globals(ops: Sequence[Op]) -> Dict[int, str]:
    """Memo index -> 'module name' for every GLOBAL that is put in the memo."""
    memo = {}
    for prev, op in zip(ops, ops[1:]):
        if prev.code.name == 'GLOBAL' and op.code.name in ('BINPUT', 'LONG_BINPUT', 'PUT'):
            memo[int(op.arg)] = prev.arg
    return memo


def global_at(seed: Seed, i: int) -> Optional[str]:
    """The global that op ``i`` pushes ('module name'), directly or from the memo."""
    op = seed.ops[i]
    if op.code.name == 'GLOBAL':
        return op.arg
    if op.code.name in ('BINGET', 'LONG_BINGET', 'GET'):
        return seed.memo_globals.get(int(op.arg))
    return None


def _data_owners(records: Sequence[Tuple[str, bytes]], content: Any) -> Dict[str, str]:
    """data/<key> -> the top-level part of the checkpoint whose tensor holds those bytes."""
    import torch
    by_bytes: Dict[bytes, set] = collections.defaultdict(set)
    for path, value in walk(content):
        if isinstance(value, torch.Tensor) and value.numel():
            data = value.detach().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
            by_bytes[data].add(str(path[0][1]) if path else '?')
    owners = {}
    for name, data in records:
        if name.startswith('data/'):
            parts = by_bytes.get(data, set())
            owners[name[len('data/'):]] = parts.pop() if len(parts) == 1 else 'shared'
    return owners


# ============================================================================ walking content

PathT = Tuple[Tuple[str, Any], ...]


def walk(obj: Any, path: PathT = ()) -> Any:
    """Yield ``(path, leaf)`` for every leaf of a loaded checkpoint (dicts, lists, tuples and
    object attributes are containers; path items are ('key'|'idx'|'attr', name))."""
    import torch
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk(v, path + (('key', k),))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from walk(v, path + (('idx', i),))
    elif not isinstance(obj, (torch.Tensor, str, bytes, int, float, complex, type(None))) \
            and hasattr(obj, '__dict__') and type(obj).__module__.startswith('mmengine'):
        for k, v in vars(obj).items():
            yield from walk(v, path + (('attr', k),))
    else:
        yield path, obj


def get_at(root: Any, path: PathT) -> Any:
    for kind, name in path:
        root = getattr(root, name) if kind == 'attr' else root[name]
    return root


def set_at(root: Any, path: PathT, value: Any) -> Any:
    """Return ``root`` with the leaf at ``path`` replaced (tuples are rebuilt)."""
    if not path:
        return value
    (kind, name), rest = path[0], path[1:]
    child = getattr(root, name) if kind == 'attr' else root[name]
    new_child = set_at(child, rest, value)
    if kind == 'attr':
        setattr(root, name, new_child)
    elif isinstance(root, tuple):
        root = root[:name] + (new_child,) + root[name + 1:]
    else:
        root[name] = new_child
    return root


def path_text(path: PathT) -> str:
    return '.'.join(str(name) for _, name in path) or '<root>'


# ============================================================================ pickle assembly

def encode_arg(desc: str, value: Any) -> bytes:
    """Encode an opcode argument the way ``pickletools`` describes it (out-of-range values
    wrap around, so that any mutation still yields bytes)."""
    if desc in _FIXED_INTS:
        fmt, mod = _FIXED_INTS[desc]
        value = int(value) % mod
        if fmt == '<i' and value >= 1 << 31:
            value -= 1 << 32
        return struct.pack(fmt, value)
    if desc in ('long1', 'long4'):
        body = pickle.encode_long(int(value))
        return (bytes([len(body) & 0xFF]) if desc == 'long1'
                else struct.pack('<i', len(body))) + body
    if desc == 'float8':
        return struct.pack('>d', float(value))
    if desc in _LENGTH_PREFIXED:
        fmt, encoding = _LENGTH_PREFIXED[desc]
        body = value if isinstance(value, (bytes, bytearray)) else (
            str(value).encode(encoding, 'surrogatepass' if encoding == 'utf-8' else 'replace'))
        size = len(body) % (256 if fmt == '<B' else 1 << 32 if fmt in ('<I', '<i') else 1 << 64)
        if fmt == '<i' and size >= 1 << 31:
            size -= 1 << 32
        return struct.pack(fmt, size) + bytes(body)
    if desc == 'decimalnl_short':
        if value is True or value is False:
            return b'01\n' if value else b'00\n'
        return b'%d\n' % int(value)
    if desc == 'decimalnl_long':
        return b'%dL\n' % int(value)
    if desc == 'floatnl':
        return repr(float(value)).encode() + b'\n'
    if desc == 'stringnl':
        return repr(str(value)).encode('ascii', 'backslashreplace') + b'\n'
    if desc == 'stringnl_noescape':
        return str(value).encode('ascii', 'replace') + b'\n'
    if desc == 'stringnl_noescape_pair':
        module, _, name = str(value).partition(' ')
        return f'{module}\n{name}\n'.encode('ascii', 'replace')
    if desc == 'unicodestringnl':
        return str(value).encode('raw-unicode-escape') + b'\n'
    raise ValueError(f'cannot encode argument type {desc}')


_FIXED_INTS = {'uint1': ('<B', 1 << 8), 'uint2': ('<H', 1 << 16), 'int4': ('<i', 1 << 32),
               'uint4': ('<I', 1 << 32), 'uint8': ('<Q', 1 << 64)}
_LENGTH_PREFIXED = {
    'string1': ('<B', 'latin-1'), 'string4': ('<i', 'latin-1'),
    'bytes1': ('<B', 'latin-1'), 'bytes4': ('<I', 'latin-1'), 'bytes8': ('<Q', 'latin-1'),
    'bytearray8': ('<Q', 'latin-1'), 'unicodestring1': ('<B', 'utf-8'),
    'unicodestring4': ('<I', 'utf-8'), 'unicodestring8': ('<Q', 'utf-8')}
OPCODES = {op.name: op for op in pickletools.opcodes}


def encode_op(name: str, arg: Any = None) -> bytes:
    code = OPCODES[name]
    body = code.code.encode('latin-1')
    return body + (encode_arg(code.arg.name, arg) if code.arg is not None else b'')


def splice(seed: Seed, start: int, stop: int, new: bytes) -> bytes:
    """data.pkl with ops ``start..stop-1`` replaced by the bytes ``new``."""
    ops, data = seed.ops, seed.pickle
    begin = ops[start].pos if start < len(ops) else len(data)
    end = ops[stop - 1].end if stop > start else begin
    return data[:begin] + new + data[end:]


def int_for(value: int) -> bytes:
    """The smallest opcode that pushes the int ``value``."""
    if 0 <= value < 256:
        return encode_op('BININT1', value)
    if 0 <= value < 65536:
        return encode_op('BININT2', value)
    if -(1 << 31) <= value < 1 << 31:
        return encode_op('BININT', value)
    return encode_op('LONG1', value)


# ============================================================================ writing

def torch_zip(records: Sequence[Tuple[str, bytes]]) -> bytes:
    """A zip written by torch's own writer (alignment, CRCs) with these records, in order."""
    import torch
    buf = io.BytesIO()
    writer = torch._C.PyTorchFileWriter(buf)
    for name, data in records:
        writer.write_record(name, data, len(data))
    writer.write_end_of_file()
    return buf.getvalue()


def plain_zip(entries: Sequence[Tuple[str, bytes]], method: int = zipfile.ZIP_STORED,
              methods: Optional[Dict[int, int]] = None) -> bytes:
    """A zip written by Python's zipfile (no alignment; duplicate names allowed); names are
    full names (with the archive prefix)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with zipfile.ZipFile(buf, 'w') as zf:
            for i, (name, data) in enumerate(entries):
                info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
                info.compress_type = (methods or {}).get(i, method)
                zf.writestr(info, data)
    return buf.getvalue()


def with_pickle(seed: Seed, pkl: bytes) -> bytes:
    return torch_zip([(n, pkl if n == 'data.pkl' else d) for n, d in seed.records])


def patch(raw: bytes, offset: int, fmt: str, value: int) -> bytes:
    size = struct.calcsize(fmt)
    value %= 1 << (8 * size)
    return raw[:offset] + struct.pack(fmt, value) + raw[offset + size:]


# ============================================================================ mutators

class Mutant(NamedTuple):
    data: bytes
    detail: str


Mutator = Callable[[Seed, random.Random], Mutant]
MUTATORS: List[Tuple[str, Mutator]] = []


def mutator(name: str, weight: int = 1) -> Callable[[Mutator], Mutator]:
    def register(fn: Mutator) -> Mutator:
        MUTATORS.extend([(name, fn)] * weight)
        return fn
    return register


#: Integers that break sizes, offsets, strides and counts.
SPECIAL_INTS = [0, 1, -1, 2, 3, 7, 8, 255, 256, 65535, 65536, 1 << 17, (1 << 31) - 1, 1 << 31,
                -(1 << 31), (1 << 32) - 1, 1 << 32, 1 << 40, (1 << 62), -(1 << 62), 1 << 64]


def new_int(rng: random.Random, value: int) -> int:
    choice = rng.randrange(4)
    if choice == 0:
        return value + rng.choice([-1, 1])
    if choice == 1:
        return value ^ (1 << rng.randrange(32))
    if choice == 2:
        return value * rng.choice([2, 16, 1 << 10, 1 << 20])
    return rng.choice(SPECIAL_INTS)


def new_str(rng: random.Random, value: str) -> str:
    choice = rng.randrange(7)
    if choice == 0 or not value:
        return rng.choice(['', 'state_dict', 'meta', 'config', 'cfg', 'optimizer', 'best_ckpt',
                           'last_ckpt', 'keep_ckpt_ids', '_statistics_methods', 'mean',
                           '__class__', '../x', '/etc/passwd', 'cuda', 'meta', 'f8', '0'])
    i = rng.randrange(len(value))
    if choice == 1:
        return value[:i] + chr((ord(value[i]) + rng.randrange(1, 128)) % 0x250) + value[i + 1:]
    if choice == 2:
        return value[:i]
    if choice == 3:
        return value + value[:rng.randrange(1, 64)]
    if choice == 4:
        return value[:i] + value[i + 1:]
    if choice == 5:
        return value[:i] + '\udcff' + value[i + 1:]  # a lone surrogate
    return value * rng.choice([2, 100])


def new_float(rng: random.Random, value: float) -> float:
    return rng.choice([math.nan, math.inf, -math.inf, -0.0, 0.0, 1e308, -value,
                       math.nextafter(value, math.inf), value * 2, 5e-324])


# ---------------------------------------------------------------------------- bytes

def _region(seed: Seed, rng: random.Random, where: str) -> Tuple[int, int]:
    if where == 'pickle':
        e = seed.entries[0]
        return e.data_start, e.data_start + len(e.data)
    if where == 'headers':
        e = rng.choice(seed.entries)
        spans = [(e.local, e.data_start), (e.central, e.central + 46 + len(e.name)),
                 (min(x for x in (seed.zip64_eocd, seed.eocd) if x >= 0), len(seed.raw))]
        return rng.choice(spans)
    if where == 'data':
        e = rng.choice([e for e in seed.entries if '/data/' in e.name and e.data])
        return e.data_start, e.data_start + len(e.data)
    return 0, len(seed.raw)


def _byte_mutation(seed: Seed, rng: random.Random, where: str) -> Mutant:
    lo, hi = _region(seed, rng, where)
    pos = rng.randrange(lo, max(hi, lo + 1))
    raw, kind = seed.raw, rng.choice(['flip', 'zero', 'ff', 'random', 'insert', 'delete',
                                      'truncate', 'duplicate'])
    if kind == 'flip':
        bit = rng.randrange(8)
        out = raw[:pos] + bytes([raw[pos] ^ (1 << bit)]) + raw[pos + 1:]
        return Mutant(out, f'{where}: flip bit {bit} at {pos}')
    if kind in ('zero', 'ff', 'random'):
        n = rng.choice([1, 1, 2, 4, 8, 64])
        fill = {'zero': b'\0' * n, 'ff': b'\xff' * n,
                'random': bytes(rng.randrange(256) for _ in range(n))}[kind]
        return Mutant(raw[:pos] + fill + raw[pos + n:], f'{where}: {n} bytes {kind} at {pos}')
    if kind == 'insert':
        n = rng.choice([1, 2, 7, 64, 4096])
        out = raw[:pos] + bytes(rng.randrange(256) for _ in range(n)) + raw[pos:]
        return Mutant(out, f'{where}: insert {n} bytes at {pos}')
    if kind == 'delete':
        n = rng.choice([1, 2, 7, 64, 4096])
        return Mutant(raw[:pos] + raw[pos + n:], f'{where}: delete {n} bytes at {pos}')
    if kind == 'duplicate':
        n = rng.choice([1, 4, 30, 256])
        return Mutant(raw[:pos] + raw[pos:pos + n] + raw[pos:],
                      f'{where}: repeat {n} bytes at {pos}')
    return Mutant(raw[:pos], f'{where}: truncate at {pos}')


@mutator('bytes.anywhere', 3)
def bytes_anywhere(seed: Seed, rng: random.Random) -> Mutant:
    return _byte_mutation(seed, rng, 'any')


@mutator('bytes.pickle', 3)
def bytes_pickle(seed: Seed, rng: random.Random) -> Mutant:
    return _byte_mutation(seed, rng, 'pickle')


@mutator('bytes.headers', 3)
def bytes_headers(seed: Seed, rng: random.Random) -> Mutant:
    return _byte_mutation(seed, rng, 'headers')


@mutator('bytes.tensor_data', 2)
def bytes_tensor_data(seed: Seed, rng: random.Random) -> Mutant:
    return _byte_mutation(seed, rng, 'data')


# ---------------------------------------------------------------------------- pickle

_SAME_ARG: Dict[Optional[str], List[str]] = collections.defaultdict(list)
for _op in pickletools.opcodes:
    _SAME_ARG[_op.arg.name if _op.arg else None].append(_op.name)


def _pick_op(seed: Seed, rng: random.Random, names: Optional[Sequence[str]] = None) -> int:
    candidates = [i for i, op in enumerate(seed.ops) if names is None or op.code.name in names]
    return rng.choice(candidates)


@mutator('pickle.swap_opcode', 3)
def pickle_swap_opcode(seed: Seed, rng: random.Random) -> Mutant:
    """An opcode replaced by another with the same argument type (or by an argless one)."""
    i = _pick_op(seed, rng)
    op = seed.ops[i]
    desc = op.code.arg.name if op.code.arg else None
    if desc is None or rng.random() < 0.3:
        new_name = rng.choice(_SAME_ARG[None])
        new = encode_op(new_name)
    else:
        new_name = rng.choice(_SAME_ARG[desc])
        new = encode_op(new_name, op.arg)
    return Mutant(with_pickle(seed, splice(seed, i, i + 1, new)),
                  f'op {i} {op.code.name} -> {new_name}')


@mutator('pickle.equivalent_encoding', 2)
def pickle_equivalent_encoding(seed: Seed, rng: random.Random) -> Mutant:
    """The same value with another opcode (BININT1 as BININT, BINUNICODE as
    SHORT_BINUNICODE, BINPUT as LONG_BINPUT, ...): loads identically or is refused."""
    families = {'BININT1': ['BININT', 'BININT2', 'LONG1', 'INT', 'LONG'],
                'BININT2': ['BININT', 'LONG1', 'INT'], 'BININT': ['LONG1', 'LONG4', 'INT'],
                'BINUNICODE': ['SHORT_BINUNICODE', 'BINUNICODE8', 'UNICODE'],
                'BINPUT': ['LONG_BINPUT', 'PUT'], 'LONG_BINPUT': ['PUT'],
                'BINGET': ['LONG_BINGET', 'GET'], 'LONG_BINGET': ['GET'],
                'BINFLOAT': ['FLOAT'], 'NEWFALSE': ['INT'], 'NEWTRUE': ['INT'],
                'EMPTY_TUPLE': ['MARK+TUPLE'], 'EMPTY_DICT': ['MARK+DICT'],
                'EMPTY_LIST': ['MARK+LIST']}
    i = _pick_op(seed, rng, families)
    op = seed.ops[i]
    target = rng.choice(families[op.code.name])
    if op.code.name == 'BINUNICODE' and target == 'SHORT_BINUNICODE' \
            and len(op.arg.encode('utf-8', 'surrogatepass')) > 255:
        target = 'BINUNICODE8'
    if target.startswith('MARK+'):
        new = encode_op('MARK') + encode_op(target[len('MARK+'):])
    elif target == 'INT' and op.code.name in ('NEWFALSE', 'NEWTRUE'):
        new = encode_op('INT', op.code.name == 'NEWTRUE')
    else:
        new = encode_op(target, op.arg)
    return Mutant(with_pickle(seed, splice(seed, i, i + 1, new)),
                  f'op {i} {op.code.name} re-encoded as {target}')


@mutator('pickle.int_arg', 3)
def pickle_int_arg(seed: Seed, rng: random.Random) -> Mutant:
    i = _pick_op(seed, rng, ['BININT1', 'BININT2', 'BININT', 'LONG1', 'BINPUT', 'LONG_BINPUT',
                             'BINGET', 'LONG_BINGET', 'PROTO'])
    op = seed.ops[i]
    value = new_int(rng, int(op.arg))
    if op.code.name in ('BININT1', 'BININT2', 'BININT', 'LONG1'):
        new = int_for(value)
    elif op.code.name in ('BINPUT', 'LONG_BINPUT'):
        new = encode_op('BINPUT' if 0 <= value < 256 else 'LONG_BINPUT', value)
    elif op.code.name in ('BINGET', 'LONG_BINGET'):
        new = encode_op('BINGET' if 0 <= value < 256 else 'LONG_BINGET', value)
    else:
        new = encode_op(op.code.name, value)
    return Mutant(with_pickle(seed, splice(seed, i, i + 1, new)),
                  f'op {i} {op.code.name} {op.arg} -> {value}')


@mutator('pickle.str_arg', 3)
def pickle_str_arg(seed: Seed, rng: random.Random) -> Mutant:
    i = _pick_op(seed, rng, ['BINUNICODE', 'SHORT_BINUNICODE', 'BINUNICODE8'])
    op = seed.ops[i]
    value = new_str(rng, op.arg)
    return Mutant(with_pickle(seed, splice(seed, i, i + 1, encode_op(op.code.name, value))),
                  f'op {i} {op.code.name} {op.arg[:30]!r} -> {value[:30]!r}')


@mutator('pickle.float_arg', 1)
def pickle_float_arg(seed: Seed, rng: random.Random) -> Mutant:
    i = _pick_op(seed, rng, ['BINFLOAT'])
    op = seed.ops[i]
    value = new_float(rng, op.arg)
    return Mutant(with_pickle(seed, splice(seed, i, i + 1, encode_op('BINFLOAT', value))),
                  f'op {i} BINFLOAT {op.arg} -> {value}')


@mutator('pickle.length_field', 2)
def pickle_length_field(seed: Seed, rng: random.Random) -> Mutant:
    """Only the length prefix of a string argument changed: the rest of the pickle no
    longer lines up with the opcodes."""
    i = _pick_op(seed, rng, ['BINUNICODE', 'SHORT_BINUNICODE', 'BINUNICODE8', 'LONG1',
                             'SHORT_BINBYTES', 'BINBYTES', 'BINSTRING', 'SHORT_BINSTRING'])
    op = seed.ops[i]
    fmt = {'unicodestring4': '<I', 'unicodestring1': '<B', 'unicodestring8': '<Q',
           'long1': '<B', 'bytes1': '<B', 'bytes4': '<I', 'string4': '<i',
           'string1': '<B'}[op.code.arg.name]
    (size,) = struct.unpack_from(fmt, seed.pickle, op.pos + 1)
    value = new_int(rng, size)
    pkl = patch(seed.pickle, op.pos + 1, fmt, value)
    return Mutant(with_pickle(seed, pkl), f'op {i} {op.code.name} length {size} -> {value}')


@mutator('pickle.duplicate_op', 2)
def pickle_duplicate_op(seed: Seed, rng: random.Random) -> Mutant:
    i = _pick_op(seed, rng)
    op = seed.ops[i]
    chunk = seed.pickle[op.pos:op.end]
    return Mutant(with_pickle(seed, splice(seed, i, i + 1, chunk * 2)),
                  f'op {i} {op.code.name} duplicated')


@mutator('pickle.drop_op', 2)
def pickle_drop_op(seed: Seed, rng: random.Random) -> Mutant:
    i = _pick_op(seed, rng)
    return Mutant(with_pickle(seed, splice(seed, i, i + 1, b'')),
                  f'op {i} {seed.ops[i].code.name} dropped')


@mutator('pickle.insert_op', 2)
def pickle_insert_op(seed: Seed, rng: random.Random) -> Mutant:
    """A random opcode with a harmless argument inserted before op ``i``."""
    i = _pick_op(seed, rng)
    code = rng.choice(pickletools.opcodes)
    desc = code.arg.name if code.arg else None
    if desc is None:
        arg = None
    elif desc == 'stringnl_noescape_pair':
        arg = rng.choice(ALLOWED_GLOBALS + REFUSED_GLOBALS)
    elif desc in ('float8', 'floatnl'):
        arg = rng.choice([0.5, math.nan, 1e308])
    elif desc in ('stringnl', 'stringnl_noescape', 'unicodestringnl') or 'string' in desc:
        arg = rng.choice(['0', 'storage', 'cpu', 'mean', 'x' * 300])
    elif desc.startswith('bytes') or desc == 'bytearray8':
        arg = rng.choice([b'', b'\0' * 16])
    else:
        arg = rng.choice([0, 1, 7, 255, 1000, 1 << 20])
    new = encode_op(code.name, arg)
    return Mutant(with_pickle(seed, splice(seed, i, i, new)),
                  f'insert {code.name}({arg!r:.30}) before op {i}')


#: Globals a mutated pickle may name: allow-listed or harmless to call with the seed's
#: arguments (every one refused, or failing on those arguments, if the loader works).
ALLOWED_GLOBALS = [
    'collections OrderedDict', 'torch._utils _rebuild_tensor_v2', 'torch._utils _rebuild_parameter',
    'torch FloatStorage', 'torch DoubleStorage', 'torch LongStorage', 'torch HalfStorage',
    'torch BoolStorage', 'torch ByteStorage', 'torch BFloat16Storage', 'torch ComplexFloatStorage',
    'numpy._core.multiarray _reconstruct', 'numpy.core.multiarray _reconstruct',
    'numpy._core.multiarray scalar', 'numpy.core.multiarray scalar', 'numpy ndarray',
    'numpy dtype', 'numpy.dtypes Float64DType', 'numpy.dtypes VoidDType',
    'numpy.dtypes ObjectDType', 'numpy.dtypes StrDType',
    'mmengine.logging.history_buffer HistoryBuffer',
    'builtins getattr', '_codecs encode', 'builtins set', 'builtins frozenset',
    'builtins bytearray', 'builtins complex', 'builtins slice', 'builtins range',
    'torch device', 'torch Size', 'torch float32', 'torch._utils _rebuild_tensor',
    'torch._utils _rebuild_meta_tensor_no_storage', 'torch._tensor _rebuild_from_type_v2',
    'torch._utils _rebuild_wrapper_subclass', 'torch._utils _rebuild_qtensor',
    'torch._utils _rebuild_sparse_tensor', 'torch._utils _rebuild_device_tensor_from_numpy',
    'torch._utils _rebuild_nested_tensor', 'torch.nn.parameter Parameter', 'torch Tensor',
    'copyreg _reconstructor', 'builtins object', 'builtins type']
REFUSED_GLOBALS = [
    'builtins eval', 'builtins exec', 'builtins print', 'builtins open', 'builtins globals',
    'os getcwd', 'posix getpid', 'builtins __import__', 'torch.serialization _get_layout',
    'no_such_module thing', 'numpy.testing assert_equal', 'mmengine.config Config',
    'mmengine.logging.history_buffer HistoryBuffer.mean', 'builtins vars', 'builtins dir']


@mutator('pickle.global_name', 3)
def pickle_global_name(seed: Seed, rng: random.Random) -> Mutant:
    """A GLOBAL naming another allow-listed (or a harmless refused) callable."""
    i = _pick_op(seed, rng, ['GLOBAL'])
    name = rng.choice(ALLOWED_GLOBALS if rng.random() < 0.7 else REFUSED_GLOBALS)
    return Mutant(with_pickle(seed, splice(seed, i, i + 1, encode_op('GLOBAL', name))),
                  f'op {i} GLOBAL {seed.ops[i].arg!r} -> {name!r}')


def _persid_tuples(seed: Seed) -> List[List[int]]:
    """For every BINPERSID: the op indices of the items of its tuple
    ('storage', storage type, key, location, numel)."""
    out = []
    for i, op in enumerate(seed.ops):
        if op.code.name != 'BINPERSID' or seed.ops[i - 1].code.name not in (
                'BINPUT', 'LONG_BINPUT') or seed.ops[i - 2].code.name != 'TUPLE':
            continue
        items, j = [], i - 3
        while j >= 0 and seed.ops[j].code.name != 'MARK':
            if seed.ops[j].code.name not in ('BINPUT', 'LONG_BINPUT'):
                items.append(j)
            j -= 1
        if len(items) == 5:
            out.append(items[::-1])
    return out


@mutator('pickle.persistent_id', 4)
def pickle_persistent_id(seed: Seed, rng: random.Random) -> Mutant:
    """A tensor's persistent id: another key, numel, storage type or location."""
    items = rng.choice(_persid_tuples(seed))
    field = rng.choice(['key', 'key', 'numel', 'numel', 'type', 'location', 'tag'])
    if field == 'key':
        j = items[2]
        value = rng.choice([rng.choice(seed.data_keys), '9999', '-1', '../data/0', '', '0 ',
                            'data.pkl', '../../byteorder', str(len(seed.data_keys))])
        new = encode_op('BINUNICODE', value)
    elif field == 'numel':
        j = items[4]
        value = new_int(rng, int(seed.ops[j].arg) if seed.ops[j].code.name.startswith(
            'BININT') else 1)
        new = int_for(value)
    elif field == 'type':
        j = items[1]
        value = rng.choice([g for g in ALLOWED_GLOBALS if g.endswith('Storage')]
                           + ['torch UntypedStorage', 'torch QInt8Storage', 'numpy dtype'])
        new = encode_op('GLOBAL', value)
    elif field == 'location':
        j = items[3]
        value = rng.choice(['cuda', 'cuda:7', 'meta', 'mps', 'xla:0', '', 'cpu:1', 'bogus'])
        new = encode_op('BINUNICODE', value)
    else:
        j = items[0]
        value = rng.choice(['Storage', 'module', '', 'storage '])
        new = encode_op('BINUNICODE', value)
    return Mutant(with_pickle(seed, splice(seed, j, j + 1, new)),
                  f'persistent id at op {j}: {field} -> {value!r}')


def _rebuild_args(seed: Seed) -> List[List[int]]:
    """For every tensor: op indices of the ints after its BINPERSID (storage offset, sizes,
    strides), up to the requires_grad flag."""
    out = []
    for i, op in enumerate(seed.ops):
        if op.code.name != 'BINPERSID':
            continue
        ints, j = [], i + 1
        while j < len(seed.ops) and seed.ops[j].code.name not in ('NEWFALSE', 'NEWTRUE'):
            if seed.ops[j].code.name in ('BININT1', 'BININT2', 'BININT', 'LONG1'):
                ints.append(j)
            j += 1
        if ints:
            out.append(ints)
    return out


@mutator('pickle.tensor_geometry', 4)
def pickle_tensor_geometry(seed: Seed, rng: random.Random) -> Mutant:
    """A tensor's storage offset, a size or a stride (0: stride-0 expansion; huge sizes)."""
    ints = rng.choice(_rebuild_args(seed))
    j = rng.choice(ints)
    old = int(seed.ops[j].arg)
    value = rng.choice([0, 0, 1 << 17, 1 << 31, -1, old + 1, old - 1, old * 2, 1 << 40])
    which = ('offset' if j == ints[0] else 'size' if ints.index(j) <= len(ints) // 2
             else 'stride')
    return Mutant(with_pickle(seed, splice(seed, j, j + 1, int_for(value))),
                  f'tensor at op {ints[0]}: {which} (op {j}) {old} -> {value}')


def _global_refs(seed: Seed, suffix: str) -> List[int]:
    """Indices of the ops that push a global whose name ends with ``suffix``."""
    return [i for i in range(len(seed.ops)) if (global_at(seed, i) or '').endswith(suffix)]


def _next_where(seed: Seed, start: int, pred: Callable[[int], bool], limit: int = 80) -> int:
    for j in range(start, min(start + limit, len(seed.ops))):
        if pred(j):
            return j
    raise LookupError(f'pickle pattern not found after op {start}')


def _skip_put(seed: Seed, j: int) -> int:
    """``j``, or the op after it when ``j`` only puts the previous value in the memo."""
    return j + 1 if seed.ops[j].code.name.endswith('PUT') else j


def _numpy_dtype_target(seed: Seed, rng: random.Random, field: str) -> Tuple[int, bytes, Any]:
    """The dtype string of an ``np.dtype(...)`` call, or one item of its BUILD state
    (version, byte order, names, fields, subarray, item size, alignment, flags)."""
    at = rng.choice(_global_refs(seed, 'numpy dtype'))
    if field == 'dtype':
        j = _skip_put(seed, at + 1)
        value = rng.choice(['f4', 'i8', 'u1', 'b1', 'c16', 'O', 'O8', 'V8', 'M8', 'm8', 'U2',
                            'S8', 'f16', 'f2', 'V', 'i0', 'f8,f8', '(2,)f8'])
        return j, encode_op('BINUNICODE', value), value
    mark = _next_where(seed, at, lambda j: seed.ops[j].code.name == 'MARK')
    stop = _next_where(seed, mark, lambda j: seed.ops[j].code.name == 'TUPLE')
    items = [j for j in range(mark + 1, stop) if not seed.ops[j].code.name.endswith('PUT')]
    pos = rng.randrange(len(items))
    choices = {0: [0, 1, 2, 4, 255], 1: ['>', '|', '=', 'x']}.get(
        pos, [0, 1, 8, 16, 63, 255, 1 << 20, -1, -(1 << 31)])
    value = rng.choice(choices)
    new = encode_op('BINUNICODE', value) if isinstance(value, str) else int_for(value)
    return items[pos], new, f'state[{pos}] = {value!r}'


@mutator('pickle.numpy_array', 4)
def pickle_numpy_array(seed: Seed, rng: random.Random) -> Mutant:
    """A numpy array or scalar of the message hub (a HistoryBuffer's history, ``eta``): a
    dtype string, a dtype's pickled state (byte order, item size, alignment, flags: forged
    dtypes), an array's shape or the bytes of its data."""
    field = rng.choice(['dtype', 'state', 'state', 'shape', 'data', 'data'])
    if field in ('dtype', 'state'):
        j, new, value = _numpy_dtype_target(seed, rng, field)
    elif field == 'shape':
        start = rng.choice(_global_refs(seed, 'multiarray _reconstruct'))
        j = _next_where(seed, start + 1, lambda k: seed.ops[k].code.name == 'MARK') + 2
        if seed.ops[j].code.name not in ('BININT1', 'BININT2', 'BININT'):
            j = _next_where(seed, j, lambda k: seed.ops[k].code.name in ('BININT1', 'BININT2'))
        value = rng.choice([0, int(seed.ops[j].arg) + 1, 1 << 20, 1 << 40, -1])
        new = int_for(value)
    else:  # the latin-1 text that _codecs.encode turns into the data bytes
        texts = [_skip_put(seed, k + 1) for k in _global_refs(seed, '_codecs encode')]
        texts = [k for k in texts
                 if seed.ops[k].code.name == 'BINUNICODE' and len(seed.ops[k].arg) > 1]
        j = rng.choice(texts)
        text = seed.ops[j].arg
        k = rng.randrange(len(text))
        if rng.random() < 0.8:
            out = text[:k] + chr(ord(text[k]) ^ (1 << rng.randrange(8))) + text[k + 1:]
            value = f'char {k} changed'
        else:
            n = rng.choice([-1, 1, 8])
            out = text[:n] if n < 0 else text + '\0' * n
            value = f'{n:+d} chars'
        new = encode_op('BINUNICODE', out)
    return Mutant(with_pickle(seed, splice(seed, j, j + 1, new)),
                  f'numpy {field} (op {j}) -> {value!r}')


# ---------------------------------------------------------------------------- zip

#: (name, offset in the local header, struct format) of the fields that are mutated.
LOCAL_FIELDS = [('flags', 6, '<H'), ('method', 8, '<H'), ('crc', 14, '<I'),
                ('compressed_size', 18, '<I'), ('size', 22, '<I'), ('name_len', 26, '<H'),
                ('extra_len', 28, '<H')]
CENTRAL_FIELDS = [('flags', 8, '<H'), ('method', 10, '<H'), ('crc', 16, '<I'),
                  ('compressed_size', 20, '<I'), ('size', 24, '<I'), ('name_len', 28, '<H'),
                  ('extra_len', 30, '<H'), ('comment_len', 32, '<H'),
                  ('local_offset', 42, '<I')]
EOCD_FIELDS = [('disk_entries', 8, '<H'), ('entries', 10, '<H'), ('cd_size', 12, '<I'),
               ('cd_offset', 16, '<I'), ('comment_len', 20, '<H')]
ZIP64_FIELDS = [('disk_entries', 24, '<Q'), ('entries', 32, '<Q'), ('cd_size', 40, '<Q'),
                ('cd_offset', 48, '<Q')]


def _field_value(rng: random.Random, name: str, old: int) -> int:
    if name == 'method':
        return rng.choice([8, 12, 14, 93, 99, 1, 0xFFFF])
    if name == 'flags':
        return old ^ rng.choice([1, 8, 1 << 11, 1 << 6])
    return new_int(rng, old)


@mutator('zip.header_field', 6)
def zip_header_field(seed: Seed, rng: random.Random) -> Mutant:
    where = rng.choice(['local', 'central', 'both', 'eocd', 'zip64'])
    if where in ('eocd', 'zip64'):
        base, fields = ((seed.eocd, EOCD_FIELDS) if where == 'eocd'
                        else (seed.zip64_eocd, ZIP64_FIELDS))
        name, off, fmt = rng.choice(fields)
        (old,) = struct.unpack_from(fmt, seed.raw, base + off)
        value = _field_value(rng, name, old)
        return Mutant(patch(seed.raw, base + off, fmt, value), f'{where} {name} {old} -> {value}')
    e = rng.choice(seed.entries)
    raw, done = seed.raw, []
    name = rng.choice([f[0] for f in (CENTRAL_FIELDS if where == 'central' else LOCAL_FIELDS)])
    value = None
    for table, base in ((LOCAL_FIELDS, e.local), (CENTRAL_FIELDS, e.central)):
        if where not in ('both', 'local' if table is LOCAL_FIELDS else 'central'):
            continue
        for fname, off, fmt in table:
            if fname == name:
                (old,) = struct.unpack_from(fmt, raw, base + off)
                value = _field_value(rng, name, old) if value is None else value
                raw = patch(raw, base + off, fmt, value)
                done.append(f'{old}')
    return Mutant(raw, f'{where} header of {e.name}: {name} {"/".join(done)} -> {value}')


@mutator('zip.record_name', 3)
def zip_record_name(seed: Seed, rng: random.Random) -> Mutant:
    """One character of a record name changed in the local header, the central directory or
    both (same length, so nothing else moves)."""
    e = rng.choice(seed.entries)
    where = rng.choice(['local', 'central', 'both'])
    name = e.name
    k = rng.randrange(len(name))
    ch = rng.choice('0123456789/.\\aA\0') if rng.random() < 0.8 else chr(rng.randrange(1, 256))
    new = (name[:k] + ch + name[k + 1:]).encode('latin-1')
    raw = seed.raw
    if where in ('local', 'both'):
        raw = raw[:e.local + 30] + new + raw[e.local + 30 + len(new):]
    if where in ('central', 'both'):
        raw = raw[:e.central + 46] + new + raw[e.central + 46 + len(new):]
    return Mutant(raw, f'{where} name {name!r} -> {new!r}')


def _full(seed: Seed, name: str) -> str:
    return f'{seed.prefix}/{name}'


@mutator('zip.missing_record', 2)
def zip_missing_record(seed: Seed, rng: random.Random) -> Mutant:
    names = [n for n, _ in seed.records]
    drop = rng.choice(names[:4] + ['version', '.data/serialization_id'] + names)
    entries = [(_full(seed, n), d) for n, d in seed.records if n != drop]
    return Mutant(plain_zip(entries), f'record {drop} removed')


@mutator('zip.duplicate_record', 3)
def zip_duplicate_record(seed: Seed, rng: random.Random) -> Mutant:
    """A second record under an existing name, before or after it, holding other bytes."""
    records = list(seed.records)
    i = rng.randrange(len(records))
    name, data = records[i]
    other = rng.choice(records)[1]
    if name.startswith('data/') and len(other) != len(data):
        other = (other * (len(data) // max(len(other), 1) + 1))[:len(data)]
    filler = rng.choice([other, bytes(len(data)), data[::-1]])
    where = rng.choice(['first', 'last', 'next'])
    entries = [(_full(seed, n), d) for n, d in records]
    dup = (_full(seed, name), filler)
    at = {'first': 0, 'last': len(entries), 'next': i + 1}[where]
    entries.insert(at, dup)
    return Mutant(plain_zip(entries), f'duplicate {name} inserted at {where}')


@mutator('zip.swap_records', 3)
def zip_swap_records(seed: Seed, rng: random.Random) -> Mutant:
    """The data of two tensor records of equal size exchanged (CRCs are correct)."""
    by_size: Dict[int, List[int]] = collections.defaultdict(list)
    for i, (n, d) in enumerate(seed.records):
        if n.startswith('data/'):
            by_size[len(d)].append(i)
    groups = [g for g in by_size.values() if len(g) > 1]
    records = list(seed.records)
    group = rng.choice(groups)
    a, b = rng.sample(group, 2)
    if records[a][1] == records[b][1]:  # identical bytes: pick another pair once
        group = rng.choice(groups)
        a, b = rng.sample(group, 2)
    records[a], records[b] = (records[a][0], records[b][1]), (records[b][0], records[a][1])
    return Mutant(torch_zip(records), f'data of {records[a][0]} and {records[b][0]} swapped')


@mutator('zip.reorder', 1)
def zip_reorder(seed: Seed, rng: random.Random) -> Mutant:
    """The same records in another order (loads identically)."""
    records = list(seed.records)
    rng.shuffle(records)
    kind = rng.choice(['torch', 'plain'])
    data = (torch_zip(records) if kind == 'torch'
            else plain_zip([(_full(seed, n), d) for n, d in records]))
    return Mutant(data, f'records shuffled ({kind} writer)')


@mutator('zip.compression', 2)
def zip_compression(seed: Seed, rng: random.Random) -> Mutant:
    """Records deflated (all, or one, optionally with its tail padded by zeros: a
    deflated record larger than the tensor it feeds)."""
    entries = [(_full(seed, n), d) for n, d in seed.records]
    kind = rng.choice(['all', 'one', 'padded', 'bzip2', 'lzma'])
    if kind == 'all':
        return Mutant(plain_zip(entries, zipfile.ZIP_DEFLATED), 'all records deflated')
    i = rng.randrange(len(entries))
    if kind == 'padded':
        i = rng.choice([k for k, (n, _) in enumerate(entries) if '/data/' in n])
        name, data = entries[i]
        entries[i] = (name, data + bytes(len(data) * rng.choice([1, 15, 255])))
    method = {'bzip2': zipfile.ZIP_BZIP2, 'lzma': zipfile.ZIP_LZMA}.get(kind, zipfile.ZIP_DEFLATED)
    return Mutant(plain_zip(entries, methods={i: method}), f'{entries[i][0]}: {kind}')


@mutator('zip.special_records', 2)
def zip_special_records(seed: Seed, rng: random.Random) -> Mutant:
    """byteorder, .format_version, .storage_alignment, version: other contents; or an extra
    record torch does not expect; or another archive prefix on one record."""
    records = list(seed.records)
    kind = rng.choice(['byteorder', '.format_version', '.storage_alignment', 'version',
                       'extra', 'prefix'])
    if kind == 'extra':
        name = rng.choice(['data/9999', 'extra', 'data.pkl2', '.data/x', 'data/../data.pkl'])
        entries = [(_full(seed, n), d) for n, d in records] + [(_full(seed, name), b'\0' * 64)]
        return Mutant(plain_zip(entries), f'extra record {name}')
    if kind == 'prefix':
        entries = [(_full(seed, n), d) for n, d in records]
        i = rng.randrange(len(entries))
        entries[i] = ('other/' + records[i][0], entries[i][1])
        return Mutant(plain_zip(entries), f'{records[i][0]} under the prefix other/')
    value = rng.choice({'byteorder': [b'big', b'middle', b'', b'little\0'],
                        '.format_version': [b'0', b'2', b'99', b'x', b''],
                        '.storage_alignment': [b'1', b'0', b'4096', b'-1', b'x'],
                        'version': [b'0\n', b'1\n', b'99\n', b'x\n', b'']}[kind])
    entries = [(_full(seed, n), value if n == kind else d) for n, d in records]
    if kind not in dict(records):
        entries.append((_full(seed, kind), value))
    return Mutant(plain_zip(entries), f'record {kind} -> {value!r}')


# ---------------------------------------------------------------------------- content

def _leaves(seed: Seed, category: str) -> List[PathT]:
    import numpy as np
    import torch
    out = []
    for path, value in walk(seed.content):
        top = str(path[0][1]) if path else ''
        in_buffer = any(kind == 'attr' for kind, _ in path)
        tensor = isinstance(value, torch.Tensor) and value.numel() > 0
        if category == 'optimizer_tensor':
            ok = top == 'optimizer' and tensor
        elif category == 'state_dict_tensor':
            ok = top == 'state_dict' and tensor
        elif category == 'history_array':
            ok = in_buffer and isinstance(value, np.ndarray) and value.size > 0
        elif category == 'meta_value':
            ok = top == 'meta' and isinstance(value, (int, float, str))
        elif category == 'optimizer_value':
            ok = top == 'optimizer' and isinstance(value, (int, float)) and not isinstance(
                value, bool)
        elif category == 'scheduler_value':
            ok = top == 'param_schedulers' and isinstance(value, (int, float, str))
        elif category == 'hub_value':
            ok = top == 'message_hub' and not in_buffer and isinstance(
                value, (int, float, str, np.generic))
        else:
            raise ValueError(category)
        if ok:
            out.append(path)
    return out


def _changed(rng: random.Random, value: Any) -> Any:
    import numpy as np
    import torch
    if isinstance(value, torch.Tensor):
        new = value.detach().clone().contiguous()
        flat = new.view(-1).view(torch.uint8)
        k = rng.randrange(flat.numel())
        flat[k] ^= 1 << rng.randrange(8)
        return new
    if isinstance(value, np.ndarray):
        new = value.copy()
        flat = new.reshape(-1).view(np.uint8)
        k = rng.randrange(flat.size)
        flat[k] ^= 1 << rng.randrange(8)
        return new
    if isinstance(value, np.generic):
        return value.dtype.type(value + 1)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + rng.choice([-1, 1])
    if isinstance(value, float):
        return math.nextafter(value, math.inf) if rng.random() < 0.5 else value * 2 + 1
    if isinstance(value, str):
        return new_str(rng, value) if value else 'x'
    raise TypeError(type(value))


def _content_mutation(seed: Seed, rng: random.Random, category: str) -> Mutant:
    import torch
    paths = _leaves(seed, category)
    path = rng.choice(paths)
    old = get_at(seed.content, path)
    content = copy.copy(seed.content)
    content = set_at(content, path[:1], copy.deepcopy(get_at(seed.content, path[:1])))
    content = set_at(content, path, _changed(rng, old))
    buf = io.BytesIO()
    torch.save(content, buf)
    return Mutant(buf.getvalue(), f'{category}: {path_text(path)} changed')


#: One content mutator per kind of leaf (name, weight), registered in this order.
CONTENT_CATEGORIES = (('optimizer_tensor', 3), ('state_dict_tensor', 1), ('history_array', 2),
                      ('meta_value', 2), ('optimizer_value', 1), ('scheduler_value', 1),
                      ('hub_value', 1))
for _category, _weight in CONTENT_CATEGORIES:
    mutator(f'content.{_category}', _weight)(
        functools.partial(_content_mutation, category=_category))


@mutator('content.optimizer_bytes_in_place', 2)
def content_optimizer_bytes_in_place(seed: Seed, rng: random.Random) -> Mutant:
    """One byte of an optimizer tensor's record flipped in the file itself (torch does not
    check the record CRC), everything else byte-identical."""
    keys = [k for k, owner in seed.data_owner.items() if owner == 'optimizer']
    key = rng.choice(keys)
    e = next(e for e in seed.entries if e.name == _full(seed, f'data/{key}'))
    pos = e.data_start + rng.randrange(len(e.data))
    raw = seed.raw[:pos] + bytes([seed.raw[pos] ^ (1 << rng.randrange(8))]) + seed.raw[pos + 1:]
    return Mutant(raw, f'optimizer record data/{key}: byte {pos - e.data_start} flipped')


def mutate(seed: Seed, case: int, base_seed: int) -> Tuple[str, Mutant]:
    """The mutant of case number ``case`` (deterministic)."""
    name, fn = MUTATORS[case % len(MUTATORS)]
    rng = random.Random(f'{base_seed}:{case}')
    return name, fn(seed, rng)


# ============================================================================ oracle

def same(a: Any, b: Any, path: str = '') -> Optional[str]:
    """None if ``a`` (loaded from a mutant) equals ``b`` (the reference), else where and how
    they differ. Allocates at most what the reference holds."""
    import numpy as np
    import torch
    where = path or '<root>'
    if type(a) is not type(b):
        return f'{where}: type {type(a).__name__} != {type(b).__name__}'
    if isinstance(b, torch.Tensor):
        if (a.dtype, tuple(a.shape), a.device, a.requires_grad, a.layout) != (
                b.dtype, tuple(b.shape), b.device, b.requires_grad, b.layout):
            return (f'{where}: tensor {a.dtype} {tuple(a.shape)} {a.device} != '
                    f'{b.dtype} {tuple(b.shape)} {b.device}')
        if b.numel() and not torch.equal(a.contiguous().view(-1).view(torch.uint8),
                                         b.contiguous().view(-1).view(torch.uint8)):
            return f'{where}: tensor bytes differ'
        return None
    if isinstance(b, np.ndarray):
        if a.dtype != b.dtype or a.dtype.descr != b.dtype.descr or a.shape != b.shape:
            return f'{where}: ndarray {a.dtype} {a.shape} != {b.dtype} {b.shape}'
        return None if a.tobytes() == b.tobytes() else f'{where}: ndarray bytes differ'
    if isinstance(b, np.generic):
        ok = a.dtype == b.dtype and a.tobytes() == b.tobytes()
        return None if ok else f'{where}: numpy scalar {a!r} != {b!r}'
    if isinstance(b, dict):
        if set(a) != set(b):
            extra, missing = set(a) - set(b), set(b) - set(a)
            return (f'{where}: keys differ (extra {_some(extra)}, missing {_some(missing)})')
        if isinstance(b, collections.OrderedDict) and list(a) != list(b):
            return f'{where}: key order differs'
        for k in b:
            diff = same(a[k], b[k], f'{path}.{k}' if path else str(k))
            if diff:
                return diff
        return None
    if isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f'{where}: length {len(a)} != {len(b)}'
        for i, (x, y) in enumerate(zip(a, b)):
            diff = same(x, y, f'{path}[{i}]')
            if diff:
                return diff
        return None
    if isinstance(b, float):
        ok = struct.pack('<d', a) == struct.pack('<d', b)
        return None if ok else f'{where}: {a!r} != {b!r}'
    if isinstance(b, (str, bytes, int, bool, complex, type(None))):
        return None if a == b else f'{where}: {str(a)[:40]!r} != {str(b)[:40]!r}'
    if hasattr(b, '__dict__'):
        return same(vars(a), vars(b), f'{path}.__dict__')
    return None if a == b else f'{where}: {type(b).__name__} values differ'


def _some(keys: Any) -> str:
    return ', '.join(sorted(repr(k)[:40] for k in keys)[:3])


class CaseTimeout(BaseException):
    """Raised by SIGALRM inside a case (BaseException: the loader must not swallow it)."""


def _on_alarm(signum, frame):  # noqa: ANN001 - signal handler signature
    raise CaseTimeout()


def _short(err: BaseException) -> str:
    text = str(err).replace('\n', ' ')
    return f'{type(err).__name__}: {text[:400]}'


def _memory_cause(err: BaseException) -> bool:
    """A refusal that came from the address-space limit (an allocation the file asked for)."""
    seen = 0
    while err is not None and seen < 10:
        text = str(err)
        if isinstance(err, MemoryError) or "can't allocate memory" in text or \
                'DefaultCPUAllocator' in text or 'out of memory' in text:
            return True
        err = err.__cause__ or err.__context__
        seen += 1
    return False


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _vm_size() -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmSize:'):
                return int(line.split()[1]) * 1024
    return 0


class Runner:
    """Loads mutants and judges them (see the module docstring)."""

    def __init__(self, args: argparse.Namespace) -> None:
        from mmengine.logging import HistoryBuffer, MMLogger

        from mmvrwkv.engine import CheckpointError, load_checkpoint_file
        # the loader warns about dropped hook state on every case: keep the output short
        MMLogger.get_current_instance().setLevel(logging.ERROR)
        self.error_type = CheckpointError
        self.load = load_checkpoint_file if args.loader == 'gate' else unprotected_load
        self.timeout, self.base_seed = args.timeout, args.base_seed
        self.hard_timeout = args.hard_timeout or self.timeout * 2 + 5
        self.inject = _parse_inject(args.inject)
        seed_path, rss_margin_mb, as_margin_mb = args.seed, args.rss_margin_mb, args.as_margin_mb
        # One path for the reference and every case, so that the loader's path-dependent
        # steps (restored paths must be checkpoints beside the file) treat them alike.
        self.case_path = osp.abspath(args.case_path)
        self.folder = osp.dirname(self.case_path)
        with open(seed_path, 'rb') as f:
            raw = f.read()
        content = unprotected_load(io.BytesIO(raw))  # the seed: our own, trusted file
        self.seed = Seed(raw, content)
        self.reference = self._load_bytes(raw)
        self.hb_table_after = dict(HistoryBuffer._statistics_methods)
        self.cwd_before = sorted(os.listdir('.'))
        self.folder_before = set(os.listdir(self.folder))
        self.rss_limit = _maxrss_mb() + rss_margin_mb
        if as_margin_mb > 0:
            limit = _vm_size() + int(as_margin_mb * (1 << 20))
            resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))

    def _load_bytes(self, data: bytes) -> Any:
        with open(self.case_path, 'wb') as f:
            f.write(data)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            return self.load(self.case_path)

    def run_case(self, case: int) -> dict:
        """Mutate, load and judge case ``case``; the JSON record of its outcome."""
        from mmengine.logging import HistoryBuffer
        result: Dict[str, Any] = {'case': case, 'mutator': MUTATORS[case % len(MUTATORS)][0]}
        fault = self.inject.get(case)
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, self.timeout)
        faulthandler.dump_traceback_later(self.hard_timeout, exit=True)
        try:
            try:
                _, mutant = mutate(self.seed, case, self.base_seed)
            except Exception as err:  # noqa: BLE001 - a bug of this driver, not the loader
                result.update(outcome='failed', kind='harness', error=_short(err),
                              where=traceback.format_exc(limit=-2).splitlines()[-3:-1])
                return result
            result['detail'] = mutant.detail
            if fault and fault != 'table':
                _injected_fault(fault, self.hard_timeout)
            result.update(self._judge(mutant.data))
        except CaseTimeout:
            result.update(outcome='failed', kind='timeout', error=f'> {self.timeout} s')
        except Exception as err:  # noqa: BLE001 - every other exception is a finding
            result.update(outcome='failed', error=_short(err),
                          kind='allocation' if _memory_cause(err) else 'exception',
                          where=traceback.format_exc(limit=-3).splitlines()[-4:-1])
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            faulthandler.cancel_dump_traceback_later()
            if fault == 'table':  # after loading: a load merges the pickled table into it
                _injected_fault(fault, self.hard_timeout)
            self._check_side_effects(result, HistoryBuffer)
        return result

    def _judge(self, data: bytes) -> Dict[str, Any]:
        """Load ``data``: identical to the reference, or refused with a CheckpointError that
        names the file (and was not caused by running out of address space)."""
        try:
            loaded = self._load_bytes(data)
        except self.error_type as err:
            if _memory_cause(err):
                return dict(outcome='failed', kind='allocation', error=_short(err))
            if self.case_path not in str(err):
                return dict(outcome='failed', kind='unnamed', error=_short(err))
            return dict(outcome='refused', error=_short(err))
        diff = same(loaded, self.reference)
        if diff is None:
            return dict(outcome='identical')
        return dict(outcome='failed', kind='loaded_differently', error=diff)

    def _check_side_effects(self, result: dict, history_buffer: type) -> None:
        """Files that appeared, a changed HistoryBuffer table, peak RSS past the limit:
        each is reported once, with the case that caused it."""
        problems = []
        cwd = sorted(os.listdir('.'))
        if cwd != self.cwd_before:
            problems.append(('marker', f'working directory now holds {cwd}'))
            self.cwd_before = cwd
        folder = set(os.listdir(self.folder))
        if folder != self.folder_before:
            problems.append(('marker', f'{self.folder} now holds {sorted(folder)}'))
            self.folder_before = folder
        if dict(history_buffer._statistics_methods) != self.hb_table_after:
            problems.append(('class_table', 'HistoryBuffer._statistics_methods changed'))
            history_buffer._statistics_methods.clear()
            history_buffer._statistics_methods.update(self.hb_table_after)
        if _maxrss_mb() > self.rss_limit:
            problems.append(('rss', f'peak RSS {_maxrss_mb():.0f} MB > {self.rss_limit:.0f} MB'))
            self.rss_limit = _maxrss_mb() + 64
        for kind, text in problems:
            result.update(outcome='failed', kind=kind,
                          error=(result.get('error', '') + ' | ' + text).strip(' |'))


def _history_buffer_method(obj: Any, name: Any) -> Any:
    """``getattr`` limited to HistoryBuffer's own statistics methods (how mmengine pickles
    them), for :func:`unprotected_load`."""
    from mmengine.logging import HistoryBuffer
    if obj is HistoryBuffer and name in ('min', 'max', 'current', 'mean'):
        return HistoryBuffer.__dict__[name]
    raise pickle.UnpicklingError(f'getattr({obj!r}, {name!r}) refused')


def _real_class_globals() -> List[Any]:
    """The real numpy and mmengine classes an mmengine checkpoint names (the allow-list
    mmvrwkv used before its stand-ins)."""
    import numpy as np
    from mmengine.logging import HistoryBuffer
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1
        from numpy.core import multiarray
    allowed: List[Any] = [HistoryBuffer, np.ndarray, np.dtype,
                          (_history_buffer_method, 'builtins.getattr')]
    for fn in (multiarray._reconstruct, multiarray.scalar):
        allowed += [(fn, f'{mod}.{fn.__name__}')
                    for mod in ('numpy._core.multiarray', 'numpy.core.multiarray')]
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')]
    return allowed


def unprotected_load(source: Any) -> Any:
    """Weights-only ``torch.load`` with the real numpy / HistoryBuffer classes allowed and
    nothing after it: what the seed holds before the gate, and the unprotected path of the
    self-test (no error handling, no structure or digest checks)."""
    import torch
    with torch.serialization.safe_globals(_real_class_globals()):
        return torch.load(source, map_location='cpu', weights_only=True)


def _parse_inject(text: Optional[str]) -> Dict[int, str]:
    """'crash:3,hang:5' -> {3: 'crash', 5: 'hang'}."""
    out = {}
    for item in filter(None, (text or '').split(',')):
        what, _, case = item.partition(':')
        out[int(case)] = what
    return out


def _injected_fault(what: str, hard_timeout: float) -> None:
    """Faults the self-test injects to prove that the harness reports each kind."""
    import time
    if what == 'crash':
        os.kill(os.getpid(), signal.SIGSEGV)
    elif what == 'hang':      # interrupted by the per-case alarm
        time.sleep(hard_timeout * 4)
    elif what == 'block':     # the alarm cannot interrupt it: only faulthandler's exit
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(hard_timeout * 4)
    elif what == 'marker':
        open('MARKER', 'w').close()
    elif what == 'table':
        from mmengine.logging import HistoryBuffer
        HistoryBuffer._statistics_methods['mean'] = len
    elif what == 'memory':
        bytearray(1 << 40)
    else:
        raise ValueError(f'unknown fault {what!r}')


def _append(fd: int, record: Any) -> None:
    os.write(fd, (json.dumps(record) + '\n').encode())


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('seed')
    parser.add_argument('case_path', help='where each mutant is written and loaded from; '
                        'the folder is the run folder the loader sees (default output files '
                        'go beside it)')
    parser.add_argument('--first', type=int, default=0)
    parser.add_argument('--count', type=int, default=100)
    parser.add_argument('--case', type=int, help='run (or write) this one case')
    parser.add_argument('--results', default=None)
    parser.add_argument('--progress', default=None)
    parser.add_argument('--timeout', type=float, default=20.0)
    parser.add_argument('--rss-margin-mb', type=float, default=256,
                        help='peak RSS growth over the reference load that fails a case')
    parser.add_argument('--as-margin-mb', type=float, default=1024,
                        help='address space beyond the start-up size (RLIMIT_AS); an '
                        'allocation past it fails the case')
    parser.add_argument('--base-seed', type=int, default=21)
    parser.add_argument('--hard-timeout', type=float, default=None,
                        help='seconds after which a stuck case ends the process '
                        '(default: 2 * timeout + 5)')
    parser.add_argument('--loader', choices=['gate', 'plain'], default='gate',
                        help="'plain': unprotected_load, without mmvrwkv's gate (self-test)")
    parser.add_argument('--inject', default=None,
                        help='self-test faults, e.g. crash:3,hang:5,block:7,marker:9,'
                        'table:11,memory:13')
    parser.add_argument('--write-only', action='store_true',
                        help='write the mutant of --case to CASE_PATH and stop')
    args = parser.parse_args(argv)
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    faulthandler.enable()  # a crash leaves its Python traceback on stderr
    import torch
    torch.set_num_threads(1)
    os.makedirs(osp.dirname(osp.abspath(args.case_path)), exist_ok=True)
    cases = [args.case] if args.case is not None else range(args.first, args.first + args.count)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    if not args.write_only:  # opened first: files the runner finds are not new ones
        results = os.open(args.results or args.case_path + '.results.jsonl', flags, 0o644)
        progress = os.open(args.progress or args.case_path + '.progress.txt', flags, 0o644)
    runner = Runner(args)
    if args.write_only:
        name, mutant = mutate(runner.seed, cases[0], args.base_seed)
        with open(runner.case_path, 'wb') as f:
            f.write(mutant.data)
        print(f'case {cases[0]} ({name}: {mutant.detail}) written to {runner.case_path}')
        return 0
    for case in cases:
        os.write(progress, f'start {case}\n'.encode())
        record = runner.run_case(case)
        _append(results, record)
        if args.case is not None:
            print(json.dumps(record, indent=1))
    os.write(progress, b'done\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
