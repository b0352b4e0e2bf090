# VRWKV-T, ImageNet-1k from scratch, 224 px, 300 epochs, 8 GPUs x 128 images.
# Translated from the official mmcls 0.25 config (OpenGVLab/Vision-RWKV,
# classification/configs/vrwkv/vrwkv_tiny_8xb128_in1k.py).
# Official weights: vrwkv_t_in1k_224.pth (HuggingFace OpenGVLab/Vision-RWKV); convert them with
#   python tools/model_converters/vrwkv2mmvrwkv.py vrwkv_t_in1k_224.pth OUT.pth --arch tiny
_base_ = [
    '../_base_/datasets/imagenet_bs128_vrwkv_224.py',
    '../_base_/schedules/imagenet_bs1024_adamw_vrwkv.py',
    '../_base_/default_runtime_vrwkv_cls.py',
]

# Registers `mmvrwkv.VRWKV`; the default scope stays 'mmpretrain'.
custom_imports = dict(imports=['mmvrwkv'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmvrwkv.VRWKV',
        arch='tiny',  # embed_dims 192, depth 12
        img_size=224,
        patch_size=16,
        drop_path_rate=0.,
        # Classification tiny has no layer scale (no gamma parameters at all); the det/seg
        # tiny configs use init_values=1.0 instead.
        init_values=None,
        post_norm=False,
        key_norm=False,
        out_indices=-1,
        final_norm=True),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=192,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        # The classifier-level init_cfg below initialises the head too.
        init_cfg=None),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ],
    # Tiny: no Mixup / CutMix (the original has `train_cfg=dict()`).
)

load_from = None
