"""Entry points for users of the upstream APIs: our models in mmpretrain's model hub, the
task of a config and the display size of its pictures (demo/image_demo.py, tools/test.py),
and the explicit opt-in to partial loading (``get_model``, the inferencers and
``load_checkpoint`` refuse a checkpoint that does not fit an mmvrwkv model otherwise).

``mmvrwkv.apis.launch`` (imported by the command lines, not here) holds what tools/train.py
and tools/test.py share: the launcher options, the config set-up, the demo data and the
distributed (also CPU) set-up before mmengine's Runner."""
from mmvrwkv.engine.checkpoint.upstream import allow_partial_loading
from .model_hub import (classification_metafiles, convert_official, load_official_checkpoint,
                        package_root, register_mmpretrain_models)
from .tasks import (MIN_DISPLAY_SIDE, TASK_SCOPES, backbone_img_size, config_task,
                    display_scale)

__all__ = ['allow_partial_loading', 'classification_metafiles', 'convert_official',
           'load_official_checkpoint', 'package_root', 'register_mmpretrain_models',
           'MIN_DISPLAY_SIDE', 'TASK_SCOPES', 'backbone_img_size', 'config_task', 'display_scale']
