# VRWKV-T, ImageNet-1k from scratch, 224 px, 300 epochs, 8 GPUs x 128 images.
# Translated from the official mmcls 0.25 config (OpenGVLab/Vision-RWKV,
# classification/configs/vrwkv/vrwkv_tiny_8xb128_in1k.py).
# Official weights: vrwkv_t_in1k_224.pth (HuggingFace OpenGVLab/Vision-RWKV); convert them with
#   python tools/model_converters/vrwkv2mmvrwkv.py vrwkv_t_in1k_224.pth OUT.pth --arch tiny
_base_ = [
    '../_base_/models/vrwkv-p16_classifier.py',
    '../_base_/datasets/imagenet_bs128_vrwkv_224.py',
    '../_base_/schedules/imagenet_bs1024_adamw_vrwkv.py',
    '../_base_/default_runtime_vrwkv_cls.py',
]

# The model is the base's VRWKV-T classifier as it is (backbone, GAP neck, 1000-way
# LinearClsHead with label smoothing, init). Tiny: no Mixup / CutMix (the original has
# `train_cfg=dict()`).

load_from = None
