"""Checkpoint I/O that never runs code from a file and never loses or hides damage.

``loading`` (weights-only loading with a narrow allow-list, clear errors), ``digest``
(content digest in ``meta``), ``atomic`` (crash-safe writes), ``matching`` (keys and shapes
against a model). The guarantees and their tests: ``README.md`` in this folder.
"""
from .atomic import atomic_path, atomic_write_text, remove_stale_temporaries
from .config_text import literal_gpu_ids, neutralise_config_texts, neutralise_meta_config
from .errors import (CheckpointDigestError, CheckpointError, CorruptCheckpointError,
                     ResourceLimitError, UnsafeCheckpointError)
from .digest import DIGEST_KEY, add_digest, state_dict_digest, verify_digest
from .loading import allow_mmengine_checkpoints, load_checkpoint_file, mmengine_safe_globals
from .schemes import register_checkpoint_loaders
from .matching import StateDictMismatch, compare_state_dict, revise_keys, short_list
from .digest import CHECKPOINT_DIGEST_KEY, checkpoint_digest
from .errors import CheckpointStructureError
from .structure import validate_checkpoint

__all__ = [
    'atomic_path', 'atomic_write_text', 'remove_stale_temporaries',
    'DIGEST_KEY', 'CheckpointDigestError', 'add_digest', 'state_dict_digest', 'verify_digest',
    'CheckpointError', 'CorruptCheckpointError', 'ResourceLimitError', 'UnsafeCheckpointError',
    'allow_mmengine_checkpoints', 'literal_gpu_ids', 'load_checkpoint_file', 'neutralise_config_texts',
    'mmengine_safe_globals', 'neutralise_meta_config', 'register_checkpoint_loaders',
    'StateDictMismatch', 'compare_state_dict', 'revise_keys', 'short_list',
    'CHECKPOINT_DIGEST_KEY', 'checkpoint_digest', 'CheckpointStructureError',
    'validate_checkpoint',
]
