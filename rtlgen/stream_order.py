"""Where each element of an ONNX tensor travels in the hardware stream.

ONNX tensors between layers are NCHW (NCW for 1-D) or flat; the hardware streams feature maps channels-last,
pixel after pixel (element (h*W + w)*C + c). The compiler tracks, for every integer tensor at a layer
boundary, a *position map*: an integer array shaped like the tensor (without the batch axis) whose entry is
that element's index in the stream frame. Layout ops (Flatten, Reshape, Transpose...) move elements, so
running them on a position map tells where the elements went; that is how the first dense layer after a
convolution gets its weight columns in stream order, and how the host puts model-layout tensors into
stream order and back.
"""
from __future__ import annotations

import numpy as np


def channels_last_positions(shape: tuple[int, ...]) -> np.ndarray:
    """Position map of a (1, C, H, W) or (1, C, L) tensor streamed channels-last; a (1, F) tensor streams as is."""
    if len(shape) <= 2:
        return np.arange(int(np.prod(shape[1:], dtype=np.int64))).reshape(shape[1:])
    c = shape[1]
    spatial = shape[2:]
    pixels = int(np.prod(spatial, dtype=np.int64))
    return (np.arange(pixels).reshape(1, *spatial) * c + np.arange(c).reshape((c,) + (1,) * len(spatial)))


def stream_order(positions: np.ndarray) -> np.ndarray:
    """The inverse view of a position map: for each stream index, the flat index of the tensor element."""
    flat = np.asarray(positions).reshape(-1)
    order = np.empty_like(flat)
    order[flat] = np.arange(flat.size)
    return order


def is_permutation(values: np.ndarray) -> bool:
    flat = np.asarray(values).reshape(-1)
    return np.array_equal(np.sort(flat), np.arange(flat.size))


def is_identity(order: np.ndarray | None) -> bool:
    return order is None or np.array_equal(np.asarray(order).reshape(-1), np.arange(np.asarray(order).size))
