# Mask R-CNN + FPN with the VRWKV-T adapter, COCO 2017, 1x schedule (12 epochs),
# 8 GPUs x 2 images. Paper: box AP 41.7, mask AP 38.0 (backbone 8.4M params, 67.9G FLOPs).
# Translated from the official mmdet 2.28 config (OpenGVLab/Vision-RWKV,
# detection/configs/mask_rcnn/mask_rcnn_vrwkv_adapter_tiny_fpn_1x_coco.py).
# Official weights: mask_rcnn_vrwkv_adapter_tiny_fpn_1x_coco.pth (HuggingFace
# OpenGVLab/Vision-RWKV). The S/B/L configs inherit this file.
#
# Pretrained backbone: put the ImageNet checkpoint at pretrained/vrwkv_t_in1k_224.pth (the
# official file loads as it is; adapter keys are reported as new, `ln1` as unused). Training
# from scratch: --cfg-options model.backbone.init_cfg=None
#
# mmdet's mask-rcnn_r50_fpn_1x_coco.py with our model base in place of its Mask R-CNN R-50 one.
_base_ = [
    '../_base_/models/mask-rcnn_vrwkv-adapter_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]

# The base's Mask R-CNN + FPN with the VRWKV-T adapter (pad to 32, SyncBN, FPN on [192] * 4).
model = dict(
    backbone=dict(
        # NOTE(translation): the original passes `pretrained=` and loads with strict=False,
        # silently; here init_cfg goes through VRWKVAdapter.load_pretrained, which logs new
        # (adapter, gammas) and unused (ln1, head) keys and resizes pos_embed.
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/vrwkv_t_in1k_224.pth',
                      prefix='backbone.')))

# 2 images per GPU x 8 GPUs = 16 (dataset, pipeline and evaluator from the mmdet base:
# Resize (1333, 800) keep ratio, flip 0.5; single-scale test; CocoMetric bbox + segm).
train_dataloader = dict(batch_size=2)

# AdamW + layer-wise lr decay: lr scale rate^(num_layers + 1 - layer_id), num_layers the
# backbone's depth (the constructor reads it from the model); embeddings id 0, block i id
# i + 1, adapter / neck / heads full lr.
# NOTE(translation): the original's no-weight-decay name check never matched
# `backbone.pos_embed` (it was decayed); mmvrwkv.LayerDecayOptimWrapperConstructor excludes
# pos_embed from weight decay as intended. Everything else (1-D params and biases without
# decay, spatial_mix_* and level_embed with decay) is as in the original.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.01),
    constructor='mmvrwkv.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.85),
    clip_grad=None)

# 1x: 12 epochs, x0.1 at epochs 8 and 11, linear warm-up over 500 iterations from 0.001.
# NOTE(translation): mmcv 1.x `lr_config = dict(policy='step', warmup='linear',
# warmup_iters=500, warmup_ratio=0.001, step=[8, 11])` multiplies the warm-up factor
# 0.001 + 0.999 * t / 500 onto the step schedule; mmengine chains LinearLR (by iteration) and
# MultiStepLR (by epoch) the same way. mmengine's LinearLR reaches its end value at step
# end - 1, so end=501 gives exactly t / 500 (mmdet's own configs use end=500, i.e. t / 499).
max_epochs = 12
warmup_iters = 500
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=warmup_iters + 1),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11],
         gamma=0.1),
]

# Evaluate bbox + segm every epoch (base); keep the last 2 epoch checkpoints.
default_hooks = dict(
    checkpoint=dict(type='mmvrwkv.SafeCheckpointHook', interval=1, max_keep_ckpts=2,
                    save_last=True))

# NOTE(translation): no fp16 (the original L config has it commented out); with_cp False.
auto_scale_lr = dict(enable=False, base_batch_size=16)
