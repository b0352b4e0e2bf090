"""The attack payloads of the checkpoint entry-point matrix (``test_checkpoint_security.py``).

Every area of the checkpoint gate keeps its payloads in ``tests/engine/payloads_<area>.py``
as ``PAYLOADS``, a list of :class:`Payload`; :func:`all_payloads` collects them. The matrix
runs each payload through every entry point it applies to, and first shows, with
``unprotected``, that the payload really does harm on the path it attacks (so that the tests
can fail).

Rules for payload modules:

- import nothing of ``mmvrwkv`` at module level (only inside ``build``): the ``unprotected``
  demonstrations run in a process without mmvrwkv (importing it puts mmengine's loaders
  behind the gate) and must not import it themselves (a config text they execute may, as
  upstream would);
- payloads are harmless: a marker file, a victim folder made by the test, a crash of the
  (sub)process that loads them.

What the matrix does with a payload: ``build`` runs once per model (``TASK_OF``) in the test
process; every entry point of that model then runs in its own forked process, one after the
other, on that file, with the same marker and victim (repaired after a case that harmed
them). A case passes when no marker appears, the victim and the ``work_dir_files`` survive,
the file is unchanged, the process exits without a signal within the timeout, and the
outcome is the expected one. ``unprotected`` runs once, in a forked process of a worker
that has not imported mmvrwkv, on a file built for the cls model (for the det / seg model
when the payload applies to nothing else).
"""
import dataclasses
import glob
import importlib
import os.path as osp
from pathlib import Path
from typing import Callable, Dict, FrozenSet, List, Mapping, Optional, Tuple

#: Every entry point that loads a checkpoint a user was given.
ENTRY_POINTS = frozenset({
    'train_resume',            # tools/train.py --resume CKPT
    'load_from',               # tools/train.py --cfg-options load_from=CKPT
    'test_tool',               # tools/test.py CFG CKPT
    'runner_resume_plain',     # mmengine Runner(resume=True, load_from=CKPT) + plain CheckpointHook
    'cls_inferencer',          # mmpretrain ImageClassificationInferencer(cfg, pretrained=CKPT)
    'det_inferencer',          # mmdet DetInferencer(cfg, weights=CKPT)
    'seg_inferencer',          # mmseg MMSegInferencer(cfg, weights=CKPT)
    'det_inferencer_no_model',  # DetInferencer(model=None, weights=CKPT)
    'seg_inferencer_no_model',  # MMSegInferencer(None, weights=CKPT)
    'get_model',               # mmpretrain get_model(name, pretrained=CKPT)
    'converter',               # tools/model_converters/vrwkv2mmvrwkv.py CKPT OUT
    'pytorch2onnx',            # tools/deployment/pytorch2onnx.py CFG --checkpoint CKPT
    'image_demo',              # demo/image_demo.py CFG CKPT IMG
})

#: The model whose real Runner checkpoint ``build`` starts from, per entry point: the
#: 2-block digits classifier, or the mmdet / mmseg demo model for their inferencers.
TASK_OF = {ep: ('det' if ep.startswith('det_') else 'seg' if ep.startswith('seg_') else 'cls')
           for ep in ENTRY_POINTS}

#: Entry points that have a work dir (``work_dir_files`` are created there).
WITH_WORK_DIR = frozenset({'train_resume', 'load_from', 'test_tool', 'runner_resume_plain'})

#: The file the test puts in every victim folder.
VICTIM_FILE = 'keep.txt'

OUTCOMES = ('refused', 'safe')


@dataclasses.dataclass(frozen=True)
class Payload:
    """One attack, written as a checkpoint file.

    ``build(path, marker, victim, real_checkpoint)`` writes the file to ``path``. Harm is
    visible as the file ``marker`` appearing, the folder ``victim`` (made by the test, with
    the file ``VICTIM_FILE`` in it) or a file in it disappearing, or the loading process
    crashing (killed by a signal). ``real_checkpoint`` is a real Runner checkpoint to start
    from: of the digits classifier, or of the det / seg demo model for the det / seg
    inferencers (``TASK_OF``); the same keys either way (``meta``, ``state_dict``,
    ``message_hub``, ``optimizer``, ``param_schedulers``), with a valid digest.

    ``outcome`` is ``'refused'`` (a ``CheckpointError`` whose message names ``path`` and
    contains ``must_name``) or ``'safe'`` (the entry point works; nothing runs, nothing is
    deleted; at the ``model=None`` inferencers, which would build the model from the
    checkpoint's config text, a refusal naming the file that says to pass the config counts
    as working too). ``outcomes`` overrides it per entry point, where one reads the file
    differently. ``unprotected(path, marker, victim)`` does what the attacked upstream path
    does without mmvrwkv's gate (in a fresh process without mmvrwkv, where it may crash), so
    that the matrix can show the harm is real.

    ``work_dir_files``: names of files that the matrix creates in the work dir of the entry
    points that have one (``WITH_WORK_DIR``) and in the victim folder of the ``unprotected``
    demonstration; each must still exist afterwards (for payloads whose harm is deleting
    other checkpoints of the work dir; ``unprotected`` then uses ``victim`` as the work dir).
    """
    name: str
    build: Callable[[Path, Path, Path, str], None]
    outcome: str
    unprotected: Callable[[Path, Path, Path], None]
    must_name: Optional[str] = None
    entry_points: FrozenSet[str] = ENTRY_POINTS
    outcomes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    work_dir_files: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        assert self.outcome in OUTCOMES, self.outcome
        assert self.entry_points <= ENTRY_POINTS, self.entry_points - ENTRY_POINTS
        assert set(self.outcomes) <= self.entry_points, set(self.outcomes) - self.entry_points
        assert all(o in OUTCOMES for o in self.outcomes.values()), self.outcomes
        assert all('/' not in f and f not in ('', '.', '..') for f in self.work_dir_files)

    def outcome_at(self, entry_point: str) -> str:
        """The expected outcome at ``entry_point``."""
        return self.outcomes.get(entry_point, self.outcome)


def payload_modules() -> Dict[str, str]:
    """Payload name -> the ``payloads_<area>`` module that lists it."""
    found: Dict[str, str] = {}
    for path in sorted(glob.glob(osp.join(osp.dirname(__file__), 'payloads_*.py'))):
        name = osp.splitext(osp.basename(path))[0]
        for payload in importlib.import_module(name).PAYLOADS:
            assert payload.name not in found, f'duplicate payload name: {payload.name}'
            found[payload.name] = name
    return found


def all_payloads() -> List[Payload]:
    """The payloads of every ``payloads_<area>.py`` beside this file, sorted by name."""
    found = []
    for name in sorted(set(payload_modules().values())):
        found += importlib.import_module(name).PAYLOADS
    return sorted(found, key=lambda p: p.name)

