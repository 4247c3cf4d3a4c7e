"""Target profiles.

Built-in and TOML profiles, the portable default, profile limits honoured by every emitted graph
(checked against ONNX Runtime running the original), MACs, kept strides, toolchain bugs.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import onnx
import pytest
from builders import REPO_ROOT, assert_equivalent, convtranspose_model, op_types
from click.testing import CliRunner

import deconv2sub
from deconv2sub import ConvertOptions
from deconv2sub.cli import main
from deconv2sub.targets import BUILTIN, ProfileError, TargetProfile, load_profile_file, resolve

sys.path.insert(0, os.path.join(REPO_ROOT, "benchmarks"))

PORTABLE_OPS = {"Conv", "DepthToSpace", "Slice", "Reshape", "Transpose"}


def _rng(seed=0):
    return np.random.default_rng(seed)


def _x(shape, seed=0):
    return _rng(seed).standard_normal(shape).astype(np.float32)


def _all_nodes(model):
    return list(model.graph.node)


#: run-time shape arithmetic (symbolic sizes only): Gather of one Shape dim, scalar Mul, Unsqueeze
SHAPE_OPS = {"Shape", "Gather", "Unsqueeze", "Mul", "Concat"}


def _assert_within(
    profile: TargetProfile, converted: onnx.ModelProto, static: bool, shape_free: bool = True
):
    """Every emitted node is one the profile allows, with its limits.

    Without shape arithmetic where the sizes are static or ``shape_free`` (1-D, and 2-D with equal
    strides, need none).
    """
    allowed = PORTABLE_OPS | ({"Gather"} if profile.gather else set())
    if profile.phase_convs:
        allowed |= {"Concat"}
    if not static and not shape_free and profile.dynamic_shapes:
        allowed |= SHAPE_OPS
    shape_outputs = {n.output[0] for n in _all_nodes(converted) if n.op_type == "Shape"}
    for node in _all_nodes(converted):
        assert node.op_type in allowed, node.op_type
        if node.op_type == "Gather" and not profile.gather:
            assert node.input[0] in shape_outputs, "a data Gather on a target without Gather"
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "DepthToSpace":
            mode = attrs.get("mode", b"DCR").decode()
            assert mode in profile.depth_to_space
            assert profile.max_block == 0 or attrs["blocksize"] <= profile.max_block
        if node.op_type == "Transpose":
            assert len(attrs["perm"]) <= profile.max_rank
    if static or shape_free:
        assert "Shape" not in op_types(converted)


# ---- profiles as data ----------------------------------------------------------------------------
def test_builtin_profiles_are_valid_and_sourced():
    """Every built-in profile is valid and cites its source."""
    for name in [
        "portable",
        "onnxruntime",
        "openvino",
        "tflite",
        "ncnn",
        "mnn",
        "tvm",
        "iree",
        "rknn",
        "tensorrt",
        "ethos-u",
        "ethos-n",
        "vivante",
        "kneron",
    ]:
        p = BUILTIN[name]
        assert p.name == name and p.source and p.description
    assert resolve(None).name == "portable"
    assert BUILTIN["ncnn"].depth_to_space == ("CRD",) and BUILTIN["iree"].depth_to_space == ("DCR",)
    assert BUILTIN["ethos-u"].depth_to_space == () and BUILTIN["ethos-n"].max_block == 2


def test_toml_profile(tmp_path):
    """A TOML profile loads with its fields and bugs."""
    f = tmp_path / "npu.toml"
    f.write_text(
        'name = "npu"\ndepth_to_space = ["dcr"]\nmax_block = 2\nkeep_strides = [[1, 1]]\n'
        '[[bugs]]\ntoolchain = "npu"\nop = "DepthToSpace"\nmode = "CRD"\nnote = "wrong"\n'
    )
    p = load_profile_file(str(f))
    assert (p.name, p.depth_to_space, p.max_block, p.keep_strides) == (
        "npu",
        ("DCR",),
        2,
        ((1, 1),),
    )
    assert p.bugs[0].mode == "CRD" and resolve(str(f)) == p


@pytest.mark.parametrize(
    "text,needle",
    [
        ("depth_to_space = ['XYZ']", "depth_to_space modes"),
        ("max_rank = 2", "max_rank"),
        ("max_block = 1", "max_block"),
        ("gather = 'yes'", "gather must be true or false"),
        ("depth_to_space_3d = 1", "depth_to_space_3d must be true or false"),
        ("speed = 3", "unknown profile key"),
        ("name = ", "not a valid TOML file"),
        ("rule = 'fastest'", "rule"),
        ("keep_when = ['slow']", "keep_when facts"),
        ("fold_crop_always_when = ['wide']", "fold_crop_always_when facts"),
    ],
)
def test_bad_toml_profiles_are_one_line_errors(tmp_path, text, needle):
    """A bad TOML profile is a one-line ProfileError, and exit code 2 in the CLI."""
    f = tmp_path / "bad.toml"
    f.write_text(text + "\n")
    with pytest.raises(ProfileError, match=needle) as info:
        load_profile_file(str(f))
    assert "\n" not in str(info.value)
    r = CliRunner().invoke(main, ["inspect", "whatever.onnx", "--target", str(f)])
    assert r.exit_code == 2 and needle.split()[0] in r.output and "Traceback" not in r.output


def test_unknown_target_is_a_usage_error(tmp_path):
    """An unknown target name or a missing profile file is a usage error (exit 2)."""
    r = CliRunner().invoke(main, ["inspect", "m.onnx", "--target", "nosuch"])
    assert r.exit_code == 2 and "unknown target 'nosuch'" in r.output
    r = CliRunner().invoke(main, ["inspect", "m.onnx", "--target", str(tmp_path / "missing.toml")])
    assert r.exit_code == 2 and "no such target profile file" in r.output


# ---- every profile's output stays within its limits, exact against ORT ---------------------------
SWEEP = [
    # rank, strides, kernel, pad, output_padding, group
    (1, (2,), (4,), 1, 0, 1),
    (1, (8,), (16,), 4, 0, 1),
    (1, (3,), (5,), 2, 1, 2),
    (2, (2, 2), (4, 4), 1, 0, 1),
    (2, (2, 2), (3, 3), 1, 1, 2),
    (2, (8, 8), (16, 16), 4, 0, 1),
    (2, (4, 4), (4, 4), 0, 0, 2),
    (2, (6, 6), (6, 6), 0, 0, 1),
    (2, (2, 3), (4, 3), 1, 0, 1),
    (2, (3, 2), (3, 4), 0, 1, 2),
    (2, (1, 1), (3, 3), 1, 0, 1),
    (3, (2, 2, 2), (2, 2, 2), 0, 0, 1),
    (3, (2, 2, 2), (3, 3, 3), 1, 1, 2),
    (3, (2, 1, 3), (4, 3, 3), 1, 0, 1),
]
PROFILES = [
    "portable",
    "tflite",
    "ncnn",
    "mnn",
    "iree",
    "ethos-u",
    "ethos-n",
    "kneron",
    "vivante",
    TargetProfile(name="dcr_block4", depth_to_space=("DCR",), max_block=4),
]


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p if isinstance(p, str) else p.name)
@pytest.mark.parametrize(
    "case", SWEEP, ids=lambda c: f"{c[0]}d-s{'x'.join(map(str, c[1]))}-k{c[2][0]}-g{c[5]}"
)
@pytest.mark.parametrize("symbolic", [False, True], ids=["static", "symbolic"])
def test_profile_output_is_exact_and_within_limits(profile, case, symbolic):
    """Each profile's output is exact against ORT and uses only the ops and limits it allows."""
    rank, strides, kernel, pad, op, group = case
    prof = resolve(profile)
    c, m_per_group = 2 * group, 3
    w = _x((c, m_per_group) + kernel, 1)
    b = _x((m_per_group * group,), 2)
    spatial = [5, 4, 3][:rank]
    shape = [1, c] + spatial
    in_shape = ["N", c] + [f"d{i}" for i in range(rank)] if symbolic else shape
    m = convtranspose_model(
        in_shape,
        w,
        b,
        strides=list(strides),
        pads=[pad] * (2 * rank),
        output_padding=[op] * rank if op else None,
        group=group,
    )
    converted, report = deconv2sub.convert_model(m, ConvertOptions(target=prof))
    entry = report.nodes[0]
    if not entry.rewritten:
        # the only refusal a profile may give here: shape arithmetic it does not allow
        # or a node the profile keeps: by rank or strides, or by one of its keep_when facts
        by_fact = prof.keep_when and entry.reason.startswith(
            f"target '{prof.name}' keeps ConvTranspose: ")
        assert (
            symbolic and not prof.dynamic_shapes and entry.code == "shape_arithmetic"
        ) or (entry.code == "target_keeps" and (prof.keeps(strides) or by_fact))
        return
    phase_convs = prof.phase_convs and prof.gather  # phase Convs + row Gather fold a crop
    allowed = ("depth_to_space", "low_rank_transpose", "depth_to_space_3d") + (
        ("per_phase",) if phase_convs else ())
    assert entry.strategy in allowed, entry.strategy_reason
    shape_free = rank == 1 or (
        rank == 2
        and strides[0] == strides[1]
        and prof.depth_to_space
        and (group == 1 or "CRD" in prof.depth_to_space)
    )
    _assert_within(prof, converted, static=not symbolic, shape_free=shape_free)
    feeds = [shape] + ([[2, c] + [v + 2 for v in spatial]] if symbolic else [])
    for i, s in enumerate(feeds):
        assert_equivalent(m, converted, {"X": _x(s, 10 + i)})


def test_portable_default_2d_is_conv_depth_to_space():
    """DCGAN k4 s2 p1: Conv + DepthToSpace(CRD) + Slice, nothing else, by default."""
    m = convtranspose_model(
        [1, 4, 5, 6], _x((4, 3, 4, 4)), _x((3,)), strides=[2, 2], pads=[1, 1, 1, 1]
    )
    converted, report = deconv2sub.convert_model(m)
    assert op_types(converted) == ["Conv", "DepthToSpace", "Slice"]
    assert report.target == "portable" and report.nodes[0].shuffle == "DepthToSpace(CRD)"
    assert_equivalent(m, converted, {"X": _x((1, 4, 5, 6))})
    # ENet k3 s2 p1 op1: the crop folds away (no Slice)
    m = convtranspose_model(
        [1, 4, 5, 6],
        _x((4, 3, 3, 3)),
        None,
        strides=[2, 2],
        pads=[1, 1, 1, 1],
        output_padding=[1, 1],
    )
    converted, _ = deconv2sub.convert_model(m)
    assert op_types(converted) == ["Conv", "DepthToSpace"]
    assert_equivalent(m, converted, {"X": _x((1, 4, 5, 6))})


def test_one_d_symbolic_needs_no_shape_arithmetic():
    """1-D with symbolic batch and length.

    Reshape [0, M, s, -1] -> Transpose -> Reshape [0, M, -1].
    """
    m = convtranspose_model(["N", 4, "L"], _x((4, 3, 16)), None, strides=[8], pads=[4, 4])
    converted, report = deconv2sub.convert_model(m, ConvertOptions(target="tvm"))
    assert report.nodes[0].rewritten and "Shape" not in op_types(converted)
    assert op_types(converted) == ["Conv", "Reshape", "Transpose", "Reshape", "Slice"]
    for s in [(1, 4, 7), (3, 4, 2)]:
        assert_equivalent(m, converted, {"X": _x(s)})


def test_block_cascade_for_small_max_block():
    """Stride 8 on Ethos-N (block 2 at most): three DepthToSpace(2), channels ordered to match."""
    m = convtranspose_model(
        [1, 3, 4, 5], _x((3, 2, 16, 16)), _x((2,)), strides=[8, 8], pads=[4, 4, 4, 4]
    )
    converted, report = deconv2sub.convert_model(m, ConvertOptions(target="ethos-n"))
    assert op_types(converted).count("DepthToSpace") == 3
    assert report.nodes[0].shuffle == "DepthToSpace(DCR) cascade 2x2x2"
    assert_equivalent(m, converted, {"X": _x((1, 3, 4, 5))})


def test_sinking_follows_a_reordered_cascade():
    """BN + Relu moved above a DepthToSpace cascade.

    Their per-channel values follow the row order.
    """
    from onnx import TensorProto, helper, numpy_helper

    w, m_out = _x((3, 2, 8, 8)), 2
    inits = [numpy_helper.from_array(w, "W")] + [
        numpy_helper.from_array(v.astype(np.float32), n)
        for n, v in [
            ("s", 1 + _x((m_out,), 3)),
            ("b", _x((m_out,), 4)),
            ("mu", _x((m_out,), 5)),
            ("var", 1 + _rng(6).random(m_out)),
        ]
    ]
    nodes = [
        helper.make_node("ConvTranspose", ["X", "W"], ["t"], strides=[4, 4], pads=[2, 2, 2, 2]),
        helper.make_node("BatchNormalization", ["t", "s", "b", "mu", "var"], ["u"]),
        helper.make_node("Relu", ["u"], ["Y"]),
    ]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 3, 5, 5])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    converted, report = deconv2sub.convert_model(m, ConvertOptions(target="kneron"))
    assert report.nodes[0].sunk and op_types(converted).count("DepthToSpace") == 2
    assert_equivalent(m, converted, {"X": _x((1, 3, 5, 5))})


# ---- MACs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["portable", "onnxruntime", "rknn", "ethos-n"])
def test_one_by_one_input_keeps_the_macs(target):
    """The latent projection of a DCGAN generator (k4 s1 on 1x1 -> 4x4).

    A 1x1 Conv with 16x the channels + DepthToSpace(4), the original's MACs, instead of a 4x4 Conv
    over a padded 7x7 input.
    """
    m = convtranspose_model(["N", 16, 1, 1], _x((16, 8, 4, 4)), _x((8,)), strides=[1, 1])
    converted, report = deconv2sub.convert_model(m, ConvertOptions(target=target))
    entry = report.nodes[0]
    assert entry.conv_kernel == [1, 1] and entry.conv_channels == 8 * 16
    assert entry.macs_before == entry.macs_after == 16 * 8 * 16 and entry.macs_ratio == 1.0
    assert not entry.warnings and entry.strides == [1, 1]
    for n in (1, 3):
        assert_equivalent(m, converted, {"X": _x((n, 16, 1, 1))})


def test_macs_warning_for_zero_taps():
    """A rewrite computing zero taps reports its MACs ratio to the original's."""
    m = convtranspose_model(
        [1, 4, 16, 16],
        _x((4, 3, 3, 3)),
        None,
        strides=[2, 2],
        pads=[1, 1, 1, 1],
        output_padding=[1, 1],
    )
    _, report = deconv2sub.convert_model(m)
    entry = report.nodes[0]
    assert entry.macs_ratio == pytest.approx(16 / 9) and entry.macs_after > 1.25 * entry.macs_before
    assert (
        entry.warnings
        and "zero taps" in entry.warnings[0]
        and "warning: MACs 1.78x" in entry.summary()
    )
    m = convtranspose_model(
        [1, 4, 16, 16], _x((4, 3, 4, 4)), None, strides=[2, 2], pads=[1, 1, 1, 1]
    )
    _, report = deconv2sub.convert_model(m)
    assert not report.nodes[0].warnings and report.nodes[0].macs_ratio < 1.25


# ---- kept strides, toolchain bugs ----------------------------------------------------------------
def test_kept_strides_leave_the_node_with_the_reason():
    """A profile's kept strides leave the ConvTranspose, with the reason."""
    keep = TargetProfile(name="keeper", keep_strides=((2, 2),))
    m = convtranspose_model([1, 4, 6, 6], _x((4, 3, 4, 4)), None, strides=[2, 2], pads=[1, 1, 1, 1])
    converted, report = deconv2sub.convert_model(m, ConvertOptions(target=keep))
    assert (
        not report.nodes[0].rewritten
        and report.nodes[0].code == "target_keeps"
        and "keeps ConvTranspose for strides [2, 2]" in report.nodes[0].reason
    )
    assert op_types(converted) == ["ConvTranspose"]
    m = convtranspose_model([1, 4, 6, 6], _x((4, 3, 6, 6)), None, strides=[3, 3])
    _, report = deconv2sub.convert_model(m, ConvertOptions(target=keep))
    assert report.nodes[0].rewritten


def test_toolchain_bug_warnings(tmp_path):
    """CRD DepthToSpace with C/b^2 != b is miscompiled by IREE.

    Portable's output warns for --toolchain iree, the iree profile's (DCR) does not; a C/b^2 == b
    DepthToSpace does not warn.
    """
    m = convtranspose_model([1, 4, 5, 6], _x((4, 3, 4, 4)), None, strides=[2, 2], pads=[1, 1, 1, 1])
    _, report = deconv2sub.convert_model(m, ConvertOptions(toolchains=("iree",)))
    (hit,) = report.toolchain_warnings
    assert hit["toolchain"] == "iree" and hit["op"] == "DepthToSpace" and "CRD" in hit["detail"]
    _, report = deconv2sub.convert_model(m, ConvertOptions(target="iree", toolchains=("iree",)))
    assert report.toolchain_warnings == []
    m2 = convtranspose_model(
        [1, 4, 5, 6], _x((4, 2, 4, 4)), None, strides=[2, 2], pads=[1, 1, 1, 1]
    )
    _, report = deconv2sub.convert_model(m2, ConvertOptions(toolchains=("iree",)))
    assert report.toolchain_warnings == []  # C/b^2 = 2 = b
    src, out = tmp_path / "m.onnx", tmp_path / "o.onnx"
    onnx.save(m, src)
    r = CliRunner().invoke(
        main, ["convert", str(src), "-o", str(out), "--toolchain", "iree", "--no-verify"]
    )
    assert r.exit_code == 0 and "warning: known toolchain bug: iree" in r.output
    r = CliRunner().invoke(main, ["convert", str(src), "-o", str(out), "--toolchain", "nosuch"])
    assert r.exit_code == 2 and "no known bugs recorded for nosuch" in r.output


# ---- the acceptance: samples and benchmark blocks in the portable form -------------------
SAMPLES_DIR = os.path.join(REPO_ROOT, "samples")
ORIGINAL_OPS_OK = PORTABLE_OPS


def _portable_ops_only(
    original: onnx.ModelProto, converted: onnx.ModelProto, shape_ops: bool = False
):
    allowed = (
        PORTABLE_OPS
        | (set(op_types(original)) - {"ConvTranspose"})
        | (SHAPE_OPS if shape_ops else set())
    )
    assert set(op_types(converted)) <= allowed, set(op_types(converted)) - allowed
    for n in converted.graph.node:
        if n.op_type == "Transpose":
            assert len(onnx.helper.get_attribute_value(n.attribute[0])) <= 4
    assert "ConvTranspose" not in op_types(converted)


@pytest.mark.parametrize(
    "name", sorted(f[:-5] for f in os.listdir(SAMPLES_DIR) if f.endswith(".onnx"))
)
def test_samples_default_form(name):
    """Every sample converts to portable ops only with the default target."""
    original = onnx.load(os.path.join(SAMPLES_DIR, name + ".onnx"))
    converted, report = deconv2sub.convert_model(original)
    assert report.rewritten and not report.skipped
    # a 3-D shuffle with symbolic D, H and W cannot be written with constant Reshapes of rank <= 4
    _portable_ops_only(original, converted, shape_ops=name == "unet3d_upblock")


def test_benchmark_blocks_default_form():
    """Every benchmark block converts to portable ops only with the default target."""
    from bench_blocks import all_blocks, build_block

    for spec in all_blocks():
        original = build_block(spec)
        converted, report = deconv2sub.convert_model(original)
        assert len(report.rewritten) == 1, spec.label
        _portable_ops_only(original, converted)


def test_mnn_keeps_what_it_runs_better_and_rewrites_the_rest():
    """--target mnn keeps 2-D nodes whose rewrite hits its inexact 2x2 Conv, grouped ones and s8.

    It rewrites a pointwise k2 s2 node (a 1x1 Conv + DCR DepthToSpace, faster on MNN) and 1-D
    nodes (MNN's own 1-D ConvTranspose gives the wrong output rank); a wide 2x2 Conv warns for
    --toolchain mnn, and portable folds it into a 3x3 one. Every rewrite matches ORT running the
    original.
    """
    m = convtranspose_model(
        [1, 64, 32, 32], _x((64, 8, 4, 4)), _x((8,)), strides=[2, 2], pads=[1, 1, 1, 1]
    )
    converted, report = deconv2sub.convert_model(m, ConvertOptions(target="mnn"))
    assert report.nodes[0].code == "target_keeps" and op_types(converted) == ["ConvTranspose"]
    assert "2x2 with 32 or more input channels" in report.nodes[0].reason
    plain = TargetProfile(name="plain", depth_to_space=("CRD",))
    _, report = deconv2sub.convert_model(m, ConvertOptions(target=plain, toolchains=("mnn",)))
    assert [h["op"] for h in report.toolchain_warnings] == ["Conv"]
    # portable folds that crop into a 3x3 Conv (fold_crop_always_when): no 2x2, no warning
    converted, report = deconv2sub.convert_model(m, ConvertOptions(toolchains=("mnn",)))
    assert not report.toolchain_warnings and report.nodes[0].conv_kernel == [3, 3]
    assert "crop folded into the kernel" in report.nodes[0].strategy_reason
    assert op_types(converted) == ["Conv", "DepthToSpace"]
    assert_equivalent(m, converted, {"X": _x((1, 64, 32, 32))})
    small = convtranspose_model(
        [1, 64, 8, 8], _x((64, 8, 4, 4)), _x((8,)), strides=[2, 2], pads=[1, 1, 1, 1]
    )
    converted, report = deconv2sub.convert_model(small, ConvertOptions(target="mnn"))
    assert report.nodes[0].rewritten  # an 8x8 input is outside the bug's region
    assert_equivalent(small, converted, {"X": _x((1, 64, 8, 8))})
    pointwise = convtranspose_model([1, 64, 32, 32], _x((64, 8, 2, 2)), _x((8,)), strides=[2, 2])
    converted, report = deconv2sub.convert_model(pointwise, ConvertOptions(target="mnn"))
    assert op_types(converted) == ["Conv", "DepthToSpace"]
    assert [a.s for a in converted.graph.node[1].attribute if a.name == "mode"] == [b"DCR"]
    assert_equivalent(pointwise, converted, {"X": _x((1, 64, 32, 32))})
    grouped = convtranspose_model(
        [1, 8, 6, 6], _x((8, 2, 4, 4)), None, strides=[2, 2], pads=[1, 1, 1, 1], group=4
    )
    _, report = deconv2sub.convert_model(grouped, ConvertOptions(target="mnn"))
    assert report.nodes[0].code == "target_keeps" and "grouped" in report.nodes[0].reason
    s8 = convtranspose_model([1, 4, 6, 6], _x((4, 4, 16, 16)), None, strides=[8, 8], pads=[4] * 4)
    _, report = deconv2sub.convert_model(s8, ConvertOptions(target="mnn"))
    assert report.nodes[0].code == "target_keeps" and "strides [8, 8]" in report.nodes[0].reason
    m1 = convtranspose_model([1, 4, 9], _x((4, 2, 4)), None, strides=[2], pads=[1, 1])
    converted, report = deconv2sub.convert_model(m1, ConvertOptions(target="mnn"))
    assert report.nodes[0].rewritten
    assert_equivalent(m1, converted, {"X": _x((1, 4, 9))})


@pytest.mark.parametrize(
    "fact,attrs,kept",
    [
        ("grouped", dict(group=2), True),
        ("grouped", dict(group=1), False),
        ("kernel2_wide", dict(group=1), True),
        ("kernel2_wide", dict(group=1, size=16), False),
        ("kernel2_wide", dict(group=1, kernel=2), False),  # a 1x1 Conv
    ],
)
def test_keep_when_facts_from_toml(tmp_path, fact, attrs, kept):
    """A TOML profile's keep_when facts keep exactly the nodes they describe."""
    f = tmp_path / "keeper.toml"
    f.write_text(f'name = "keeper"\nkeep_when = ["{fact}"]\n')
    profile = load_profile_file(str(f))
    assert profile.keep_when == (fact,)
    size, k, g = attrs.get("size", 40), attrs.get("kernel", 4), attrs["group"]
    m = convtranspose_model(
        [1, 64, size, size], _x((64, 8 // g, k, k)), None, strides=[2, 2],
        pads=[1, 1, 1, 1] if k == 4 else [0, 0, 0, 0], group=g,
    )
    converted, report = deconv2sub.convert_model(m, ConvertOptions(target=profile))
    assert (report.nodes[0].code == "target_keeps") == kept
    if not kept:
        assert_equivalent(m, converted, {"X": _x((1, 64, size, size))})


def test_fold_crop_always_gives_a_3x3_conv_without_a_slice():
    """fold_crop "always": DCGAN's k4 s2 p1 becomes a 3x3 Conv + DepthToSpace, no Slice.

    Exact, more MACs, said in the report: the form that survives MNN's inexact wide 2x2 Conv.
    """
    prof = TargetProfile(name="grow", fold_crop="always")
    m = convtranspose_model(
        [1, 64, 32, 32], _x((64, 8, 4, 4)), _x((8,)), strides=[2, 2], pads=[1, 1, 1, 1]
    )
    converted, report = deconv2sub.convert_model(
        m, ConvertOptions(target=prof, toolchains=("mnn",))
    )
    entry = report.nodes[0]
    assert entry.conv_kernel == [3, 3] and op_types(converted) == ["Conv", "DepthToSpace"]
    assert report.toolchain_warnings == [] and "larger kernel" in entry.warnings[0]
    assert_equivalent(m, converted, {"X": _x((1, 64, 32, 32))})


def test_fold_crop_always_in_toml(tmp_path):
    """``fold_crop = "always"`` loads from TOML; an unknown value is a ProfileError."""
    f = tmp_path / "t.toml"
    f.write_text('fold_crop = "always"\n')
    assert load_profile_file(str(f)).fold_crop == "always"
    f.write_text('fold_crop = "sometimes"\n')
    with pytest.raises(ProfileError, match="fold_crop must be"):
        load_profile_file(str(f))


def test_square_tensor_before_a_padded_conv_warns_for_tflite():
    """onnx2tf guesses layouts by shape.

    A Reshape result [N, C, C, C] into a padded Conv is flagged.
    """
    from onnx import TensorProto, helper, numpy_helper

    shape = numpy_helper.from_array(np.array([1, 8, 8, 8], np.int64), "shape")
    w = numpy_helper.from_array(_x((4, 8, 3, 3)), "W")
    nodes = [helper.make_node("Reshape", ["X", "shape"], ["r"], name="square"),
             helper.make_node("Conv", ["r", "W"], ["Y"], pads=[1, 1, 1, 1], name="conv")]
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 512])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [shape, w],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    from deconv2sub.targets import ALL_BUGS
    from deconv2sub.targets.bugs import find_hits

    (hit,) = find_hits(model, ["tflite"], ALL_BUGS)
    assert hit.node == "square" and "[1, 8, 8, 8]" in hit.detail
    model.graph.node[1].ClearField("attribute")  # no pads: not the pattern
    assert find_hits(model, ["tflite"], ALL_BUGS) == []


def test_ncnn_keeps_3d_convtranspose():
    """No rank-limited 3-D shuffle converts on ncnn, whose own 3-D deconvolution is exact: kept."""
    m = convtranspose_model([1, 4, 3, 4, 5], _x((4, 2, 2, 2, 2)), None, strides=[2, 2, 2])
    converted, report = deconv2sub.convert_model(m, ConvertOptions(target="ncnn"))
    assert not report.nodes[0].rewritten and report.nodes[0].code == "target_keeps"
    assert "keeps 3-D ConvTranspose" in report.nodes[0].reason
    assert report.nodes[0].code == "target_keeps" and op_types(converted) == ["ConvTranspose"]
    m2 = convtranspose_model([1, 4, 5], _x((4, 2, 4)), None, strides=[2], pads=[1, 1])
    assert deconv2sub.convert_model(m2, ConvertOptions(target="ncnn"))[1].nodes[0].rewritten


def test_ncnn_keeps_2d_stride_2_and_rewrites_stride_8():
    """The ncnn profile keeps 2-D stride 2 (its Deconvolution was never slower), not stride 8."""
    m = convtranspose_model([1, 4, 6, 6], _x((4, 2, 4, 4)), None, strides=[2, 2], pads=[1] * 4)
    converted, report = deconv2sub.convert_model(m, ConvertOptions(target="ncnn"))
    assert report.nodes[0].code == "target_keeps" and op_types(converted) == ["ConvTranspose"]
    assert "strides [2, 2]" in report.nodes[0].reason
    m8 = convtranspose_model([1, 4, 3, 3], _x((4, 2, 16, 16)), None, strides=[8, 8], pads=[4] * 4)
    converted, report = deconv2sub.convert_model(m8, ConvertOptions(target="ncnn"))
    assert op_types(converted) == ["Conv", "DepthToSpace", "Slice"]
    assert_equivalent(m8, converted, {"X": _x((1, 4, 3, 3))})


def test_fold_crop_always_when_from_toml(tmp_path):
    """A TOML profile's fold_crop_always_when grows only the nodes whose fact holds."""
    f = tmp_path / "grow.toml"
    f.write_text(
        'name = "grow"\ndepth_to_space = ["CRD"]\nfold_crop_always_when = ["kernel2_wide"]\n'
    )
    profile = load_profile_file(str(f))
    assert profile.fold_crop_always_when == ("kernel2_wide",)
    for size, kernel in ((40, [3, 3]), (8, [2, 2])):  # 8x8: outside the fact's region
        m = convtranspose_model([1, 32, size, size], _x((32, 4, 4, 4)), None, strides=[2, 2],
                                pads=[1, 1, 1, 1])
        converted, report = deconv2sub.convert_model(m, ConvertOptions(target=profile))
        assert report.nodes[0].conv_kernel == kernel
        assert_equivalent(m, converted, {"X": _x((1, 32, size, size))})


def test_fold_crop_always_when_leaves_a_kernel_that_would_not_change():
    """ENet's k3 s2 p1 op1 stays a 2x2 Conv when folded: portable does not mark or change it."""
    m = convtranspose_model([1, 32, 34, 34], _x((32, 4, 3, 3)), None, strides=[2, 2],
                            pads=[1, 1, 1, 1], output_padding=[1, 1])
    converted, report = deconv2sub.convert_model(m, ConvertOptions())
    assert report.nodes[0].conv_kernel == [2, 2]
    assert "crop folded into the kernel" not in report.nodes[0].strategy_reason
    assert_equivalent(m, converted, {"X": _x((1, 32, 34, 34))})
