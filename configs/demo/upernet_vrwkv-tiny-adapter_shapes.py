# Segmentation demo: UperNet (+ auxiliary FCN head) with the full VRWKV-T adapter, trained from
# scratch on CPU on the synthetic shapes dataset in ADE20K layout (128x128 JPEG images +
# label PNGs, 0 = unlabeled, dropped by reduce_zero_label like ADE20K), written by
#     python tools/dataset_converters/make_shapes_dataset.py data/shapes
# and read by mmseg's BaseSegDataset (ADE20KDataset's loader, with the shape classes as
# metainfo); evaluated with IoUMetric (mIoU over background / circle / rectangle / triangle).
#     python tools/train.py configs/demo/upernet_vrwkv-tiny-adapter_shapes.py
# Same model family as configs/upernet/upernet_vrwkv-tiny-adapter_8xb2-160k_ade20k-512x512.py;
# the differences are for one CPU device and small images: BN instead of SyncBN, no
# pretrained checkpoint, narrow heads (32 channels instead of 512 / 256), whole-image
# inference, fp32, no layer decay, an epoch-based schedule, background weighted 0.2 in the loss,
# data loaded in the main process.
# The narrow heads, fused AdamW and the missing loader worker make a step cheap enough for
# 21 epochs in the time budget; README "Demos" has the measured runs and step times.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/default_runtime.py',
]

custom_imports = dict(imports=['mmvrwkv'], allow_failed_imports=False)

data_root = 'data/shapes/ade'
# Missing data is written by tools/train.py and tools/test.py (also under mim, from any
# directory: relative to the current one), with
#     python tools/dataset_converters/make_shapes_dataset.py data/shapes
demo_data = dict(converter='make_shapes_dataset.py', out='data/shapes',
                 done='shapes_dataset.json')
img_size = 128
crop_size = (img_size, img_size)
# Label PNGs: 1 background, 2 circle, 3 rectangle, 4 triangle (0 unlabeled) -> after
# reduce_zero_label 0..3 (255 ignored).
classes = ('background', 'circle', 'rectangle', 'triangle')
metainfo = dict(classes=classes,
                palette=[[120, 120, 120], [220, 20, 60], [0, 160, 0], [30, 60, 230]])
num_classes = len(classes)
embed_dims = 192
norm_cfg = dict(type='BN', requires_grad=True)  # one device: BN, not SyncBN
# The background is ~85 % of the pixels and is learnt first (IoU ~98 after a few epochs); the
# shape classes are what is left to learn, so background pixels weigh 0.2 in the loss
# (128-channel heads: 53.1 mIoU after 14 epochs vs 52.0 after 15 unweighted, same seed).
class_weight = [0.2, 1.0, 1.0, 1.0]

model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='mmvrwkv.VRWKVAdapter',
        arch='tiny',  # full VRWKV-T: C 192, depth 12, patch 16 (8x8 tokens at 128 px)
        img_size=img_size,
        drop_path_rate=0.0,  # from scratch, ~1.5k steps: no stochastic depth
        rwkv_feature_fusion='per_stage',  # segmentation recipe
        norm_cfg=norm_cfg),
    decode_head=dict(
        in_channels=[embed_dims] * 4, channels=32, num_classes=num_classes,
        norm_cfg=norm_cfg,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
                         class_weight=class_weight)),
    auxiliary_head=dict(
        in_channels=embed_dims, in_index=2, channels=32, num_classes=num_classes,
        norm_cfg=norm_cfg,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4,
                         class_weight=class_weight)),
    test_cfg=dict(mode='whole'))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # reduce_zero_label comes from the dataset
    dict(type='RandomFlip', prob=0.5, direction=['horizontal', 'vertical']),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),  # reduce_zero_label comes from the dataset
    dict(type='PackSegInputs'),
]
seg_dataset = dict(
    type='BaseSegDataset', data_root=data_root, metainfo=metainfo, img_suffix='.jpg',
    seg_map_suffix='.png', reduce_zero_label=True)
# batch 4 / lr 1e-3 / no photometric distortion / no drop path: 39.7 mIoU after 8 epochs vs
# 33.5 with batch 8 / lr 6e-4 / PhotoMetricDistortion / drop path 0.1 (same seed).
# num_workers=0: decoding four 128-px images takes a few ms; a worker process would take CPU
# time from the two compute threads (0.456 vs 0.495 s per step, 60 steps each).
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        **seg_dataset, pipeline=train_pipeline,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')))
val_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        **seg_dataset, pipeline=test_pipeline, test_mode=True,
        data_prefix=dict(img_path='images/validation',
                         seg_map_path='annotations/validation')))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# From scratch: AdamW, no layer decay (rate 1.0; the constructor still keeps norms, biases,
# 1-D params and pos_embed out of weight decay); warm-up, then poly decay to 0.
max_epochs = 21  # 63.0 mIoU, 13.1 min training on 2 cores (runs: README "Demos")
optim_wrapper = dict(
    type='OptimWrapper',
    # fused: one kernel for all parameters (CPU and CUDA), same update as the loop version
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01,
                   fused=True),
    constructor='mmvrwkv.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=1.0),  # num_layers: the backbone's depth
    clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=True, begin=0, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='mmvrwkv.SafeCheckpointHook', interval=max_epochs, max_keep_ckpts=1,
                    save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
env_cfg = dict(cudnn_benchmark=False)
log_processor = dict(by_epoch=True, window_size=10)
randomness = dict(seed=0, deterministic=False)
