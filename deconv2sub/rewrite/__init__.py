"""The graph pass: every ConvTranspose with a constant weight becomes Conv + shuffle (+ crop).

* :mod:`deconv2sub.rewrite.options`: :class:`ConvertOptions`, the knobs of the rewrite;
* :mod:`deconv2sub.rewrite.graph_pass`: the pass over a graph and its subgraphs/functions;
* :mod:`deconv2sub.rewrite.match`: whether a node can be rewritten: its material
  (:mod:`deconv2sub.rewrite.material`) or a refusal (:mod:`deconv2sub.rewrite.refusal`);
* :mod:`deconv2sub.rewrite.emissions`: the emissions, one per file, and their registry;
* :mod:`deconv2sub.rewrite.operands`: the values of tensors known before run time;
* :mod:`deconv2sub.rewrite.fold`: weights computed from constants, folded;
* :mod:`deconv2sub.rewrite.qdq`: quantized (DequantizeLinear) weights;
* :mod:`deconv2sub.rewrite.sinking`: consumers moved above the shuffle;
* :mod:`deconv2sub.rewrite.shuffle`: the node builder and the shuffles and crops the emissions use.

This package's ``__init__`` imports nothing, so that importing one of its modules never imports
the others.
"""
