"""Entry points for users of the upstream APIs: our models in mmpretrain's model hub."""
from .model_hub import (classification_metafiles, convert_official, load_official_checkpoint,
                        package_root, register_mmpretrain_models)

__all__ = ['classification_metafiles', 'convert_official', 'load_official_checkpoint',
           'package_root', 'register_mmpretrain_models']
