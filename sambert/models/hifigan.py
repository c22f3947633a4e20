"""The HiFi-GAN generator of KAN-TTS / ModelScope voices: mel frames -> waveform (16 kHz: hop 200,
causal by default). It keeps weight norm as checkpoints store it (`weight_g`/`weight_v`) until
`remove_weight_norm()` folds it for inference.

Like every vocoder here it exposes `hop` (samples per mel frame) and `context_frames` = (left, right):
how many mel frames before and after a chunk its output samples can depend on (the analytic receptive
field), so a streaming vocoder can cut a mel stream into chunks and still produce exactly the
whole-utterance audio.
"""

import math
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F


def _weight_norm(module):
    # The classic weight_norm keeps the checkpoints' parameter names (weight_g, weight_v); torch marks
    # it deprecated in favour of parametrizations, whose names differ.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return nn.utils.weight_norm(module)


def _remove_weight_norm(model):
    for module in model.modules():
        if hasattr(module, "weight_g"):
            nn.utils.remove_weight_norm(module)


def _conv_reach(kernel, dilation, causal):
    """(left, right) input samples a stride-1 convolution output looks at."""
    total = (kernel - 1) * dilation
    return (total, 0) if causal else (total // 2, total - total // 2)


def _widest(reaches):
    """Elementwise maximum of (left, right) pairs: parallel paths are bounded by the widest."""
    return tuple(max(r[i] for r in reaches) for i in (0, 1))


def _deconv_reach(kernel, stride, padding):
    """(left, right) input samples (at the input rate) a transposed-convolution output sample looks at,
    relative to the input sample it sits in."""
    return math.ceil((kernel - 1 - padding) / stride), math.ceil(padding / stride)


class ResidualBlock(nn.Module):
    """x += conv2(lrelu(conv1(lrelu(x)))) for each dilation; `make_conv(kernel, dilation)` builds a conv."""

    def __init__(self, make_conv, kernel, dilations, slope, causal=False):
        super().__init__()
        self.convs1 = nn.ModuleList(make_conv(kernel, d) for d in dilations)
        self.convs2 = nn.ModuleList(make_conv(kernel, 1) for _ in dilations)
        self.slope = slope
        pairs = [_conv_reach(kernel, d, causal) for d in dilations] + [_conv_reach(kernel, 1, causal)] * len(dilations)
        self.reach = tuple(sum(r[i] for r in pairs) for i in (0, 1))

    def forward(self, x):
        for conv1, conv2 in zip(self.convs1, self.convs2):
            x = x + conv2(F.leaky_relu(conv1(F.leaky_relu(x, self.slope)), self.slope))
        return x


class _Reach:
    """Adds up the receptive field, layer by layer, in mel frames."""

    def __init__(self):
        self.left = self.right = 0.0

    def add(self, reach, samples_per_frame):
        self.left += reach[0] / samples_per_frame
        self.right += reach[1] / samples_per_frame

    def frames(self):
        return math.ceil(self.left - 1e-9), math.ceil(self.right - 1e-9)


# ---------------------------------------------------------------- KAN-TTS generator


class Conv1d(nn.Module):
    """KAN-TTS's convolution wrapper: the weight-normed conv sits in `.conv1d`; causal pads on the left."""

    def __init__(self, c_in, c_out, kernel, dilation=1, causal=False, bias=True):
        super().__init__()
        self.conv1d = _weight_norm(nn.Conv1d(c_in, c_out, kernel, dilation=dilation, bias=bias))
        self.reach = _conv_reach(kernel, dilation, causal)

    def forward(self, x):
        return self.conv1d(F.pad(x, self.reach))


class ConvTranspose1d(nn.Module):
    """KAN-TTS's transposed-conv wrapper (`.deconv`). Causal: no padding, the last kernel-stride samples
    dropped, so output sample n hears inputs up to n // stride only."""

    def __init__(self, c_in, c_out, kernel, stride, causal=False, bias=True):
        super().__init__()
        padding = 0 if causal else (kernel - stride) // 2
        self.deconv = _weight_norm(nn.ConvTranspose1d(c_in, c_out, kernel, stride, padding=padding, bias=bias))
        self.trim = kernel - stride if causal else 0
        self.reach = _deconv_reach(kernel, stride, padding) if not causal else (math.ceil(kernel / stride) - 1, 0)

    def forward(self, x):
        y = self.deconv(x)
        return y[..., : y.shape[-1] - self.trim]


class KanttsHifiGan(nn.Module):
    """KAN-TTS HiFi-GAN generator (`Model.Generator.params` of a voice's voc/config.yaml).

    Per stage: x = sin(x) + x, then two upsampling paths summed (nearest+conv and transposed conv),
    then the mean of the residual blocks.
    """

    bf16_on_cpu = True  # 1.37-1.50x faster under bf16 autocast where the CPU has it (benchmarks/cpu_bf16.py)

    def __init__(self, params):
        super().__init__()
        p = dict(params)
        if p.get("out_channels", 1) != 1:
            raise ValueError(f"multi-band HiFi-GAN (out_channels={p['out_channels']}) is not supported")
        if p.get("nsf_params"):
            raise ValueError("NSF HiFi-GAN (nsf_params) is not supported")
        if not p.get("repeat_upsample", True):
            raise ValueError("HiFi-GAN without repeat_upsample is not supported")
        causal, bias, kernel = bool(p.get("causal", False)), p.get("bias", True), p["kernel_size"]
        self.slope = p.get("nonlinear_activation_params", {}).get("negative_slope", 0.1)
        scales, up_kernels = p["upsample_scales"], p["upsample_kernal_sizes"]
        self.hop = math.prod(scales)
        self.n_blocks = len(p["resblock_kernel_sizes"])
        reach = _Reach()

        channels = p["channels"]
        self.conv_pre = Conv1d(p["in_channels"], channels, kernel, causal=causal, bias=bias)
        reach.add(self.conv_pre.reach, 1)
        self.transpose_upsamples = nn.ModuleList()
        self.repeat_upsamples = nn.ModuleList()
        self.conv_blocks = nn.ModuleList()
        rate = 1
        for scale, up_kernel in zip(scales, up_kernels):
            c_out = channels // 2
            deconv = ConvTranspose1d(channels, c_out, up_kernel, scale, causal, bias)
            repeat = Conv1d(channels, c_out, kernel, causal=causal, bias=bias)
            self.transpose_upsamples.append(nn.Sequential(nn.LeakyReLU(self.slope), deconv))
            self.repeat_upsamples.append(
                nn.Sequential(nn.Upsample(scale_factor=scale, mode="nearest"), nn.LeakyReLU(self.slope), repeat)
            )
            # The two paths run side by side: the wider one bounds the stage.
            reach.add(_widest([[r / rate for r in deconv.reach], [r / (rate * scale) for r in repeat.reach]]), 1)
            rate *= scale

            def make_conv(k, d, c=c_out):
                return Conv1d(c, c, k, dilation=d, causal=causal, bias=bias)

            blocks = [ResidualBlock(make_conv, k, dil, self.slope, causal)
                      for k, dil in zip(p["resblock_kernel_sizes"], p["resblock_dilations"])]
            self.conv_blocks.extend(blocks)
            reach.add(_widest([b.reach for b in blocks]), rate)
            channels = c_out
        self.conv_post = Conv1d(channels, 1, kernel, causal=causal, bias=bias)
        reach.add(self.conv_post.reach, rate)
        self.context_frames = reach.frames()

    def forward(self, mel):
        """mel [B, n_mels, T] -> wav [B, 1, T * hop]."""
        x = self.conv_pre(mel)
        for i, (repeat, transpose) in enumerate(zip(self.repeat_upsamples, self.transpose_upsamples)):
            x = torch.sin(x) + x
            rep = repeat(x)
            x = rep + transpose(x)[..., : rep.shape[-1]]
            blocks = self.conv_blocks[i * self.n_blocks : (i + 1) * self.n_blocks]
            x = sum(block(x) for block in blocks) / self.n_blocks
        return torch.tanh(self.conv_post(F.leaky_relu(x)))

    def remove_weight_norm(self):
        _remove_weight_norm(self)
