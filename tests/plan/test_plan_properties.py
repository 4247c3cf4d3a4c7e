"""Properties of the sub-pixel plan alone (numpy only: no onnx, no runtime).

For random ConvTranspose attributes (rank 1-3, kernel, stride, dilation, pads, output_padding,
output_shape, auto_pad, group, channel order, crop folding), the plan
(:func:`deconv2sub.plan.subpixel.make_plan`) and its phase-group Convs
(:func:`deconv2sub.plan.phases.phase_split`) are checked against the ONNX definition, computed
here by brute force, ``out[i*s - pad_begin + k*d] += in[i] * w[k]`` per axis:

* the output size is ONNX's, ``s*(in-1) + output_padding + ((k-1)*d+1) - pad_begin - pad_end``,
  with the pads of ``auto_pad`` / ``output_shape`` as ONNX Runtime resolves them
  (``shared/notes/onnx-facts.md``), and the Conv's output, shuffled and cropped, has that size;
* every contribution (output channel and position, input channel and position, kernel tap) is
  produced by the plan's Conv + shuffle + crop exactly once, and no other one is: the weight holds
  each tap's id (so a misplaced tap shows as a wrong contribution), the phase Convs likewise;
* every tap is stored exactly once, and the Conv does as many MACs as the ConvTranspose exactly
  when no stored tap is a zero (kernel a multiple of the stride, dilation 1, no grown fold).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections import Counter

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from deconv2sub.plan.phases import phase_split
from deconv2sub.plan.subpixel import ConvTransposeAttrs, make_plan

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = int(os.environ.get("DECONV2SUB_PLAN_EXAMPLES", "300"))


@st.composite
def configs(draw):
    """Random valid attributes, input sizes and plan options (small enough to enumerate)."""
    rank = draw(st.integers(1, 3))
    small = rank == 3
    axes = []
    for _ in range(rank):
        s = draw(st.integers(1, 2 if small else 4))
        d = draw(st.integers(1, 2 if small else 3))
        axes.append(dict(
            k=draw(st.integers(1, 3 if small else 5)),
            s=s,
            d=d,
            pb=draw(st.integers(0, 4)),
            pe=draw(st.integers(0, 4)),
            op=draw(st.integers(0, max(s, d) - 1)),
            size=draw(st.integers(1, 3 if small else 5)),
            out_delta=draw(st.integers(-6, 3)),  # output_shape: full output + out_delta
        ))
    group = draw(st.sampled_from([1, 1, 2, 3]))
    pads_from = draw(st.sampled_from(
        ["pads", "pads", "SAME_UPPER", "SAME_LOWER", "VALID", "output_shape"]
    ))
    return dict(
        axes=axes,
        group=group,
        c_per_group=draw(st.integers(1, 2)),
        m_per_group=draw(st.integers(1, 2)),
        pads_from=pads_from,
        # output_shape with an SAME_* auto_pad too (which end takes the odd pad)
        shape_auto_pad=draw(st.sampled_from(["NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"])),
        symbolic=draw(st.booleans()),  # output_shape only: input size unknown to the plan
        order=draw(st.sampled_from(["CRD", "DCR", "LCR"] if group == 1 else ["CRD"])),
        fold=draw(st.sampled_from([False, True, "always"])),
        bias=draw(st.booleans()),
    )


def _onnx_pads(a: dict, pads_from: str, shape_auto_pad: str) -> tuple:
    """(pad_begin, pad_end, output size) of one axis, by ONNX's (and ONNX Runtime's) rules."""
    full = a["s"] * (a["size"] - 1) + a["op"] + (a["k"] - 1) * a["d"] + 1
    if pads_from == "pads":
        return a["pb"], a["pe"], full - a["pb"] - a["pe"]
    if pads_from == "VALID":
        return 0, 0, full
    if pads_from == "output_shape":
        out = full + a["out_delta"]
        total = full - out
        if total < 0:  # longer than the full output: ORT adds the cells at the end
            return 0, total, out
        upper = shape_auto_pad == "SAME_UPPER"  # the odd unit at the end; else at the start
        begin = total // 2 if upper else total - total // 2
        return begin, total - begin, out
    total = max(full - a["size"] * a["s"], 0)  # SAME_*: output in*s (ORT clamps a negative total)
    begin = total // 2 if pads_from == "SAME_UPPER" else total - total // 2
    return begin, total - begin, full - total


def _attrs(cfg: dict) -> ConvTransposeAttrs:
    axes = cfg["axes"]
    common = dict(
        strides=[a["s"] for a in axes],
        dilations=[a["d"] for a in axes],
        output_padding=[a["op"] for a in axes],
        group=cfg["group"],
        kernel_shape=[a["k"] for a in axes],
    )
    if cfg["pads_from"] == "pads":
        return ConvTransposeAttrs(pads=[a["pb"] for a in axes] + [a["pe"] for a in axes], **common)
    if cfg["pads_from"] == "output_shape":
        full = [a["s"] * (a["size"] - 1) + a["op"] + (a["k"] - 1) * a["d"] + 1 for a in axes]
        out = [f + a["out_delta"] for f, a in zip(full, axes)]
        return ConvTransposeAttrs(output_shape=out, auto_pad=cfg["shape_auto_pad"], **common)
    return ConvTransposeAttrs(auto_pad=cfg["pads_from"], **common)


def _valid(cfg: dict) -> bool:
    """Whether ONNX Runtime runs the node: a positive output, output_shape within its limit."""
    for a in cfg["axes"]:
        pb, pe, out = _onnx_pads(a, cfg["pads_from"], cfg["shape_auto_pad"])
        if out <= 0:
            return False
        if cfg["pads_from"] == "output_shape" and pe < -(a["s"] - 1 - a["op"]):
            return False
    return True


def _weight(cfg: dict) -> np.ndarray:
    """The ConvTranspose weight whose every entry is its own id, 1 + its flat index."""
    c = cfg["group"] * cfg["c_per_group"]
    shape = (c, cfg["m_per_group"]) + tuple(a["k"] for a in cfg["axes"])
    return np.arange(1, int(np.prod(shape)) + 1, dtype=np.float64).reshape(shape)


def _reference(cfg: dict) -> Counter:
    """Every contribution (m, o, c, i, k) of the ConvTranspose, by the ONNX definition."""
    axes, g = cfg["axes"], cfg["group"]
    cpg, mpg = cfg["c_per_group"], cfg["m_per_group"]
    per_axis = []
    for a in axes:
        pb, _, out = _onnx_pads(a, cfg["pads_from"], cfg["shape_auto_pad"])
        pairs = []
        for i in range(a["size"]):
            for k in range(a["k"]):
                o = i * a["s"] - pb + k * a["d"]
                if 0 <= o < out:
                    pairs.append((o, i, k))
        per_axis.append(pairs)
    found = Counter()
    for m in range(g * mpg):
        gi = m // mpg
        for c in range(gi * cpg, (gi + 1) * cpg):
            for combo in itertools.product(*per_axis):
                found[(m, tuple(p[0] for p in combo), c, tuple(p[1] for p in combo),
                       tuple(p[2] for p in combo))] += 1
    return found


def _row_index(layout, values: dict) -> int:
    """The row of a channel layout ``[(name, size), ...]`` holding the factor ``values``."""
    return int(np.ravel_multi_index([values.get(n, 0) for n, _ in layout], [s for _, s in layout]))


def _axis_reads(plan_axis, size: int, out: int, begin: int, taps: int, pad: int, dil: int):
    """``{(phase, tap position): [(o, i), ...]}``: which input position each output reads.

    One axis of a Conv (``taps`` positions, begin pad ``pad``, dilation ``dil``) whose output,
    shuffled, is read from ``begin`` on for ``out`` cells.
    """
    s = plan_axis.stride
    reads = {}
    for o in range(out):
        j = o + begin
        p, u = j % s, j // s
        for mpos in range(taps):
            i = u + mpos * dil - pad
            if 0 <= i < size:
                reads.setdefault((p, mpos), []).append((o, i))
    return reads


def _contributions(conv_weight, rows, group: int, reads_per_axis, w_shape, mpg: int) -> Counter:
    """Every contribution (m, o, c, i, k) a Conv computes; its weight entries decode to taps.

    ``rows``: per Conv row, (output channel m, per-axis phase); ``reads_per_axis`` from
    :func:`_axis_reads`. Asserts that each stored tap belongs to its row's output channel and to
    its column's input channel.
    """
    found = Counter()
    rows_per_group = conv_weight.shape[0] // group
    cpg = conv_weight.shape[1]
    for r, (m, phases) in enumerate(rows):
        gi = r // rows_per_group
        for cl in range(cpg):
            c = gi * cpg + cl
            block = conv_weight[r, cl]
            for mpos in zip(*np.nonzero(block)):
                cw, mw, *k = np.unravel_index(int(block[mpos]) - 1, w_shape)
                assert cw == c and gi * mpg + mw == m, (r, cl, mpos, cw, mw, c, m)
                lists = [reads_per_axis[a].get((phases[a], int(mpos[a])), [])
                         for a in range(len(phases))]
                for combo in itertools.product(*lists):
                    found[(m, tuple(p[0] for p in combo), c, tuple(p[1] for p in combo),
                           tuple(int(v) for v in k))] += 1
    return found


def _plan_rows(plan) -> list:
    """(output channel, per-axis phase) of every row of the plan's Conv, from its row layout."""
    layout = plan.row_layout()
    rows = [None] * plan.weight.shape[0]
    n = plan.rank
    for m in range(plan.out_channels):
        for phase in itertools.product(*[range(a.stride) for a in plan.axes]):
            values = {"M": m, **{f"S{a}": phase[a] for a in range(n)}}
            rows[_row_index(layout, values)] = (m, phase)
    return rows


def _split_rows(split, plan) -> list:
    """(output channel, per-axis phase) of every row of each phase-group Conv."""
    out = []
    for pc in split.convs:
        layout = split.conv_rows(plan.out_channels)
        rows = [None] * pc.weight.shape[0]
        for m in range(plan.out_channels):
            for within in itertools.product(*[range(gsz) for _, gsz in split.groups]):
                values = {"M": m, **{f"I{a}": within[a] for a in range(plan.rank)}}
                phase = tuple(pc.group[a] * split.groups[a][1] + within[a]
                              for a in range(plan.rank))
                rows[_row_index(layout, values)] = (m, phase)
        out.append(rows)
    return out


def _plan_for(cfg):
    """The plan of a drawn configuration, its ConvTranspose weight, and the per-axis output."""
    w = _weight(cfg)
    m_out = cfg["group"] * cfg["m_per_group"]
    bias = np.arange(m_out, dtype=np.float64) + 0.5 if cfg["bias"] else None
    runtime = cfg["symbolic"] and cfg["pads_from"] == "output_shape"
    sizes = [a["size"] for a in cfg["axes"]]
    spatial = [None] * len(sizes) if runtime else sizes
    plan = make_plan(w, bias, _attrs(cfg), spatial, order=cfg["order"], fold_crop=cfg["fold"])
    return plan, w, bias, runtime


def _begin_reads(plan, cfg, runtime: bool) -> list:
    """Per axis: the shuffled position read by output 0 (the crop's begin, run-time part too)."""
    begins = []
    for ax, a in zip(plan.axes, cfg["axes"]):
        begin = ax.crop_begin
        if runtime:  # cut at run time at the begin pad ORT resolves for this size
            assert ax.runtime_out is not None and ax.crop_begin == 0
            pb, _, _ = _onnx_pads(a, cfg["pads_from"], cfg["shape_auto_pad"])
            begin += pb
        begins.append(begin)
    return begins


def _check_geometry(plan, cfg, runtime: bool, begins: list) -> None:
    """Output sizes: ONNX's; the Conv output, shuffled, covers the crop window exactly or more."""
    for ax, a, begin in zip(plan.axes, cfg["axes"], begins):
        _, _, out = _onnx_pads(a, cfg["pads_from"], cfg["shape_auto_pad"])
        assert ax.output_size(a["size"]) == out
        conv_out = a["size"] + ax.conv_pad_begin + ax.conv_pad_end - ax.conv_dilation * (
            ax.taps - 1
        )
        assert conv_out - a["size"] == ax.growth, (conv_out, ax)
        shuffled = ax.stride * conv_out
        # no Conv output row computed only to be cropped, unless the Conv has no end pad to drop
        assert ax.crop_end < ax.stride or ax.conv_pad_end == 0, ax
        if runtime:  # the planned (longest) output holds the run-time window
            planned = shuffled - ax.crop_begin - ax.crop_end
            assert planned == ax.stride * (a["size"] - 1) + a["op"] + (a["k"] - 1) * a["d"] + 1 + (
                ax.stride - 1 - a["op"]
            )
            assert begin + out <= planned
        else:
            assert shuffled - ax.crop_begin - ax.crop_end == out, (shuffled, ax, out)
    assert plan.output_shape([a["size"] for a in cfg["axes"]]) == tuple(
        _onnx_pads(a, cfg["pads_from"], cfg["shape_auto_pad"])[2] for a in cfg["axes"]
    )


_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@_SETTINGS
@given(cfg=configs())
def test_plan_places_every_contribution_once(cfg):
    """Conv + shuffle + crop of the plan computes exactly the ConvTranspose's contributions."""
    assume(_valid(cfg))
    plan, w, bias, runtime = _plan_for(cfg)
    begins = _begin_reads(plan, cfg, runtime)
    _check_geometry(plan, cfg, runtime, begins)
    reads = []
    for ax, a, begin in zip(plan.axes, cfg["axes"], begins):
        out = _onnx_pads(a, cfg["pads_from"], cfg["shape_auto_pad"])[2]
        reads.append(_axis_reads(ax, a["size"], out, begin, ax.taps, ax.conv_pad_begin,
                                 ax.conv_dilation))
    got = _contributions(plan.weight, _plan_rows(plan), plan.group, reads, w.shape,
                         cfg["m_per_group"])
    want = _reference(cfg)
    assert got == want, (sorted((got - want).items())[:3], sorted((want - got).items())[:3])
    if bias is not None:  # the bias of each row is its output channel's
        assert np.array_equal(plan.bias, bias[[m for m, _ in _plan_rows(plan)]])


@_SETTINGS
@given(cfg=configs())
def test_phase_convs_place_every_contribution_once(cfg):
    """The phase-group Convs of a CRD plan compute exactly the same contributions."""
    assume(_valid(cfg))
    cfg = {**cfg, "order": "CRD"}  # the phase split is of CRD plans
    plan, w, bias, runtime = _plan_for(cfg)
    split = phase_split(plan)
    has_empty_phase = any(not (t >= 0).any(axis=1).all() for t in plan.tap_tables)
    assert (split is None) == has_empty_phase
    assume(split is not None)
    begins = _begin_reads(plan, cfg, runtime)
    got = Counter()
    for pc, rows in zip(split.convs, _split_rows(split, plan)):
        reads = []
        for a, (ax, cfg_axis, begin) in enumerate(zip(plan.axes, cfg["axes"], begins)):
            out = _onnx_pads(cfg_axis, cfg["pads_from"], cfg["shape_auto_pad"])[2]
            taps, pad, dil = pc.weight.shape[2 + a], pc.pads[a], pc.dilations[a]
            # every group Conv has the shared Conv's output length (they are concatenated)
            length = cfg_axis["size"] + pad + pc.pads[plan.rank + a] - dil * (taps - 1)
            assert length == cfg_axis["size"] + ax.growth, (pc.pads, ax)
            assert pad >= 0 and pc.pads[plan.rank + a] >= 0
            reads.append(_axis_reads(ax, cfg_axis["size"], out, begin, taps, pad, dil))
        got += _contributions(pc.weight, rows, plan.group, reads, w.shape, cfg["m_per_group"])
        if bias is not None:
            assert np.array_equal(pc.bias, bias[[m for m, _ in rows]])
    want = _reference(cfg)
    assert got == want, (sorted((got - want).items())[:3], sorted((want - got).items())[:3])
    split_taps = sum(int(np.prod(pc.weight.shape)) for pc in split.convs)
    assert w.size <= split_taps <= int(np.prod(plan.weight.shape))


@_SETTINGS
@given(cfg=configs())
def test_every_tap_stored_once_and_macs(cfg):
    """Each tap is stored exactly once; MACs equal the ConvTranspose's iff no zero tap is stored."""
    assume(_valid(cfg))
    plan, w, _, _ = _plan_for(cfg)
    stored = plan.weight[plan.weight != 0]
    assert np.array_equal(np.sort(stored), w.ravel())  # every id once: copied, never computed
    before = w.size  # MACs of the ConvTranspose per input position: C * M/g * prod(K)
    after = plan.macs_per_input_pixel()
    no_zero_taps = all((t >= 0).all() for t in plan.tap_tables)
    assert (after == before) == no_zero_taps and after >= before
    multiple = all(a["k"] % a["s"] == 0 and a["d"] == 1 for a in cfg["axes"])
    if multiple and cfg["fold"] in (False, True):
        assert after == before, (plan.conv_kernel, [t.tolist() for t in plan.tap_tables])


def test_the_brute_force_catches_a_misplaced_tap():
    """The contribution check can fail: a plan with two taps swapped does not pass it."""
    cfg = dict(axes=[dict(k=4, s=2, d=1, pb=1, pe=1, op=0, size=3, out_delta=0)], group=1,
               c_per_group=1, m_per_group=1, pads_from="pads", shape_auto_pad="NOTSET",
               symbolic=False, order="CRD", fold=False, bias=False)
    plan, w, _, _ = _plan_for(cfg)
    reads = [_axis_reads(plan.axes[0], 3, 6, plan.axes[0].crop_begin, plan.axes[0].taps,
                         plan.axes[0].conv_pad_begin, plan.axes[0].conv_dilation)]
    rows = _plan_rows(plan)
    good = _contributions(plan.weight, rows, 1, reads, w.shape, 1)
    assert good == _reference(cfg)
    swapped = plan.weight.copy()
    swapped[0, 0, [0, 1]] = swapped[0, 0, [1, 0]]
    bad = _contributions(swapped, rows, 1, reads, w.shape, 1)
    assert bad != _reference(cfg)


def test_the_plan_imports_no_graph_library_or_runtime():
    """Planning runs in a process where onnx, onnx_graphsurgeon and onnxruntime never load."""
    script = (
        "import sys\n"
        "import numpy as np\n"
        "from deconv2sub.plan import blocks, layout, phases, subpixel\n"
        "attrs = subpixel.ConvTransposeAttrs(strides=[2, 2], pads=[1, 1, 1, 1])\n"
        "plan = subpixel.make_plan(np.ones((2, 3, 4, 4), np.float32), None, attrs, [5, 5])\n"
        "phases.phase_split(plan)\n"
        "loaded = sorted(m for m in sys.modules\n"
        "                if m.split('.')[0] in ('onnx', 'onnx_graphsurgeon', 'onnxruntime'))\n"
        "print(loaded)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
