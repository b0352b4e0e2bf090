# VRWKV-B, ImageNet-1k from scratch, 224 px, 300 epochs, 16 GPUs x 64 images.
# Translated from the official mmcls 0.25 config (OpenGVLab/Vision-RWKV,
# classification/configs/vrwkv/vrwkv_base_16xb64_in1k.py).
# Official weights: vrwkv_b_in1k_224.pth (HuggingFace OpenGVLab/Vision-RWKV); convert them with
#   python tools/model_converters/vrwkv2mmvrwkv.py vrwkv_b_in1k_224.pth OUT.pth --arch base
_base_ = [
    '../_base_/models/vrwkv-p16_classifier.py',
    '../_base_/datasets/imagenet_bs128_vrwkv_224.py',
    '../_base_/schedules/imagenet_bs1024_adamw_vrwkv.py',
    '../_base_/default_runtime_vrwkv_cls.py',
]

# The base's VRWKV classifier (GAP neck, 1000-way LinearClsHead with label smoothing, init)
# at size B.
model = dict(
    backbone=dict(
        arch='base',  # embed_dims 768, depth 12, post-norm, layer scale 1e-5
        drop_path_rate=0.5),
    head=dict(in_channels=768),
    # Original: BatchMixup(alpha 0.8, prob 0.5) + BatchCutMix(alpha 1.0, prob 0.5): every
    # batch gets exactly one of the two (= RandomBatchAugment's uniform choice).
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]),
)

# 16 GPUs x 64 images = 1024 per iteration, the batch the lr (1e-3) is set for.
train_dataloader = dict(batch_size=64)
val_dataloader = dict(batch_size=64)
test_dataloader = dict(batch_size=64)

load_from = None
