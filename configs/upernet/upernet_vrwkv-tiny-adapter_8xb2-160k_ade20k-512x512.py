# UperNet (+ auxiliary FCN head) with the VRWKV-T adapter, ADE20K, 512x512 crops, 160k
# iterations, 8 GPUs x 2 images, AMP. Paper: mIoU 43.3 single-scale (backbone 8.4M params,
# 16.6G FLOPs at 512x512).
# Translated from the official mmseg 0.30 config (OpenGVLab/Vision-RWKV,
# segmentation/configs/ade20k/upernet_vrwkv_adapter_tiny_512_160k_ade20k.py).
# Official weights: upernet_vrwkv_adapter_tiny_512_160k_ade20k.pth (HuggingFace
# OpenGVLab/Vision-RWKV). The S/B/L configs inherit this file.
#
# Pretrained backbone: put the ImageNet checkpoint at pretrained/vrwkv_t_in1k_224.pth (the
# official file loads as it is). Training from scratch: --cfg-options model.pretrained=None
_base_ = [
    '../_base_/models/upernet_vrwkv-adapter.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
]

crop_size = (512, 512)

# NOTE(translation): mmseg 0.30 normalised and padded (to 512, seg pad 255) in the pipeline;
# mmseg 1.x does it in the data preprocessor (same mean/std/pad values; the training batch is
# padded to crop_size).
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
    size=crop_size)

model = dict(
    data_preprocessor=data_preprocessor,
    # Pretrained weights at model level, as in the original: mmseg's EncoderDecoder hands
    # `pretrained` to the backbone, whose VRWKVAdapter(pretrained=...) loads it through
    # load_pretrained (reports new/unused keys, resizes pos_embed).
    # NOTE(translation): the original loaded with strict=False and no report.
    pretrained='pretrained/vrwkv_t_in1k_224.pth',
    # The base's VRWKV-T adapter (per-stage fusion, SyncBN) and heads on [192] * 4 / 192
    # channels; ADE20K has 150 classes.
    decode_head=dict(num_classes=150),
    auxiliary_head=dict(num_classes=150),
    # Slide inference: 512x512 windows, stride 341.
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

# Data: the mmseg ADE20K base (RandomResize (2048, 512) x0.5-2.0, RandomCrop 512 with
# cat_max_ratio 0.75, flip, PhotoMetricDistortion; reduce_zero_label) with the original's
# test pipeline: Resize (2048, 512) keep ratio, then ResizeToMultiple 32 (the adapter needs
# sides that are multiples of 32), no flip.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
# Multi-scale + flip test (mmseg's own tools/test.py --tta; the paper reports single-scale
# only): the mmseg base's TTA with ResizeToMultiple 32 after each rescale, as in the original's
# aug test.
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale_factor=r, keep_ratio=True) for r in img_ratios],
            [dict(type='ResizeToMultiple', size_divisor=32)],
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadAnnotations')],
            [dict(type='PackSegInputs')],
        ]),
]
train_dataloader = dict(batch_size=2)  # x 8 GPUs = 16
val_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# AdamW + layer-wise lr decay (num_layers: the backbone's depth, read from the model), AMP
# with dynamic loss scaling from 512.
# NOTE(translation): mmseg 0.30 `fp16 = dict(loss_scale=dict(init_scale=512))` (mmcv
# Fp16OptimizerHook: autocast + torch GradScaler(init_scale=512)) becomes AmpOptimWrapper with
# the same GradScaler arguments. The original's no-weight-decay name check never matched
# `backbone.pos_embed`; mmvrwkv.LayerDecayOptimWrapperConstructor excludes it as intended.
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    loss_scale=dict(init_scale=512),
    optimizer=dict(type='AdamW', lr=1.2e-4, betas=(0.9, 0.999), weight_decay=0.01),
    constructor='mmvrwkv.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.95),
    clip_grad=None)

# 160k iterations: linear warm-up over 1500 iterations from 1e-6, poly decay (power 1.0) to 0.
# NOTE(translation): mmcv 1.x `lr_config = dict(policy='poly', power=1.0, min_lr=0.0,
# by_epoch=False, warmup='linear', warmup_iters=1500, warmup_ratio=1e-6)` multiplies the
# warm-up factor onto a poly curve that starts at iteration 0:
#   lr(t) = base_lr * (1e-6 + (1 - 1e-6) * min(t, 1500) / 1500) * (1 - t / 160000).
# Both mmengine schedulers below therefore start at 0 and overlap (they are chainable and,
# with eta_min=0, multiplicative), which reproduces this curve exactly; a PolyLR starting
# after the warm-up would not. mmengine's LinearLR/PolyLR reach their end value at step
# end - 1, hence end=1501 and end=max_iters + 1 (mmseg's own configs use 1500 / max_iters,
# i.e. t / 1499 and t / 159999).
max_iters = 160000
warmup_iters = 1500
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=warmup_iters + 1),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=0, end=max_iters + 1),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=16000)

# Evaluate mIoU every 16k iterations and keep the best.
# NOTE(translation): the original saved a checkpoint every 1000 iterations keeping only the
# newest one (cheap restarts on a preemptible cluster). Here checkpoints come with every
# evaluation (16k), the last 2 are kept plus the best mIoU one and the final one; for the
# original behaviour use --cfg-options default_hooks.checkpoint.interval=1000
# default_hooks.checkpoint.max_keep_ckpts=1
default_hooks = dict(
    checkpoint=dict(type='mmvrwkv.SafeCheckpointHook', by_epoch=False, interval=16000,
                    max_keep_ckpts=2, save_best='mIoU', save_last=True))
