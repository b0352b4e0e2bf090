"""Checkpoint I/O that never runs code from a file and never loses or hides damage.

One gate, :func:`load_checkpoint_file`, which every mmengine scheme (``schemes``) and every
upstream caller (``upstream``) goes through: ``prescan`` (sizes against the file),
``unpickling`` (weights-only, narrow stand-ins), ``structure`` (the shape mmengine writes),
``digest`` (content digest in ``meta``), ``config_text`` (no executable text leaves),
``hook_state`` (no restored path outside the run). Writing: ``atomic`` (crash-safe files);
``matching`` (keys and shapes against a model). Foreign weights, once loaded: ``state_dict``
(finding the weights in a checkpoint, prefix selection), ``pretrained`` (loading them into a
backbone with a report), ``conversion`` (official Vision-RWKV keys and architectures ->
mmvrwkv) and ``file_conversion`` (the converter's whole file conversion). The guarantees and
their tests: ``README.md`` in this folder.
"""
from .atomic import atomic_path, atomic_write_text, remove_stale_temporaries
from .config_text import literal_gpu_ids, neutralise_config_texts, neutralise_meta_config
from .conversion import (ConversionError, convert_state_dict, find_config, infer_arch,
                         infer_family, map_key, reference_shapes)
from .digest import (CHECKPOINT_DIGEST_KEY, DIGEST_KEY, add_digest, checkpoint_digest,
                     state_dict_digest, verify_digest)
from .errors import (CheckpointConfigError, CheckpointDigestError, CheckpointError,
                     CheckpointStructureError, CorruptCheckpointError, DownloadHashError,
                     ResourceLimitError, UnsafeCheckpointError)
from .file_conversion import convert_file
from .hook_state import drop_foreign_paths
from .loading import load_checkpoint_file, mmengine_safe_globals
from .matching import StateDictMismatch, compare_state_dict, revise_keys, short_list
from .pretrained import load_pretrained_weights
from .schemes import gated_loader, register_checkpoint_loaders, register_gated_scheme
from .state_dict import EMA_KEYS, WRAPPER_KEYS, find_state_dict, select_prefix
from .structure import validate_checkpoint
from .upstream import allow_partial_loading, install_upstream_patches

__all__ = [
    'atomic_path', 'atomic_write_text', 'remove_stale_temporaries',
    'literal_gpu_ids', 'neutralise_config_texts', 'neutralise_meta_config',
    'ConversionError', 'convert_state_dict', 'find_config', 'infer_arch', 'infer_family',
    'map_key', 'reference_shapes',
    'CHECKPOINT_DIGEST_KEY', 'DIGEST_KEY', 'add_digest', 'checkpoint_digest',
    'state_dict_digest', 'verify_digest',
    'CheckpointConfigError', 'CheckpointDigestError', 'CheckpointError',
    'CheckpointStructureError', 'CorruptCheckpointError', 'DownloadHashError',
    'ResourceLimitError', 'UnsafeCheckpointError',
    'convert_file', 'drop_foreign_paths', 'load_checkpoint_file', 'mmengine_safe_globals',
    'StateDictMismatch', 'compare_state_dict', 'revise_keys', 'short_list',
    'load_pretrained_weights',
    'gated_loader', 'register_checkpoint_loaders', 'register_gated_scheme',
    'EMA_KEYS', 'WRAPPER_KEYS', 'find_state_dict', 'select_prefix',
    'validate_checkpoint', 'allow_partial_loading', 'install_upstream_patches',
]
