# Detection demo: Mask R-CNN + FPN with the full VRWKV-T adapter, trained from scratch on CPU
# on the synthetic shapes dataset in COCO format (128x128 images, classes circle / rectangle /
# triangle), written by
#     python tools/dataset_converters/make_shapes_dataset.py data/shapes
# and read by mmdet's own CocoDataset; evaluated with CocoMetric (bbox + segm mAP).
#     python tools/train.py configs/demo/mask-rcnn_vrwkv-tiny-adapter_fpn_shapes.py
# Same model family as configs/mask_rcnn/mask-rcnn_vrwkv-tiny-adapter_fpn_1x_coco.py; the
# differences are for one CPU device and small images: BN instead of SyncBN, no pretrained
# checkpoint, smaller anchors, fewer proposals / sampled RoIs, no layer decay, and slimmer
# heads (FPN / heads 128 channels instead of 256, box-head FCs 256 instead of 1024, 2 mask
# convs instead of 4): on 2 CPU cores the heads of the stock recipe cost several times the
# backbone (mask-head conv and RoIAlign backward dominate a step).
head_channels = 128
_base_ = ['mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py']

custom_imports = dict(imports=['mmvrwkv'], allow_failed_imports=False)

data_root = 'data/shapes/coco/'
# Missing data is written by tools/train.py and tools/test.py (also under mim, from any
# directory: relative to the current one), with
#     python tools/dataset_converters/make_shapes_dataset.py data/shapes
demo_data = dict(converter='make_shapes_dataset.py', out='data/shapes',
                 done='shapes_dataset.json')
img_size = 128
classes = ('circle', 'rectangle', 'triangle')
metainfo = dict(classes=classes, palette=[(220, 20, 60), (0, 160, 0), (30, 60, 230)])
num_classes = len(classes)
embed_dims = 192

model = dict(
    data_preprocessor=dict(pad_size_divisor=32),
    backbone=dict(
        _delete_=True,
        type='mmvrwkv.VRWKVAdapter',
        arch='tiny',  # full VRWKV-T: C 192, depth 12, patch 16 (8x8 tokens at 128 px)
        img_size=img_size,
        drop_path_rate=0.1,
        rwkv_feature_fusion='final',  # detection recipe
        norm_cfg=dict(type='BN', requires_grad=True)),  # one device: BN, not SyncBN
    neck=dict(in_channels=[embed_dims] * 4, out_channels=head_channels),
    rpn_head=dict(
        in_channels=head_channels, feat_channels=head_channels,
        # objects are 18-62 px: anchors 16..256 px (scale 4 on strides 4..64) instead of 32..512
        anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=head_channels),
        bbox_head=dict(in_channels=head_channels, fc_out_channels=256, num_classes=num_classes),
        mask_roi_extractor=dict(out_channels=head_channels),
        mask_head=dict(num_convs=2, in_channels=head_channels, conv_out_channels=head_channels,
                       num_classes=num_classes)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=300),
        rcnn=dict(max_per_img=50)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5, direction=['horizontal', 'vertical']),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4, num_workers=1, persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=None,
    dataset=dict(
        type='CocoDataset', data_root=data_root, metainfo=metainfo,
        ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=4), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=1, persistent_workers=True, drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CocoDataset', data_root=data_root, metainfo=metainfo,
        ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
        test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='CocoMetric', ann_file=data_root + 'annotations/instances_val.json',
    metric=['bbox', 'segm'], format_only=False)
test_evaluator = val_evaluator

# From scratch: AdamW, no layer decay (rate 1.0; the constructor still keeps norms, biases,
# 1-D params and pos_embed out of weight decay), gradient clipping for a stable start.
# lr 6e-4 / 8 epochs: bbox 0.338, segm 0.375 mAP, training 11.3 min on 2 cores (~0.8 s per
# step of 4 images; README "Demos"). Before the adapter's CPU speed-ups and fused AdamW:
# 0.354 / 0.386 in 13.7 min; lr 3e-4 / 9 epochs: 0.301 / 0.338 in 15.1 min.
max_epochs = 8
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    # fused: one kernel for all parameters (CPU and CUDA), same update as the loop version
    optimizer=dict(type='AdamW', lr=6e-4, betas=(0.9, 0.999), weight_decay=0.05,
                   fused=True),
    constructor='mmvrwkv.LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=1.0),  # num_layers: the backbone's depth
    clip_grad=dict(max_norm=10.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[max_epochs - 3], gamma=0.1),  # lr x0.1 for the last 3 epochs
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=max_epochs)
auto_scale_lr = dict(enable=False, base_batch_size=4)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='mmvrwkv.SafeCheckpointHook', interval=max_epochs, max_keep_ckpts=1,
                    save_last=True))
log_processor = dict(type='LogProcessor', window_size=10, by_epoch=True)
randomness = dict(seed=0, deterministic=False)
