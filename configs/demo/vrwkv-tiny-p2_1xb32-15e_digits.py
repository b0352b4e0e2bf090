# The README's main job: VRWKV-T trained from scratch on scikit-learn's bundled digits
# (1,438 train / 359 val real 8x8 images, written by
# tools/dataset_converters/make_digits_imagenet.py), on CPU in a few minutes.
# Full-size VRWKV-T (C 192, depth 12); patch 2 gives each image a 4x4 token grid so Q-Shift
# and Bi-WKV see real 2-D neighbourhoods.
default_scope = 'mmpretrain'
custom_imports = dict(imports=['mmvrwkv'], allow_failed_imports=False)

data_root = 'data/digits'
# Missing data is written by tools/train.py and tools/test.py (also under mim, from any
# directory: relative to the current one), with
#     python tools/dataset_converters/make_digits_imagenet.py data/digits
demo_data = dict(converter='make_digits_imagenet.py', out=data_root, done='meta/val.txt')
num_classes = 10

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmvrwkv.VRWKV', arch='tiny', img_size=8, patch_size=2, drop_path_rate=0.1),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead', num_classes=num_classes, in_channels=192,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, )),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02, bias=0.),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ])

data_preprocessor = dict(
    num_classes=num_classes, mean=[78.0, 78.0, 78.0], std=[97.0, 97.0, 97.0], to_rgb=False)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomCrop', crop_size=8, padding=1),  # digits are not flip-invariant: no flip
    dict(type='PackInputs'),
]
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]

train_dataloader = dict(
    batch_size=32, num_workers=1, persistent_workers=True,
    dataset=dict(
        type='CustomDataset', data_root=data_root, ann_file='meta/train.txt',
        data_prefix='train', classes=[str(i) for i in range(num_classes)], pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    batch_size=128, num_workers=1, persistent_workers=True,
    dataset=dict(
        type='CustomDataset', data_root=data_root, ann_file='meta/val.txt',
        data_prefix='val', classes=[str(i) for i in range(num_classes)], pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

max_epochs = 15
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, begin=0, end=1, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1, end=max_epochs,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict()
test_cfg = dict()

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='mmvrwkv.SafeCheckpointHook', interval=5, max_keep_ckpts=2,
                    save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)
env_cfg = dict(cudnn_benchmark=False, mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
               dist_cfg=dict(backend='nccl'))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_processor = dict(by_epoch=True, window_size=10)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
