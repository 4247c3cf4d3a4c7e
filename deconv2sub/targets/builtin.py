"""The built-in target profiles, each with the source of its facts.

"measured here" means: run on this project's machines through the toolchain's own converter and
runtime (``deconv2sub.toolchains``, ``benchmarks/toolchains/*.md``); "published" means the vendor's
documented limits, for targets that cannot run here (their profiles are only as good as those
documents).
"""

from __future__ import annotations

from typing import Dict

from .profile import KnownBug, TargetProfile

_IREE_CRD = KnownBug(
    toolchain="iree",
    op="DepthToSpace",
    mode="CRD",
    condition="d2s_channels_ne_block",
    note="IREE (llvm-cpu) miscompiles DepthToSpace in CRD mode when C / b^2 != b: wrong outputs, "
    "no error",
    reference="iree-org/iree#24179 (measured here with IREE 3.13)",
)
_NCNN_DCR = KnownBug(
    toolchain="ncnn",
    op="DepthToSpace",
    mode="DCR",
    note="pnnx/ncnn maps only CRD DepthToSpace to PixelShuffle; DCR does not convert",
    reference="measured here (pnnx 20261020, ncnn 1.0.20261020)",
)
_NCNN_GATHER = KnownBug(
    toolchain="ncnn",
    op="Gather",
    note="pnnx turns a Gather into a single-index Crop or a missing 'Gather' layer: wrong or not "
    "runnable",
    reference="measured here (pnnx 20261020)",
)
_NCNN_RANK = KnownBug(
    toolchain="ncnn",
    op="Transpose",
    min_rank=5,
    note="ncnn's Permute takes at most 4-D tensors ('permute 7-rank tensor is not supported')",
    reference="measured here (ncnn 1.0.20261020)",
)
_NCNN_RESHAPE_BATCH = KnownBug(
    toolchain="ncnn",
    op="Reshape",
    condition="reshape_first_dim_not_one",
    note="pnnx converts a Reshape only when its result keeps the first (batch) dim 1: the rank-4 "
    "cascade of a 3-D shuffle folds channels into it and is rejected ('layer Tensor.reshape not "
    "exists'); --target ncnn keeps 3-D ConvTranspose, and depth_to_space_3d converts",
    reference="measured here (pnnx 20261020); "
    "tests/toolchain_repros/ncnn/reshape_rank4_cascade_3d_rejected.onnx",
)
_TFLITE_RANK = KnownBug(
    toolchain="tflite",
    op="Transpose",
    min_rank=5,
    note="LiteRT's XNNPACK delegate fails to prepare the high-rank Transpose of a 3-D shuffle",
    reference="measured here (onnx2tf 1.29, ai-edge-litert)",
)
_TFLITE_GATHER = KnownBug(
    toolchain="tflite",
    op="Gather",
    note="onnx2tf's layout guessing around Gather gives wrong outputs on decoder blocks",
    reference="measured here (onnx2tf 1.29)",
)
_MNN_CONV2 = KnownBug(
    toolchain="mnn", op="Conv", condition="conv_kernel2_wide",
    note="MNN's fp32 2x2 Conv with 32 or more input channels loses ~1e-2 on some inputs of 32x32 "
    "and more, depending on the shape (3x3 and 1x1 Convs are exact): the Conv of a k4 s2 or k3 s2 "
    "rewrite; --target mnn keeps those ConvTranspose (a profile with fold_crop = \"always\" gets "
    "a 3x3 Conv instead)",
    reference="measured here (MNN 3.6.1); "
    "tests/toolchain_repros/mnn/conv2d_k2_64to128_33x33_inexact.onnx",
)
_TFLITE_SQUARE = KnownBug(
    toolchain="tflite", op="Reshape", condition="square_before_conv",
    note="onnx2tf guesses NCHW vs NHWC by shape: a Reshape/Transpose result of shape [N, C, C, C] "
    "or [N, C, C] feeding a padded Conv loses its layout transpose (wrong numbers)",
    reference="measured here (onnx2tf 1.29); "
    "tests/toolchain_repros/tflite/conv_after_square_reshape.onnx",
)
_TFLITE_D2S_3D = KnownBug(
    toolchain="tflite", op="DepthToSpace", condition="d2s_after_3d_reshape",
    note="onnx2tf reads the rank-4 tensor that depth_to_space_3d's Reshape/Transpose make from a "
    "5-D Conv output as NHWC, and its DepthToSpace fails to convert",
    reference="measured here (onnx2tf 1.29); "
    "tests/toolchain_repros/tflite/depth_to_space_after_3d_reshape.onnx",
)
_RKNN_CONV3D_SHUFFLE = KnownBug(
    toolchain="rknn", op="Conv", condition="conv3d_into_rank6_shuffle",
    note="RKNN-Toolkit2's builder fuses Reshape -> rank-6 Transpose -> Reshape after a 3-D Conv "
    "into the Conv (merge_conv_channel_inner_perm) and gets the order wrong at 2x2x2 spatial "
    "(3^3, 4^3, 8^3 are right): right values, wrong places (the 3-D two-stage shuffle of "
    "--target onnxruntime); --target rknn emits rank <= 4",
    reference="measured here (rknn-toolkit2 2.5.0 simulator, rk3588); "
    "tests/toolchain_repros/rknn/conv3d_reshape_rank6_transpose_wrong.onnx",
)
_TFLITE_CONCAT = KnownBug(
    toolchain="tflite", op="Concat", condition="concat_after_ambiguous_reshape",
    note="onnx2tf guesses the layout of a Reshape/Transpose result from its shape: one whose "
    "channel count equals a spatial size (e.g. [1, 8, 6, 8, 10]) is concatenated on the wrong axis",
    reference="measured here (onnx2tf 1.29); "
    "tests/toolchain_repros/tflite/concat_after_3d_shuffle.onnx",
)
_TVM_SHAPE = KnownBug(
    toolchain="tvm",
    op="Slice",
    condition="slice_of_shape_into_arith",
    note="TVM Relax's ONNX importer keeps a Slice of a Shape as a shape expression, and with "
    "symbolic dims its Mul/Add/Sub/Div refuse it ('cannot handle ShapeExpr inputs'); the "
    "rewrite's own shape arithmetic uses scalar Gather + Unsqueeze, which it folds",
    reference="measured here (apache-tvm 0.27); tests/toolchain_repros/tvm/shape_arithmetic.onnx",
)

#: every known toolchain bug; ``convert --toolchain NAME`` checks the output against those of NAME
ALL_BUGS = (
    _IREE_CRD,
    _NCNN_DCR,
    _NCNN_GATHER,
    _NCNN_RANK,
    _NCNN_RESHAPE_BATCH,
    _TFLITE_RANK,
    _TFLITE_GATHER,
    _TVM_SHAPE, _TFLITE_SQUARE, _MNN_CONV2, _RKNN_CONV3D_SHUFFLE, _TFLITE_CONCAT, _TFLITE_D2S_3D,
)

_PROFILES = [
    TargetProfile(
        name="portable",
        description="Conv + DepthToSpace (CRD) + Slice, Reshape/Transpose of rank <= 4 elsewhere, "
        "static shapes where the model's are: the form every proof toolchain here runs",
        source="measured here on ncnn, MNN, LiteRT, TVM, OpenVINO and ONNX Runtime "
        "(benchmarks/toolchains)",
        depth_to_space=("CRD",),
        max_rank=4,
        # a 2x2 sub-pixel Conv with >= 32 channels on >= 32x32 (DCGAN's k4 s2 p1) is inexact on
        # MNN (~1e-2): those nodes fold their crop into a 3x3 Conv (2.25x the MACs, no Slice).
        # DCGAN block 128>64 32x32: MNN wrong -> exact 0.77x, ncnn 0.95x -> 1.25x, LiteRT 1.91x
        # -> 1.02-1.06x of the original
        fold_crop_always_when=("kernel2_wide",),
    ),
    TargetProfile(
        name="onnxruntime",
        description="ONNX Runtime CPU: the measured fastest emissions (row Gather, Gemm, phase "
        "Convs)",
        source="measured here: benchmarks/bench_blocks.py (ORT 1.31 CPU)",
        max_rank=8,
        gather=True,
        gemm=True,
        phase_convs=True,
        rule="onnxruntime",
    ),
    TargetProfile(
        name="openvino",
        description="OpenVINO CPU: channels-last transposes, phase Convs",
        source="measured here: benchmarks/bench_blocks.py (OpenVINO 2026.4 CPU)",
        max_rank=8,
        phase_convs=True,
        rule="openvino",
    ),
    TargetProfile(
        name="tflite",
        description="LiteRT/TFLite via onnx2tf: DCR maps to a native DEPTH_TO_SPACE (CRD becomes "
        "RESHAPE + TRANSPOSE), no Gather/Gemm, rank <= 4",
        source="measured here (onnx2tf 1.29 -> ai-edge-litert, XNNPACK)",
        depth_to_space=("DCR", "CRD"),
        max_rank=4,
        # onnx2tf 1.29 misreads the layout of depth_to_space_3d's rank-4 tensor before its
        # DepthToSpace (a reshape error; repro depth_to_space_after_3d_reshape.onnx); the rank-4
        # cascade converts and is exact on the 3-D blocks
        depth_to_space_3d=False,
        bugs=(_TFLITE_RANK, _TFLITE_GATHER, _TFLITE_SQUARE, _TFLITE_CONCAT, _TFLITE_D2S_3D),
    ),
    TargetProfile(
        name="ncnn",
        description="ncnn via pnnx: CRD DepthToSpace is PixelShuffle; no DCR, no Gather, "
        "Reshape/Permute <= 4-D with the batch first; 3-D ConvTranspose kept (native, exact; the "
        "one 3-D form that converts, depth_to_space_3d, ran 0.45x), and 2-D strides 1 and 2 "
        "(its Deconvolution runs them as fast or faster)",
        source="measured here (pnnx 20261020, ncnn 1.0.20261020)",
        # 2 threads, quiet machine, original -> Conv + PixelShuffle at stride 2: DCGAN k4 0.92x,
        # U-Net k2 1.02x, ENet k3 0.77x, samples dcgan_generator 0.63x, grouped_upsampler 0.70x,
        # enet_decoder 0.89x (phase Convs or a 3x3 folded Conv were no faster): kept; stride 8
        # (FCN k16 1.09-1.24x) and 1-D (4.4-11x) are rewritten; stride 1 (dcgan_generator's
        # latent projection, k4 s1 on 1x1 as a 1x1 Conv + PixelShuffle(4): 0.91x) kept too
        depth_to_space=("CRD",),
        max_rank=4,
        keep_ranks=(3,),
        keep_strides=((1, 1), (2, 2)),
        bugs=(_NCNN_DCR, _NCNN_GATHER, _NCNN_RANK, _NCNN_RESHAPE_BATCH),
    ),
    TargetProfile(
        name="mnn",
        description="MNN: DepthToSpace DCR (its CRD runs 1.5x slower), Reshape/Transpose <= 4-D; "
        "keeps the 2-D ConvTranspose that it runs better than the rewrite (grouped, stride 8) "
        "or whose rewrite hits its inexact wide 2x2 Conv; rewrites 1-D and 3-D, where MNN's own "
        "ConvTranspose is wrong (1-D: output rank; 3-D: bias)",
        source="measured here (MNN 3.6.1): benchmarks/toolchains/mnn.md, proof_ncnn_mnn.md",
        # 2 threads, quiet machine, original -> DCR (CRD): U-Net k2 s2 1.22x (0.68x), ENet k3 s2
        # 1.22x (0.67x); FCN k16 s8 0.83x with one DepthToSpace(8), 0.63x / 0.71x as blocks of
        # 2 / 4: kept; grouped_upsampler 0.43x (MNN runs a grouped Conv with a channel multiplier
        # as one Conv per group): kept
        depth_to_space=("DCR", "CRD"),
        max_rank=4,
        # 3-D k2 s2 32>16 16^3 block, 2 threads, busy machine, medians of 31 interleaved runs:
        # the rank-4 cascade 2.67 ms, depth_to_space_3d 4.34 ms (its CRD DepthToSpace alone
        # ~4.8 ms of 6.3); +BN+ReLU 2.74 vs 4.98 ms; both exact: the cascade
        depth_to_space_3d=False,
        keep_strides=((8, 8),),
        keep_when=("grouped", "kernel2_wide"),
        bugs=(_MNN_CONV2,),
    ),
    TargetProfile(
        name="tvm",
        description="TVM Relax (llvm): every form compiles, symbolic dims included (run-time shape "
        "arithmetic as scalar Gather + Unsqueeze, which its importer folds into symbolic shapes)",
        source="measured here (apache-tvm 0.27, Relax from_onnx; benchmarks/toolchains/tvm.md)",
        depth_to_space=("CRD", "DCR"),
        max_rank=6,
        bugs=(_TVM_SHAPE,),
    ),
    TargetProfile(
        name="iree",
        description="IREE (llvm-cpu): DCR DepthToSpace or Reshape/Transpose (CRD is miscompiled), "
        "crop folded; phase Convs + row Gather where they fold the crop away (DCGAN's k4 s2 p1)",
        source="measured here (iree-base-compiler 3.13); iree-org/iree#24179",
        depth_to_space=("DCR",),
        max_rank=4,
        # DCGAN block k4 s2 p1 128>64 32x32 on IREE llvm-cpu, 2 threads, loaded 2-core machine,
        # three runs: 4 phase Convs + 2-D Transpose + Gather 1.66x / 1.79x (+BN+ReLU 1.32x) of the
        # original, DepthToSpace(DCR) 0.66x / 0.77x / 0.93x (+BN+ReLU 0.95x); the phase Convs that
        # only save taps (ENet's k3 s2) measured 0.35-0.39x against DCR's 1.13-1.19x: not taken
        gather=True,
        phase_convs=True,
        bugs=(_IREE_CRD,),
    ),
    # RKNN (benchmarks/toolchains/rknn.md): every sample and block in this form builds and matches
    # ORT to float16 accuracy on the simulator, 2-D wholly on the NPU (DepthToSpace CRD and DCR,
    # b 2/4/8; b 3 goes to the CPU). A 1-D shuffle keeps one Reshape on the CPU (RKNN rewrites its
    # Transpose as Reshape + Gather); the alternatives measured were no better: a rank-3 cascade
    # builds the same graph, the channels-last Transpose goes to the CPU on large blocks, and
    # keeping ConvTranspose1d (all NPU) costs 2-8x the builder's estimated NPU cycles. Rank <= 4
    # also avoids the 3-D rank-6 shuffle bug.
    # max_block 2: the builder estimates a DepthToSpace(8) at ~30x a cascade of three
    # DepthToSpace(2) (FCN k16 s8 block: 199M cycles vs 6.1M, the original ConvTranspose 8.4M);
    # b <= 4 unchanged.
    TargetProfile(
        name="rknn",
        description="Rockchip RKNN (rk3588): DepthToSpace (CRD/DCR) on the NPU, blocks of 2; "
        "Reshape/Transpose of rank <= 4 (a 2-D Transpose or 1-D shuffle Reshape falls back to the "
        "CPU; rank 6 after a 3-D Conv is wrong)",
        source="measured here (rknn-toolkit2 2.5.0 simulator, rk3588, float16; builder cycle "
        "estimates)",
        depth_to_space=("CRD", "DCR"),
        max_block=2,
        max_rank=4,
        bugs=(_RKNN_CONV3D_SHUFFLE,),
    ),
    TargetProfile(
        name="tensorrt",
        description="TensorRT: DepthToSpace in both modes (shuffle layers), dynamic shapes, "
        "rank <= 8",
        source="published: TensorRT ONNX parser operator support "
        "(onnx-tensorrt docs/operators.md)",
        depth_to_space=("CRD", "DCR"),
        max_rank=8,
        gather=True,
    ),
    TargetProfile(
        name="ethos-u",
        description="Arm Ethos-U (Vela): no DEPTH_TO_SPACE, no GATHER, TRANSPOSE of rank <= 4",
        source="published: Vela SUPPORTED_OPS.md (ethos-u-vela); not run here",
        depth_to_space=(),
        max_rank=4,
        dynamic_shapes=False,
    ),
    TargetProfile(
        name="ethos-n",
        description="Arm Ethos-N: DepthToSpace with block size 2 only",
        source="published: Arm NN Ethos-N backend supported operators; not run here",
        depth_to_space=("DCR",),
        max_block=2,
        max_rank=4,
        dynamic_shapes=False,
    ),
    TargetProfile(
        name="vivante",
        description="VeriSilicon Vivante (TIM-VX): DepthToSpace in DCR mode only",
        source="published: TIM-VX operator list (DepthToSpace: DCR); not run here",
        depth_to_space=("DCR",),
        max_rank=4,
        dynamic_shapes=False,
    ),
    TargetProfile(
        name="kneron",
        description="Kneron KL520/KL720: DepthToSpace CRD with block size 2",
        source="published: Kneron toolchain ONNX operator support (KL520/KL720); not run here",
        depth_to_space=("CRD",),
        max_block=2,
        max_rank=4,
        dynamic_shapes=False,
    ),
]

BUILTIN: Dict[str, TargetProfile] = {p.name: p for p in _PROFILES}
