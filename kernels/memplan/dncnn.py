"""A DnCNN-style denoising network (Zhang et al., "Beyond a Gaussian Denoiser", IEEE TIP 2017).

``depth`` 3x3 convolutions of ``channels`` maps at full resolution (the first with ReLU, the middle ones
with batch norm folded in and ReLU, the last back to the image's channels), and the residual learning of
the paper: the network predicts the noise, and the clean image is the input minus it. That subtraction
keeps the input image alive for the whole network, as a skip connection does. The paper's grayscale
model has depth 17 and 64 channels; Jokic et al. report their 48.8% saving on networks of this kind.
"""

from __future__ import annotations

from kernels.memplan.graph import Graph, GraphBuilder, Op, Source


def dncnn_graph(height: int = 512, width: int = 512, depth: int = 17, channels: int = 64, image_channels: int = 1,
                elem_bytes: int = 4, residual: bool = True) -> Graph:
    if depth < 2:
        raise ValueError("DnCNN needs at least two convolutions")
    b = GraphBuilder(f"dncnn{depth}", origin="builtin:dncnn", elem_bytes=elem_bytes)
    x = b.add_input("image", (image_channels, height, width))
    t = x
    for i in range(depth):
        last = i == depth - 1
        name = f"conv{i + 1}"
        t = b.add(Op(name, "conv", (t,), name, out_channels=image_channels if last else channels, kernel=(3, 3),
                     pad=(1, 1, 1, 1), acts=() if last else ("relu",), source=Source("builtin:dncnn", None, name)))
    if residual:
        t = b.add(Op("denoised", "sub", (x, t), "denoised", source=Source("builtin:dncnn", None, "denoised")))
    return b.build(outputs=[t])
