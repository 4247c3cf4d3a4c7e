"""The arithmetic of the rewrite, free of any graph library (numpy only, never onnx).

* :mod:`deconv2sub.plan.subpixel`: the sub-pixel plan of one ConvTranspose (the derivation, the
  Conv's kernel, pads and channel order, the crop);
* :mod:`deconv2sub.plan.phases`: the split into phase-group Convs (each with only its own taps);
* :mod:`deconv2sub.plan.blocks`: block factors of a stride and the Conv row order a cascade of
  DepthToSpace ops needs;
* :mod:`deconv2sub.plan.layout`: the shuffles' labelled axes and sizes, and the plans of the row
  Gather and of the block-swap cascade.
"""
