"""Small hand-built ONNX models of the ops a deconv2sub rewrite emits, to probe a toolchain with.

Each case is one tiny model (opset 17 unless named, IR 8, float32) of one op pattern: DepthToSpace
CRD/DCR at several block sizes and channel counts, the Reshape/Transpose shuffles of ranks 4-8,
Slice crops, a Concat of phase Convs, Gather, Gemm and a ConvTranspose of a 1x1 input. The oracle
is ONNX Runtime running the same model (:func:`ort_outputs`). Used by
``tests/toolchains/test_toolchain_*.py`` and ``benchmarks/toolchains/probe_ops.py``.

It also holds the one table of the bundled samples' static shapes (:data:`SAMPLE_SHAPES`) and the
rewrite forms (:data:`FORMS`) that every toolchain test file parametrises over
(``toolchain_checks.sample_params``).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Tuple, Union

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from deconv2sub.targets import TargetProfile

Case = Tuple[onnx.ModelProto, Dict[str, np.ndarray]]


def _model(nodes, inputs, out_shape, inits=(), opset=17) -> onnx.ModelProto:
    """A one-output graph ``X... -> Y`` over float32."""
    graph = helper.make_graph(
        nodes, "case",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, list(out_shape))],
        initializer=list(inits),
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _feeds(inputs, seed=0) -> Dict[str, np.ndarray]:
    """Seeded N(0, 1) float32 feeds for ``(name, shape)`` pairs."""
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(s).astype(np.float32) for n, s in inputs}


def depth_to_space(mode: str, block: int, c_out: int, h: int = 2, w: int = 3) -> Case:
    """``X [1, c_out*b*b, h, w] -> DepthToSpace(b, mode) -> Y [1, c_out, h*b, w*b]``."""
    inputs = [("X", [1, c_out * block * block, h, w])]
    node = helper.make_node("DepthToSpace", ["X"], ["Y"], blocksize=block, mode=mode)
    return _model([node], inputs, [1, c_out, h * block, w * block]), _feeds(inputs)


def reshape_transpose(first: List[int], perm: List[int], last: List[int]) -> Case:
    """``X [prod(first)...] -> Reshape(first) -> Transpose(perm) -> Reshape(last) -> Y``."""
    flat = [first[0], int(np.prod(first[1:]))]
    inputs = [("X", flat)]
    inits = [numpy_helper.from_array(np.array(first, np.int64), "s1"),
             numpy_helper.from_array(np.array(last, np.int64), "s2")]
    nodes = [helper.make_node("Reshape", ["X", "s1"], ["a"]),
             helper.make_node("Transpose", ["a"], ["b"], perm=perm),
             helper.make_node("Reshape", ["b", "s2"], ["Y"])]
    return _model(nodes, inputs, last, inits), _feeds(inputs)


def slice_crop() -> Case:
    """``X [1, 2, 6, 7] -> Slice [1:-1] on H and W -> Y [1, 2, 4, 5]``."""
    inputs = [("X", [1, 2, 6, 7])]
    inits = [numpy_helper.from_array(np.array(v, np.int64), n)
             for n, v in (("st", [1, 1]), ("en", [-1, -1]), ("ax", [2, 3]))]
    node = helper.make_node("Slice", ["X", "st", "en", "ax"], ["Y"])
    return _model([node], inputs, [1, 2, 4, 5], inits), _feeds(inputs)


def concat_convs() -> Case:
    """Two phase Convs (k2 and k1) of one input, concatenated on channels (the per-phase form)."""
    rng = np.random.default_rng(1)
    inputs = [("X", [1, 3, 5, 5])]
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 2, 2)).astype(np.float32), "W1"),
             numpy_helper.from_array(rng.standard_normal((2, 3, 1, 1)).astype(np.float32), "W2")]
    nodes = [helper.make_node("Conv", ["X", "W1"], ["a"], pads=[1, 1, 0, 0]),
             helper.make_node("Conv", ["X", "W2"], ["b"]),
             helper.make_node("Concat", ["a", "b"], ["Y"], axis=1)]
    return _model(nodes, inputs, [1, 6, 5, 5], inits), _feeds(inputs)


def gather(axis: int) -> Case:
    """``Gather`` of rows in a permuted order that drops one (as the default shuffle does)."""
    shape = [4, 3, 5]
    idx = np.array({0: [3, 1, 0], 2: [4, 0, 2, 1]}[axis], np.int64)
    inputs = [("X", shape)]
    out = list(shape)
    out[axis] = len(idx)
    node = helper.make_node("Gather", ["X", "I"], ["Y"], axis=axis)
    return _model([node], inputs, out, [numpy_helper.from_array(idx, "I")]), _feeds(inputs)


def gemm() -> Case:
    """``Gemm(X [6, 5], W [8, 5]^T) + B`` (the pointwise-Gemm form)."""
    rng = np.random.default_rng(2)
    inputs = [("X", [6, 5])]
    inits = [numpy_helper.from_array(rng.standard_normal((8, 5)).astype(np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "B")]
    node = helper.make_node("Gemm", ["X", "W", "B"], ["Y"], transB=1)
    return _model([node], inputs, [6, 8], inits), _feeds(inputs)


def convtranspose_1x1_input() -> Case:
    """``ConvTranspose`` k4 s1 of a 1x1 input (DCGAN's first layer)."""
    rng = np.random.default_rng(3)
    inputs = [("X", [1, 6, 1, 1])]
    w = numpy_helper.from_array(rng.standard_normal((6, 3, 4, 4)).astype(np.float32), "W")
    node = helper.make_node("ConvTranspose", ["X", "W"], ["Y"], kernel_shape=[4, 4])
    return _model([node], inputs, [1, 3, 4, 4], [w]), _feeds(inputs)


def convtranspose3d_block(kernel: int, stride: int, pad: int, bn_relu: bool,
                          spatial=(3, 4, 5), c_in: int = 8, c_out: int = 4) -> Case:
    """``X [1, c_in, D, H, W] -> ConvTranspose3d [-> BatchNormalization -> Relu] -> Y``.

    A small 3-D upsampling block (the shape of benchmarks/bench_blocks.py's 3-D blocks).
    """
    rng = np.random.default_rng(kernel * 10 + stride)
    vals = {"W": rng.standard_normal((c_in, c_out) + (kernel,) * 3) / np.sqrt(c_in * kernel**3),
            "B": 0.1 * rng.standard_normal(c_out)}
    out = "Y" if not bn_relu else "up"
    nodes = [helper.make_node("ConvTranspose", ["X", "W", "B"], [out], strides=[stride] * 3,
                              pads=[pad] * 6)]
    if bn_relu:
        vals.update(s=1 + 0.1 * rng.standard_normal(c_out), b=0.1 * rng.standard_normal(c_out),
                    mu=0.1 * rng.standard_normal(c_out), var=0.5 + rng.random(c_out))
        nodes += [helper.make_node("BatchNormalization", ["up", "s", "b", "mu", "var"], ["bn"]),
                  helper.make_node("Relu", ["bn"], ["Y"])]
    inits = [numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in vals.items()]
    inputs = [("X", [1, c_in, *spatial])]
    out_shape = [1, c_out] + [stride * (i - 1) + kernel - 2 * pad for i in spatial]
    return _model(nodes, inputs, out_shape, inits), _feeds(inputs)


def all_cases() -> Dict[str, Callable[[], Case]]:
    """Every case, by name (built lazily)."""
    cases: Dict[str, Callable[[], Case]] = {}
    for mode in ("CRD", "DCR"):
        for b in (2, 3, 4, 8):
            for c in sorted({1, 3, b}):
                tag = "eq" if c == b else "ne"
                cases[f"d2s_{mode}_b{b}_c{c}_{tag}"] = (
                    lambda mode=mode, b=b, c=c: depth_to_space(mode, b, c))
    s, c, L = 4, 3, 5
    cases["shuffle1d_rank4"] = lambda: reshape_transpose([1, c, s, L], [0, 1, 3, 2], [1, c, L * s])
    cases["shuffle_rank5"] = lambda: reshape_transpose([1, c, 2, 3, 4], [0, 1, 3, 2, 4],
                                                       [1, c, 6, 4])
    cases["shuffle2d_rank6_crd"] = lambda: reshape_transpose(
        [1, c, 2, 2, 3, 4], [0, 1, 4, 2, 5, 3], [1, c, 6, 8])
    cases["shuffle2d_rank6_dcr"] = lambda: reshape_transpose(
        [1, 2, 2, c, 3, 4], [0, 3, 4, 1, 5, 2], [1, c, 6, 8])
    cases["shuffle3d_rank8"] = lambda: reshape_transpose(
        [1, c, 2, 2, 2, 2, 3, 2], [0, 1, 5, 2, 6, 3, 7, 4], [1, c, 4, 6, 4])
    cases["slice_crop"] = slice_crop
    cases["concat_convs"] = concat_convs
    cases["gather_axis0"] = lambda: gather(0)
    cases["gather_axis2"] = lambda: gather(2)
    cases["gemm"] = gemm
    cases["convtranspose_1x1_input"] = convtranspose_1x1_input
    return cases


def ort_outputs(model: Union[onnx.ModelProto, str],
                feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """ONNX Runtime's outputs of ``model`` (a model or a path; CPU, no graph optimisations).

    Returns:
        The outputs keyed by output name.
    """
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    sess = ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, dict(feeds))))


def close(outs: Dict[str, np.ndarray], ref: Dict[str, np.ndarray], rtol: float = 1e-3,
          atol: float = 1e-3) -> Tuple[float, bool]:
    """Compares a toolchain's outputs with ORT's, elementwise.

    The tolerance is ``atol`` abs + ``rtol`` rel, 1e-3 and 1e-3 unless given (RKNN's float16 gets
    its module's ``TOLERANCES``). A missing output raises ``KeyError``.

    Returns:
        (max abs error, every element within tolerance); ``(inf, False)`` on a shape mismatch.
    """
    err, ok = 0.0, True
    for name, r in ref.items():
        o = np.asarray(outs[name])
        if o.shape != r.shape:
            return float("inf"), False
        d = np.abs(o.astype(np.float64) - r)
        err = max(err, float(d.max()))
        ok = ok and bool(np.all(d <= atol + rtol * np.abs(r)))
    return err, ok


#: the deconv2sub forms measured on toolchains: ConvertOptions fields, as the CLI sets them
FORMS = {
    "crd": dict(strategy="depth_to_space", order="CRD"),
    "dcr": dict(strategy="depth_to_space", order="DCR"),
    "reshape": dict(strategy="depth_to_space", shuffle="reshape"),
    "default": dict(target="onnxruntime"),
    "transpose": dict(strategy="transpose"),
}
#: the forms a sample test runs: the original model ("original": no conversion), then FORMS
ALL_FORMS = ("original", *FORMS)
#: forms named by a target profile (``--target NAME``), for toolchains with their own profile
#: a profile that takes ``depth_to_space_3d`` (ncnn's limits, 3-D rewritten): the one 3-D form
#: pnnx/ncnn converts; no built-in profile takes it (LiteRT cannot convert it, MNN and ncnn run it
#: slower than their own, IREE miscompiles its CRD DepthToSpace)
NCNN3D = TargetProfile(name="ncnn3d", depth_to_space=("CRD",), max_rank=4,
                       keep_strides=((1, 1), (2, 2)), depth_to_space_3d=True)

TARGET_FORMS = {
    "portable": dict(target="portable"),
    "rknn": dict(target="rknn"),
    "ncnn3d": dict(target=NCNN3D),
}

#: a static input shape per sample (samples/README.md), small enough to compile quickly; batch 1
#: (ncnn has no batch axis)
SAMPLE_SHAPES = {
    "seed_example": {"x": [1, 1, 4, 4]},
    "autoencoder": {"x": [1, 1, 28, 28]},
    "dcgan_generator": {"z": [1, 16, 1, 1]},
    "enet_decoder": {"x": [1, 32, 8, 8]},
    "grouped_upsampler": {"x": [1, 8, 12, 12]},
    "hifigan_upsampler": {"mel": [1, 16, 32]},
    "unet3d_upblock": {"x": [1, 16, 2, 2, 2], "skip": [1, 8, 4, 4, 4]},
    "unet_decoder": {"x": [1, 3, 32, 32]},
}

#: the same samples at the non-square sizes that tests/toolchains/test_toolchain_tflite.py and the
#: table of benchmarks/toolchains/tflite.md use: onnx2tf guesses layouts by shape, so a tensor with
#: C == H == W is read the wrong way round (repro conv_after_square_reshape.onnx); with these sizes
#: the only square tensors are the ones the samples make themselves (DCGAN's [1, 16, 16, 16])
TFLITE_SAMPLE_SHAPES = {
    **SAMPLE_SHAPES,
    "unet_decoder": {"x": [1, 3, 64, 48]},
    "enet_decoder": {"x": [1, 32, 12, 16]},
    "hifigan_upsampler": {"mel": [1, 16, 40]},
    "unet3d_upblock": {"x": [1, 16, 4, 6, 5], "skip": [1, 8, 8, 12, 10]},
    "grouped_upsampler": {"x": [1, 8, 12, 16]},
}


def random_feeds(shapes: Dict[str, List[int]], seed: int = 0) -> Dict[str, np.ndarray]:
    """Seeded N(0, 1) float32 feeds of the given shapes."""
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(s).astype(np.float32) for n, s in shapes.items()}


def unknown_op_model() -> onnx.ModelProto:
    """``X [1, 2] -> NoSuchOp -> Y``: an op of the default domain that no converter knows."""
    node = helper.make_node("NoSuchOp", ["X"], ["Y"])
    return _model([node], [("X", [1, 2])], [1, 2])
