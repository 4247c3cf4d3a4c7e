"""Real architectures written by others.

Built from configs with random weights (nothing downloaded).

Each model is exported from PyTorch to ONNX (opset 17, IR 8, legacy exporter), converted with
``deconv2sub.convert_model`` and checked with ONNX Runtime (CPU) against the ORIGINAL model: every
ConvTranspose must be rewritten and the outputs must agree to float rounding.

* transformers (optional; the tests skip without it): SAM (``SamModel``, mask decoder with two
  ConvTranspose2d k2 s2, fed image embeddings or pixels), DPT (``DPTForDepthEstimation``, reassemble
  ConvTranspose2d k4 s4 and k2 s2), HiFi-GAN (``SpeechT5HifiGan``, ConvTranspose1d k8 s4 / k4 s2).
* torchvision cannot be installed beside torch 2.13 here, so its models (FCN/DeepLab heads, ...) are
  not covered; nothing of it is re-implemented.

Each model runs twice: with the library's own initialisation ("hf_init", which zero-initialises many
biases) and with every parameter perturbed ("perturbed", so that outputs have a useful magnitude and
no two parameters are equal). With equal zero biases, the TorchScript exporter keeps ONE initializer
and feeds the others through ``Identity`` nodes; deconv2sub folds such constant chains before the
rewrite (see ``test_bias_behind_identity``).
"""

from __future__ import annotations

import io
import time
import warnings

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from builders import op_types, run  # noqa: E402

import deconv2sub  # noqa: E402


def _export(model, args, input_names, dynamic_axes=None, output_names=("y",)) -> onnx.ModelProto:
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            args,
            f,
            dynamo=False,
            opset_version=17,
            input_names=list(input_names),
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
        )
    proto = onnx.load_from_string(f.getvalue())
    proto.ir_version = min(proto.ir_version, 8)
    return proto


def _perturb(model, seed=0, std=0.05):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g, dtype=p.dtype) * std)
    return model


def _convert_and_compare(name, proto, feeds_list, expected_convtranspose, torch_model=None):
    start = time.time()
    converted, report = deconv2sub.convert_model(proto)
    seconds = time.time() - start
    assert op_types(proto).count("ConvTranspose") == expected_convtranspose
    assert len(report.nodes) == expected_convtranspose
    onnx.checker.check_model(converted, full_check=True)
    worst = 0.0
    for feeds in feeds_list:
        ref = run(proto, feeds)
        got = run(converted, feeds)
        for r, g in zip(ref, got):
            assert r.shape == g.shape
            scale = float(np.abs(r).max())
            err = float(np.abs(r.astype(np.float64) - g).max())
            worst = max(worst, err / max(scale, 1e-30))
            assert err <= 1e-5 * scale + 1e-12, f"{name}: max abs err {err}, output max {scale}"
        # the export itself is faithful (not what is tested, but a sanity check)
        if torch_model is not None:
            with torch.no_grad():
                t = torch_model(*[torch.from_numpy(v) for v in feeds.values()])
            assert np.abs(t.numpy() - ref[0]).max() <= 1e-4 * max(float(np.abs(ref[0]).max()), 1e-6)
    print(f"\n{name}: {expected_convtranspose} ConvTranspose, {len(report.rewritten)} rewritten, "
          f"max rel err {worst:.2e}, convert {seconds:.2f}s")
    skipped = [(n.name, n.reason) for n in report.skipped]
    assert not skipped, skipped
    assert "ConvTranspose" not in op_types(converted)


# ---- the minimal reproducer of the Identity issue (fast, torch only) -----------------------------


def test_bias_behind_identity():
    """A bias behind the exporter's Identity is read and the rewrite is exact."""
    nn = torch.nn
    model = nn.Sequential(nn.ConvTranspose2d(4, 4, 2, 2), nn.ConvTranspose2d(4, 4, 2, 2)).eval()
    for m in model:
        # two equal biases: the exporter keeps one initializer and adds an Identity
        nn.init.zeros_(m.bias)
    proto = _export(model, (torch.randn(1, 4, 3, 3),), ["x"])
    assert "Identity" in op_types(proto)
    _, report = deconv2sub.convert_model(proto)
    assert [n.status for n in report.nodes] == ["rewritten", "rewritten"], [
        n.reason for n in report.nodes
    ]


# ---- transformers --------------------------------------------------------------------------------

INITS = [
    pytest.param("hf_init", id="hf_init"),
    pytest.param("perturbed", id="perturbed"),
]


def _transformers():
    return pytest.importorskip("transformers")


def _sam(init):
    tf = _transformers()
    from transformers.models.sam.configuration_sam import (
        SamMaskDecoderConfig,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )

    torch.manual_seed(0)
    vision = SamVisionConfig(
        hidden_size=32,
        output_channels=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=64,
        patch_size=8,
        window_size=4,
        global_attn_indexes=[1],
        mlp_dim=64,
        num_pos_feats=16,
    )
    prompt = SamPromptEncoderConfig(
        hidden_size=32, image_size=64, patch_size=8, image_embedding_size=8, mask_input_channels=4
    )
    decoder = SamMaskDecoderConfig(
        hidden_size=32,
        mlp_dim=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        iou_head_hidden_dim=32,
    )
    config = tf.SamConfig(vision_config=vision.to_dict(), prompt_encoder_config=prompt.to_dict(),
                          mask_decoder_config=decoder.to_dict())
    model = tf.SamModel(config).eval()
    if init == "perturbed":
        _perturb(model)
    return model


def _points(rng, n):
    return {
        "input_points": (rng.random((1, 1, n, 2)) * 64).astype(np.float32),
        "input_labels": rng.integers(0, 2, (1, 1, n)).astype(np.int64),
    }


@pytest.mark.slow
@pytest.mark.parametrize("init", INITS)
def test_sam_mask_decoder(init):
    """SAM's mask decoder (transformers) converts and matches ORT."""
    model = _sam(init)

    class MaskDecoder(torch.nn.Module):
        def __init__(self, sam):
            super().__init__()
            self.sam = sam

        def forward(self, image_embeddings, input_points, input_labels):
            return self.sam(image_embeddings=image_embeddings, input_points=input_points,
                            input_labels=input_labels, multimask_output=True).pred_masks

    wrapper = MaskDecoder(model).eval()
    rng = np.random.default_rng(0)
    with torch.no_grad():
        emb = model.get_image_embeddings(
            torch.from_numpy(rng.standard_normal((1, 3, 64, 64)).astype(np.float32))
        )
    example = {"image_embeddings": emb.numpy(), **_points(rng, 2)}
    proto = _export(wrapper, tuple(torch.from_numpy(v) for v in example.values()), list(example),
                    {"input_points": {2: "P"}, "input_labels": {2: "P"}, "y": {2: "P"}})
    feeds = [example, {"image_embeddings": emb.numpy(), **_points(rng, 5)}]
    _convert_and_compare(f"SAM mask decoder ({init})", proto, feeds, 2, wrapper)


@pytest.mark.slow
@pytest.mark.parametrize("init", INITS)
def test_sam_full_model(init):
    """The full SAM model (transformers) converts and matches ORT."""
    model = _sam(init)

    class Full(torch.nn.Module):
        def __init__(self, sam):
            super().__init__()
            self.sam = sam

        def forward(self, pixel_values, input_points, input_labels):
            return self.sam(
                pixel_values=pixel_values,
                input_points=input_points,
                input_labels=input_labels,
                multimask_output=True,
            ).pred_masks

    wrapper = Full(model).eval()
    rng = np.random.default_rng(1)
    example = {
        "pixel_values": rng.standard_normal((1, 3, 64, 64)).astype(np.float32),
        **_points(rng, 1),
    }
    proto = _export(wrapper, tuple(torch.from_numpy(v) for v in example.values()), list(example),
                    {"input_points": {2: "P"}, "input_labels": {2: "P"}, "y": {2: "P"}})
    feeds = [
        example,
        {"pixel_values": rng.standard_normal((1, 3, 64, 64)).astype(np.float32), **_points(rng, 3)},
    ]
    _convert_and_compare(f"SAM full model ({init})", proto, feeds, 2, wrapper)


@pytest.mark.slow
@pytest.mark.parametrize(
    "init",
    INITS,
)
def test_dpt_depth_estimation(init):
    """DPT depth estimation (transformers) converts and matches ORT."""
    tf = _transformers()
    torch.manual_seed(0)
    config = tf.DPTConfig(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=64,
        patch_size=8,
        backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 16, 32, 64],
        fusion_hidden_size=16,
    )
    model = tf.DPTForDepthEstimation(config).eval()
    if init == "perturbed":
        _perturb(model)

    class Depth(torch.nn.Module):
        def __init__(self, dpt):
            super().__init__()
            self.dpt = dpt

        def forward(self, pixel_values):
            return self.dpt(pixel_values=pixel_values).predicted_depth

    wrapper = Depth(model).eval()
    rng = np.random.default_rng(2)
    proto = _export(
        wrapper,
        (torch.randn(1, 3, 64, 64),),
        ["pixel_values"],
        {"pixel_values": {0: "N"}, "y": {0: "N"}},
    )
    feeds = [
        {"pixel_values": rng.standard_normal((n, 3, 64, 64)).astype(np.float32)} for n in (1, 2)
    ]
    _convert_and_compare(f"DPT depth estimation ({init})", proto, feeds, 2, wrapper)


@pytest.mark.slow
@pytest.mark.parametrize(
    "init",
    INITS,
)
def test_speecht5_hifigan(init):
    """SpeechT5's HiFi-GAN vocoder (transformers) converts and matches ORT."""
    tf = _transformers()
    torch.manual_seed(0)
    config = tf.SpeechT5HifiGanConfig(
        model_in_dim=16,
        upsample_initial_channel=32,
        upsample_rates=[4, 4, 2],
        upsample_kernel_sizes=[8, 8, 4],
        resblock_kernel_sizes=[3, 5],
        resblock_dilation_sizes=[[1, 3], [1, 3]],
    )
    model = tf.SpeechT5HifiGan(config).eval()
    if init == "perturbed":
        _perturb(model)
    rng = np.random.default_rng(3)
    proto = _export(model, (torch.randn(1, 10, 16),), ["spectrogram"],
                    {"spectrogram": {0: "N", 1: "T"}, "y": {0: "N", 1: "T32"}})
    feeds = [
        {"spectrogram": rng.standard_normal(s).astype(np.float32)}
        for s in ((1, 10, 16), (3, 23, 16))
    ]
    _convert_and_compare(f"SpeechT5 HiFi-GAN ({init})", proto, feeds, 3, model)
