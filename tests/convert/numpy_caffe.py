"""Caffe's layer arithmetic written out in numpy, loop by loop as Caffe's CPU code does
it, as an independent reference for the converter (no ONNX anywhere in here)."""
from __future__ import annotations

import math

import numpy as np


def conv2d(x, w, b=None, stride=(1, 1), pad=(0, 0), dilation=(1, 1), group=1):
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh = (h + 2 * pad[0] - (dilation[0] * (kh - 1) + 1)) // stride[0] + 1
    ow = (wd + 2 * pad[1] - (dilation[1] * (kw - 1) + 1)) // stride[1] + 1
    out = np.zeros((n, m, oh, ow), np.float64)
    per_group = m // group
    for g in range(group):
        xs = xp[:, g * cg:(g + 1) * cg]
        for o in range(g * per_group, (g + 1) * per_group):
            for i in range(kh):
                for j in range(kw):
                    patch = xs[:, :, i * dilation[0]: i * dilation[0] + stride[0] * oh: stride[0],
                                     j * dilation[1]: j * dilation[1] + stride[1] * ow: stride[1]]
                    out[:, o] += np.einsum("nchw,c->nhw", patch, w[o, :, i, j])
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def deconv2d(x, w, b=None, stride=(1, 1), pad=(0, 0), group=1):
    """Caffe's Deconvolution: scatter each input pixel through the kernel, then crop pad."""
    n, c, h, wd = x.shape
    _, mg, kh, kw = w.shape
    m = mg * group
    full = np.zeros((n, m, (h - 1) * stride[0] + kh, (wd - 1) * stride[1] + kw))
    cg = c // group
    for g in range(group):
        for ci in range(g * cg, (g + 1) * cg):
            for y in range(h):
                for xx in range(wd):
                    full[:, g * mg:(g + 1) * mg, y * stride[0]:y * stride[0] + kh, xx * stride[1]:xx * stride[1] + kw] += (
                        x[:, ci, y, xx][:, None, None, None] * w[ci][None])
    out = full[:, :, pad[0]:full.shape[2] - pad[0], pad[1]:full.shape[3] - pad[1]]
    if b is not None:
        out = out + b.reshape(1, -1, 1, 1)
    return out


def pool2d(x, kernel, stride, pad, method="MAX", ceil=True):
    """Caffe's PoolingLayer::Forward_cpu, including its output-size rule and AVE divisor."""
    n, c, h, w = x.shape
    rnd = math.ceil if ceil else math.floor
    oh = int(rnd((h + 2 * pad[0] - kernel[0]) / stride[0])) + 1
    ow = int(rnd((w + 2 * pad[1] - kernel[1]) / stride[1])) + 1
    if pad[0] or pad[1]:
        if (oh - 1) * stride[0] >= h + pad[0]:
            oh -= 1
        if (ow - 1) * stride[1] >= w + pad[1]:
            ow -= 1
    out = np.zeros((n, c, oh, ow), np.float64)
    for ph in range(oh):
        for pw in range(ow):
            hs, ws = ph * stride[0] - pad[0], pw * stride[1] - pad[1]
            if method == "MAX":
                he, we = min(hs + kernel[0], h), min(ws + kernel[1], w)
                hs, ws = max(hs, 0), max(ws, 0)
                out[:, :, ph, pw] = x[:, :, hs:he, ws:we].max(axis=(2, 3))
            else:
                he, we = min(hs + kernel[0], h + pad[0]), min(ws + kernel[1], w + pad[1])
                size = (he - hs) * (we - ws)
                hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
                out[:, :, ph, pw] = x[:, :, hs:he, ws:we].sum(axis=(2, 3)) / size
    return out


def inner_product(x, w, b=None):
    out = x.reshape(x.shape[0], -1) @ w.T
    return out + b if b is not None else out


def softmax(x, axis=1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def lrn_across(x, size, alpha, beta, k):
    c = x.shape[1]
    sq = np.pad(x ** 2, ((0, 0), ((size - 1) // 2, (size - 1) // 2), (0, 0), (0, 0)))
    scale = k + alpha / size * np.stack([sq[:, i:i + size].sum(axis=1) for i in range(c)], axis=1)
    return x * scale ** -beta


def lrn_within(x, size, alpha, beta):
    half = (size - 1) // 2
    sq = np.pad(x ** 2, ((0, 0), (0, 0), (half, half), (half, half)))
    h, w = x.shape[2:]
    mean = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            mean[:, :, i, j] = sq[:, :, i:i + size, j:j + size].sum(axis=(2, 3)) / size ** 2
    return x * (1 + alpha * mean) ** -beta
