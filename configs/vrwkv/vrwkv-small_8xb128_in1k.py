# VRWKV-S, ImageNet-1k from scratch, 224 px, 300 epochs, 8 GPUs x 128 images.
# Translated from the official mmcls 0.25 config (OpenGVLab/Vision-RWKV,
# classification/configs/vrwkv/vrwkv_small_8xb128_in1k.py).
# Official weights: vrwkv_s_in1k_224.pth (HuggingFace OpenGVLab/Vision-RWKV); convert them with
#   python tools/model_converters/vrwkv2mmvrwkv.py vrwkv_s_in1k_224.pth OUT.pth --arch small
_base_ = [
    '../_base_/models/vrwkv-p16_classifier.py',
    '../_base_/datasets/imagenet_bs128_vrwkv_224.py',
    '../_base_/schedules/imagenet_bs1024_adamw_vrwkv.py',
    '../_base_/default_runtime_vrwkv_cls.py',
]

# The base's VRWKV classifier (GAP neck, 1000-way LinearClsHead with label smoothing, init)
# at size S.
model = dict(
    backbone=dict(
        # embed_dims 384, depth 12, post-norm; classification small was trained with layer
        # scale initialised to 1 (the det/seg small adapter: 1e-5, which the loaded gammas
        # overwrite anyway)
        arch='small',
        drop_path_rate=0.3),
    head=dict(in_channels=384),
    # Original: BatchMixup(alpha 0.8, prob 0.5) + BatchCutMix(alpha 1.0, prob 0.5): every
    # batch gets exactly one of the two. mmpretrain's RandomBatchAugment picks one of the
    # listed augments uniformly when no probs are given: the same thing.
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]),
)

load_from = None
