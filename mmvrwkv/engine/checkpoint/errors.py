"""The errors of checkpoint loading; every message names the file and what is wrong."""
import pickle


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used; the message names the file and the reason."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """The file asks the unpickler for something outside the allow-list (it could run code)."""


class CorruptCheckpointError(CheckpointError):
    """The file is empty, truncated or not a torch checkpoint at all."""


class CheckpointDigestError(CheckpointError):
    """The content of a checkpoint does not match the digest saved with it."""


class CheckpointStructureError(CheckpointError):
    """The unpickled content is not what mmengine writes (a wrong type, a forged tensor or
    numpy object, a cycle, too deep or too large); the message names the key path."""


class ResourceLimitError(CheckpointError):
    """The file declares more memory than it stores (a compressed record, a storage larger than
    its bytes, a pickle-level allocation): loading it would allocate the declared size."""


class DownloadHashError(CheckpointDigestError):
    """A download whose SHA-256 is not the one its URL, metafile or caller records."""


class CheckpointConfigError(CheckpointError):
    """A caller would build the model from the config text stored in a checkpoint (that text
    would run as Python); the message says to pass the config instead."""
