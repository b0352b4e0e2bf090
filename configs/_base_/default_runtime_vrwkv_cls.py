# Runtime of the Vision-RWKV ImageNet recipes: mmpretrain's default runtime (default_scope
# 'mmpretrain', never 'mmvrwkv') with the original checkpointing: every epoch, keep the
# last 2, always save the last one.
_base_ = 'mmpretrain::_base_/default_runtime.py'

default_hooks = dict(
    checkpoint=dict(
        type='mmvrwkv.SafeCheckpointHook', interval=1, max_keep_ckpts=2, save_last=True))
