"""SAM-BERT acoustic model: linguistic units -> 80-band mel frames.

Same network and state-dict names as KAN-TTS's `KanTtsSAMBERT`, written from its description:

    units --text encoder (self-attention)--> text  ┐
    speaker, emotion ids --embeddings--> spk, emo  ┴> variance adaptor: pitch & energy (per unit,
        bidirectional), duration (autoregressive over units) -> length regulator -> frame memory
    memory --PNCA decoder (3 frames a step, band-limited attention)--> mel --FSMN post-net--> mel

Inference is split where streaming can cut it: `encode` runs the unit-level stage once per sentence
and returns a `PhonePlan`; `decode` yields decoder steps one at a time with cached keys/values;
`postnet_stream` turns those steps into final frames as soon as their lookahead has arrived.
`forward` is the parallel teacher-forced training path with the same band masks.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from sambert.models.layers import (
    LN_EPS,
    ConvFeedForward,
    FsmnEncoder,
    MultiHeadSelfAttention,
    Prenet,
    attend,
    duration_position_encoding,
    duration_timescales,
    merge_heads,
    split_heads,
    text_position_table,
)

VOCABULARIES = ("sy", "tone", "syllable_flag", "word_segment", "emotion", "speaker")
_ARCHITECTURE = """
    max_len embedding_dim encoder_num_layers encoder_num_heads encoder_num_units encoder_ffn_inner_dim
    encoder_projection_units speaker_units emotion_units predictor_filter_size predictor_fsmn_num_layers
    predictor_num_memory_units predictor_ffn_inner_dim predictor_shift predictor_lstm_units
    dur_pred_prenet_units dur_pred_lstm_units decoder_prenet_units decoder_num_layers decoder_num_heads
    decoder_num_units decoder_ffn_inner_dim outputs_per_step num_mels postnet_filter_size
    postnet_fsmn_num_layers postnet_num_memory_units postnet_ffn_inner_dim postnet_shift postnet_lstm_units
"""
REQUIRED_PARAMS = VOCABULARIES + tuple(_ARCHITECTURE.split())
# KAN-TTS options that add layers this implementation does not have.
UNSUPPORTED_OPTIONS = ("MAS", "FP", "SE", "NSF", "using_byte")


@dataclass
class PhonePlan:
    """Everything the frame-level stage of one sentence needs, from `SamBert.encode`.

    Per unit: `durations` (frames, int64 [N]), `log_durations` (log(d+1) as predicted), `pitch` and
    `energy` (normalised, after the controls); per decoder step: `memory` [1, S, d_memory]. The decoder
    attends `x_band_width` steps back and `h_band_width` memory steps ahead; `n_frames` = sum(durations).
    """

    durations: torch.Tensor
    log_durations: torch.Tensor
    pitch: torch.Tensor
    energy: torch.Tensor
    memory: torch.Tensor
    x_band_width: int
    h_band_width: int
    n_frames: int

    @property
    def n_steps(self):
        return self.memory.shape[1]


class PositionTable(nn.Module):
    """The text encoder's fixed sinusoid table (kept as a parameter: checkpoints carry it)."""

    def __init__(self, max_len, depth):
        super().__init__()
        self.position_enc = nn.Parameter(text_position_table(max_len, depth)[None], requires_grad=False)

    def forward(self, length):
        if length <= self.position_enc.shape[1]:
            return self.position_enc[:, :length]
        table = text_position_table(length, self.position_enc.shape[2])
        return table[None].to(self.position_enc)


class FFTBlock(nn.Module):
    def __init__(self, d_in, n_head, d_model, d_inner, kernel_sizes, dropout, attention_dropout, relu_dropout):
        super().__init__()
        self.slf_attn = MultiHeadSelfAttention(d_in, n_head, d_model, dropout, attention_dropout)
        self.pos_ffn = ConvFeedForward(d_model, d_inner, kernel_sizes, dropout, relu_dropout)

    def forward(self, x, pad=None):
        return self.pos_ffn(self.slf_attn(x, pad), pad)


class SelfAttentionEncoder(nn.Module):
    def __init__(self, p):
        super().__init__()
        d_emb, d_model = p["embedding_dim"], p["encoder_num_units"]
        self.scale = math.sqrt(d_model)  # the model width, not the embedding width: a KAN-TTS quirk
        self.position_enc = PositionTable(p["max_len"], d_emb)
        self.dropout = nn.Dropout(p.get("encoder_dropout", 0.1))
        self.fft = nn.ModuleList(
            FFTBlock(d_emb if i == 0 else d_model, p["encoder_num_heads"], d_model, p["encoder_ffn_inner_dim"],
                     (3, 1), p.get("encoder_dropout", 0.1), p.get("encoder_attention_dropout", 0.1),
                     p.get("encoder_relu_dropout", 0.1))
            for i in range(p["encoder_num_layers"])
        )
        self.ln = nn.LayerNorm(d_model, eps=LN_EPS)

    def forward(self, x, pad=None):
        x = self.dropout(x * self.scale + self.position_enc(x.shape[1]))
        for block in self.fft:
            x = block(x, pad)
        return self.ln(x)


class TextEncoder(nn.Module):
    def __init__(self, p):
        super().__init__()
        d = p["embedding_dim"]
        self.sy_emb = nn.Embedding(p["sy"], d)
        self.tone_emb = nn.Embedding(p["tone"], d)
        self.syllable_flag_emb = nn.Embedding(p["syllable_flag"], d)
        self.ws_emb = nn.Embedding(p["word_segment"], d)
        self.ling_enc = SelfAttentionEncoder(p)
        self.ling_proj = nn.Linear(p["encoder_num_units"], p["encoder_projection_units"], bias=False)

    def forward(self, ling, pad=None):
        """ling [B, N, 4] ids (sy, tone, syllable_flag, word_segment) -> [B, N, projection_units]."""
        x = (self.sy_emb(ling[..., 0]) + self.tone_emb(ling[..., 1])
             + self.syllable_flag_emb(ling[..., 2]) + self.ws_emb(ling[..., 3]))
        out = self.ling_proj(self.ling_enc(x, pad))
        return out if pad is None else out.masked_fill(pad[..., None], 0.0)


class FsmnRnnPredictor(nn.Module):
    """Pitch or energy per unit: FSMN stack, bidirectional LSTM, linear. Sees the whole sentence."""

    def __init__(self, d_in, p):
        super().__init__()
        self.fsmn = FsmnEncoder(d_in, p["predictor_filter_size"], p["predictor_fsmn_num_layers"],
                                p["predictor_num_memory_units"], p["predictor_ffn_inner_dim"],
                                p["predictor_shift"], p.get("predictor_dropout", 0.1))
        units = p["predictor_lstm_units"]
        self.blstm = nn.LSTM(p["predictor_num_memory_units"], units, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * units, 1)

    def forward(self, x, pad=None, lengths=None):
        h = self.fsmn(x, pad)
        if lengths is not None and bool(pad.any()):
            # Packed, so the backward direction starts at each sentence's own last unit.
            packed = nn.utils.rnn.pack_padded_sequence(h, lengths.cpu(), batch_first=True, enforce_sorted=False)
            h, _ = nn.utils.rnn.pad_packed_sequence(self.blstm(packed)[0], batch_first=True, total_length=x.shape[1])
        else:
            h, _ = self.blstm(h)
        out = self.fc(h).squeeze(-1)
        return out if pad is None else out.masked_fill(pad, 0.0)


class DurationPredictor(nn.Module):
    """log(frames + 1) per unit, autoregressive over units: each step sees the previous step's output."""

    def __init__(self, d_in, p):
        super().__init__()
        units = p["dur_pred_prenet_units"]
        self.prenet = Prenet(1, units)
        self.lstm = nn.LSTM(units[-1] + d_in, p["dur_pred_lstm_units"], num_layers=2, batch_first=True)
        self.fc = nn.Linear(p["dur_pred_lstm_units"], 1)

    def forward(self, cond, targets, pad=None):
        """Teacher forcing: cond [B, N, d_in], targets [B, N] log durations -> predictions [B, N]."""
        previous = F.pad(targets[:, :-1], (1, 0))[..., None]
        h, _ = self.lstm(torch.cat([self.prenet(previous), cond], dim=-1))
        out = F.relu(self.fc(h)).squeeze(-1)
        return out if pad is None else out.masked_fill(pad, 0.0)

    def infer(self, cond):
        """cond [1, N, d_in] -> [1, N], feeding back each (unrounded) prediction."""
        previous = cond.new_zeros(1, 1, 1)
        state, outs = None, []
        for i in range(cond.shape[1]):
            h, state = self.lstm(torch.cat([self.prenet(previous), cond[:, i : i + 1]], dim=-1), state)
            previous = F.relu(self.fc(h))
            outs.append(previous)
        return torch.cat(outs, dim=1).squeeze(-1)


class DurationPositionEncoder(nn.Module):
    def __init__(self, depth):
        super().__init__()
        self.inv_timescales = nn.Parameter(duration_timescales(depth), requires_grad=False)

    def forward(self, positions):
        return duration_position_encoding(positions, self.inv_timescales)


class VarianceAdaptor(nn.Module):
    def __init__(self, p):
        super().__init__()
        d_text = p["encoder_projection_units"]
        d_cond = d_text + p["speaker_units"] + p["emotion_units"]
        self.pitch_predictor = FsmnRnnPredictor(d_cond, p)
        self.energy_predictor = FsmnRnnPredictor(d_cond, p)
        self.duration_predictor = DurationPredictor(d_cond, p)
        self.dur_position_encoder = DurationPositionEncoder(d_text)
        self.pitch_emb = nn.Conv1d(1, d_text, 9, padding=4)
        self.energy_emb = nn.Conv1d(1, d_text, 9, padding=4)

    def embed_prosody(self, text, pitch, energy):
        """Add the pitch and energy embeddings (convolutions over the unit axis) to the text."""
        return text + (self.pitch_emb(pitch[:, None]) + self.energy_emb(energy[:, None])).transpose(1, 2)


def regulate(durations, n_frames):
    """Frame -> unit assignment: durations [B, N] ints -> (one-hot [B, n_frames, N] float, 1-based
    position of each frame inside its unit [B, n_frames], 0 on frames past the sentence)."""
    ends = durations.cumsum(-1)[:, None, :]
    starts = ends - durations[:, None, :]
    frame = torch.arange(n_frames, device=durations.device)[None, :, None]
    inside = (frame >= starts) & (frame < ends)
    positions = ((frame - starts + 1) * inside).sum(-1)
    return inside.float(), positions


def band_masks(n_steps, x_band, h_band, valid_steps):
    """Blocked positions of the decoder's two attentions, [B, 1, S, S] (True = may not look):
    own past steps [t - x_band, t], memory steps [t, min(valid - 1, t + h_band)]."""
    t = torch.arange(n_steps, device=x_band.device)
    query, key = t[None, :, None], t[None, None, :]
    x_band, h_band, valid = x_band[:, None, None], h_band[:, None, None], valid_steps[:, None, None]
    x_blocked = (key > query) | (key < query - x_band)
    h_blocked = (key < query) | (key > query + h_band) | (key >= valid)
    return x_blocked[:, None], h_blocked[:, None]


class PncaAttention(nn.Module):
    """Decoder attention: to its own past steps (x) and to the frame memory (h), summed."""

    def __init__(self, d_model, d_memory, n_head, dropout, attention_dropout):
        super().__init__()
        self.n_head = n_head
        self.layer_norm = nn.LayerNorm(d_model, eps=LN_EPS)
        self.w_x_qkv = nn.Linear(d_model, 3 * d_model)
        self.fc_x = nn.Linear(d_model, d_model)
        self.w_h_kv = nn.Linear(d_memory, 2 * d_model)
        self.fc_h = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.attention_dropout = attention_dropout

    def memory_kv(self, memory):
        """Keys and values of the memory, [B, H, S, D] each (the memory is not layer-normed)."""
        return tuple(split_heads(t, self.n_head) for t in self.w_h_kv(memory).chunk(2, dim=-1))

    def forward(self, x, memory_kv, x_blocked=None, h_blocked=None, cache=None):
        """x [B, S, d]; with `cache` (dict of past k/v, updated in place) x is the newest step alone."""
        q, k, v = (split_heads(t, self.n_head) for t in self.w_x_qkv(self.layer_norm(x)).chunk(3, dim=-1))
        if cache is not None:  # keep the steps this query may see: [t - x_band_width, t]
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            k, v = k[:, :, -cache["window"]:], v[:, :, -cache["window"]:]
            cache["k"], cache["v"] = k, v
        drop = self.attention_dropout if self.training else 0.0
        own = self.fc_x(merge_heads(attend(q, k, v, x_blocked, drop)))
        heard = self.fc_h(merge_heads(attend(q, *memory_kv, h_blocked, drop)))
        return self.dropout(own + heard) + x


class PncaBlock(nn.Module):
    def __init__(self, d_model, d_memory, n_head, d_inner, dropout, attention_dropout, relu_dropout):
        super().__init__()
        self.pnca_attn = PncaAttention(d_model, d_memory, n_head, dropout, attention_dropout)
        self.pos_ffn = ConvFeedForward(d_model, d_inner, (1, 1), dropout, relu_dropout)

    def forward(self, x, memory_kv, x_blocked=None, h_blocked=None, cache=None, pad=None):
        return self.pos_ffn(self.pnca_attn(x, memory_kv, x_blocked, h_blocked, cache), pad)


class PncaDecoder(nn.Module):
    """One step turns (memory step, last frame of the previous step) into r mel frames."""

    def __init__(self, p, d_memory):
        super().__init__()
        d_model, self.r, self.n_mels = p["decoder_num_units"], p["outputs_per_step"], p["num_mels"]
        self.scale = math.sqrt(d_model)
        self.prenet = Prenet(self.n_mels, p["decoder_prenet_units"], d_model)
        self.dec_in_proj = nn.Linear(d_memory + d_model, d_model)
        self.pnca = nn.ModuleList(
            PncaBlock(d_model, d_memory, p["decoder_num_heads"], p["decoder_ffn_inner_dim"],
                      p.get("decoder_dropout", 0.1), p.get("decoder_attention_dropout", 0.1),
                      p.get("decoder_relu_dropout", 0.1))
            for _ in range(p["decoder_num_layers"])
        )
        self.ln = nn.LayerNorm(d_model, eps=LN_EPS)
        self.dec_out_proj = nn.Linear(d_model, self.n_mels * self.r)

    def forward(self, memory, previous, x_blocked, h_blocked, caches=None, memory_kvs=None, pad=None):
        """memory [B, S, d_memory], previous [B, S, n_mels] (the frame before each step) -> [B, S, r*n_mels]."""
        x = self.dec_in_proj(torch.cat([memory, self.prenet(previous)], dim=-1)) * self.scale
        memory_kvs = memory_kvs or [block.pnca_attn.memory_kv(memory) for block in self.pnca]
        caches = caches or [None] * len(self.pnca)
        for block, kv, cache in zip(self.pnca, memory_kvs, caches):
            x = block(x, kv, x_blocked, h_blocked, cache, pad)
        return self.dec_out_proj(self.ln(x))


class PostNet(nn.Module):
    """Residual correction of the decoder mel: FSMN (bounded look-ahead) then a one-way LSTM."""

    def __init__(self, p):
        super().__init__()
        self.fsmn = FsmnEncoder(p["num_mels"], p["postnet_filter_size"], p["postnet_fsmn_num_layers"],
                                p["postnet_num_memory_units"], p["postnet_ffn_inner_dim"], p["postnet_shift"],
                                p.get("postnet_dropout", 0.1))
        self.lstm = nn.LSTM(p["postnet_num_memory_units"], p["postnet_lstm_units"], batch_first=True)
        self.fc = nn.Linear(p["postnet_lstm_units"], p["num_mels"])

    def forward(self, mel, pad=None):
        """mel [B, T, n_mels] -> the corrected mel (residual included), zero on padding."""
        out = self.fc(self.lstm(self.fsmn(mel, pad))[0]) + mel
        return out if pad is None else out.masked_fill(pad[..., None], 0.0)


class SamBert(nn.Module):
    def __init__(self, params):
        super().__init__()
        missing = [k for k in REQUIRED_PARAMS if k not in params]
        if missing:
            raise ValueError(f"SAM-BERT params lack {', '.join(missing)}")
        unsupported = [k for k in UNSUPPORTED_OPTIONS if params.get(k)]
        if unsupported:
            raise ValueError(f"SAM-BERT options not supported: {', '.join(unsupported)}")
        p = self.params = dict(params)
        self.r, self.n_mels = p["outputs_per_step"], p["num_mels"]
        self.text_encoder = TextEncoder(p)
        self.spk_tokenizer = nn.Embedding(p["speaker"], p["speaker_units"])
        self.emo_tokenizer = nn.Embedding(p["emotion"], p["emotion_units"])
        self.variance_adaptor = VarianceAdaptor(p)
        d_memory = self.r * p["encoder_projection_units"] + p["speaker_units"] + p["emotion_units"]
        self.mel_decoder = nn.ModuleDict({"mel_dec": PncaDecoder(p, d_memory)})
        self.mel_postnet = PostNet(p)

    @property
    def decoder(self):
        return self.mel_decoder["mel_dec"]

    def _units(self, ling, emotion, speaker, pad=None):
        text = self.text_encoder(ling, pad)
        spk, emo = self.spk_tokenizer(speaker), self.emo_tokenizer(emotion)
        return text, spk, emo

    def _memory(self, text, spk, emo, durations, n_steps):
        """Length-regulate the unit features to frames and group r frames per decoder step:
        memory [B, S, r*d_text + d_spk + d_emo] = (r frames of text, speaker and emotion of the first)."""
        b = text.shape[0]
        onehot, positions = regulate(durations, n_steps * self.r)
        frames_text = onehot @ text + self.variance_adaptor.dur_position_encoder(positions)
        first = onehot.view(b, n_steps, self.r, -1)[:, :, 0]
        return torch.cat([frames_text.reshape(b, n_steps, -1), first @ spk, first @ emo], dim=-1)

    def _band_width(self, durations):
        # From the unrounded durations' maximum, as KAN-TTS does; one width per sentence.
        return (durations.float().amax(-1) / self.r + 0.5).long()

    def forward(self, ling, emotion, speaker, lengths, mel_targets=None, durations=None,
                pitch_targets=None, energy_targets=None, previous_frames=None):
        """Parallel teacher-forced pass for training (batch of padded sentences).

        ling [B, N, 4], emotion/speaker [B, N], lengths [B]; mel_targets [B, T, n_mels] and durations
        [B, N] (frames per unit, summing to each sentence's frame count <= T) are required; pitch/energy
        targets [B, N] replace the predictions in the embeddings when given. previous_frames [B, T, n_mels]
        replaces mel_targets as the frames each decoder step reads as the one before it (training can pass
        the model's own earlier outputs, which is what it reads when it synthesises). Returns dec_outputs and
        postnet_outputs [B, T, n_mels], log_duration_predictions (log(d+1)), pitch_predictions,
        energy_predictions [B, N], the masks (True = padding) and the band widths used.
        """
        if mel_targets is None or durations is None:
            raise ValueError("SamBert.forward trains with teacher forcing: pass mel_targets and durations "
                             "(use infer() or encode()/decode() to synthesise)")
        b, n = ling.shape[:2]
        input_pad = torch.arange(n, device=ling.device)[None] >= lengths[:, None]
        durations = durations.long().masked_fill(input_pad, 0)
        n_frames = durations.sum(-1)
        t = mel_targets.shape[1]
        if int(n_frames.max()) > t:
            raise ValueError(f"durations sum to {int(n_frames.max())} frames but mel_targets has {t}")

        va = self.variance_adaptor
        text, spk, emo = self._units(ling, emotion, speaker, input_pad)
        cond = torch.cat([text, spk, emo], dim=-1)
        pitch = va.pitch_predictor(cond, input_pad, lengths)
        energy = va.energy_predictor(cond, input_pad, lengths)
        text = va.embed_prosody(text, pitch if pitch_targets is None else pitch_targets,
                                energy if energy_targets is None else energy_targets).masked_fill(input_pad[..., None], 0.0)
        log_durations = va.duration_predictor(torch.cat([text, spk, emo], dim=-1),
                                              torch.log1p(durations.float()), input_pad)

        n_steps = -(-t // self.r)
        memory = self._memory(text, spk, emo, durations, n_steps)
        band = self._band_width(durations)
        valid_steps = -(-n_frames // self.r)
        x_blocked, h_blocked = band_masks(n_steps, band, band, valid_steps)
        read = F.pad(mel_targets if previous_frames is None else previous_frames, (0, 0, 0, n_steps * self.r - t))
        # Step s starts from the last frame of step s-1 (zeros for the first step).
        previous = F.pad(read.view(b, n_steps, self.r, -1)[:, :-1, -1], (0, 0, 1, 0))
        step_pad = torch.arange(n_steps, device=ling.device)[None] >= valid_steps[:, None]
        dec = self.decoder(memory, previous, x_blocked, h_blocked, pad=step_pad)
        mel_pad = torch.arange(t, device=ling.device)[None] >= n_frames[:, None]
        dec = dec.reshape(b, n_steps * self.r, -1)[:, :t].masked_fill(mel_pad[..., None], 0.0)
        return {
            "dec_outputs": dec,
            "postnet_outputs": self.mel_postnet(dec, mel_pad),
            "log_duration_predictions": log_durations,
            "pitch_predictions": pitch,
            "energy_predictions": energy,
            "input_masks": input_pad,
            "mel_masks": mel_pad,
            "x_band_width": band,
            "h_band_width": band,
        }

    @torch.no_grad()
    def encode(self, ling, emotion, speaker, speed=1.0, pitch_shift=0.0, pitch_scale=1.0, energy_scale=1.0):
        """Unit-level stage of one sentence: ling [1, N, 4], emotion/speaker [1, N] -> PhonePlan.

        Controls act on the predictions: durations are divided by `speed`; the normalised pitch becomes
        pitch * pitch_scale + pitch_shift and the energy energy * energy_scale before their embeddings
        (so the durations also hear the changed prosody).
        """
        if ling.dim() != 3 or ling.shape[0] != 1 or ling.shape[-1] != 4 or ling.shape[1] == 0:
            raise ValueError(f"encode takes one non-empty sentence, ling [1, N, 4]; got {tuple(ling.shape)}")
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        va = self.variance_adaptor
        text, spk, emo = self._units(ling, emotion, speaker)
        cond = torch.cat([text, spk, emo], dim=-1)
        pitch = va.pitch_predictor(cond) * pitch_scale + pitch_shift
        energy = va.energy_predictor(cond) * energy_scale
        text = va.embed_prosody(text, pitch, energy)
        log_durations = va.duration_predictor.infer(torch.cat([text, spk, emo], dim=-1))
        frames = torch.expm1(log_durations) / speed
        durations = (frames + 0.5).long()
        if int(durations.sum()) == 0:
            # Every unit rounds to zero frames (KAN-TTS crashes here): give the longest one a frame.
            durations[0, frames[0].argmax()] = 1
        n_frames = int(durations.sum())
        n_steps = -(-n_frames // self.r)
        band = int(self._band_width(frames))
        return PhonePlan(
            durations=durations[0],
            log_durations=log_durations[0],
            pitch=pitch[0],
            energy=energy[0],
            memory=self._memory(text, spk, emo, durations, n_steps),
            x_band_width=band,
            h_band_width=band,
            n_frames=n_frames,
        )

    @torch.no_grad()
    def decode(self, plan):
        """Yield the decoder's mel, one step ([1, r, n_mels]; the last step only up to n_frames) at a time.

        Each step keeps only what it can see: the keys/values of its last x_band_width+1 own steps
        and the memory steps [t, t + h_band_width], so every step costs the same.
        """
        dec = self.decoder
        memory_kvs = [block.pnca_attn.memory_kv(plan.memory) for block in dec.pnca]
        caches = [{"window": plan.x_band_width + 1} for _ in dec.pnca]
        previous = plan.memory.new_zeros(1, 1, self.n_mels)
        ahead = plan.h_band_width + 1
        for t in range(plan.n_steps):
            kvs = [(k[:, :, t : t + ahead], v[:, :, t : t + ahead]) for k, v in memory_kvs]
            out = dec(plan.memory[:, t : t + 1], previous, None, None, caches, kvs).view(1, self.r, self.n_mels)
            previous = out[:, -1:]
            yield out[:, : plan.n_frames - t * self.r]

    def postnet_stream(self, plan):
        """A streamed post-net for this sentence: push(decoder frames) -> final frames, finish() -> rest."""
        return PostnetStream(self.mel_postnet, plan.n_frames)

    @torch.no_grad()
    def infer(self, ling, emotion, speaker, **controls):
        """Whole sentence, as KAN-TTS infers it: the outputs are [1, n_frames, n_mels] mels and the
        unit-level predictions [1, N]."""
        plan = self.encode(ling, emotion, speaker, **controls)
        dec = torch.cat(list(self.decode(plan)), dim=1)
        return {
            "dec_outputs": dec,
            "postnet_outputs": self.mel_postnet(dec),
            "log_duration_predictions": plan.log_durations[None],
            "pitch_predictions": plan.pitch[None],
            "energy_predictions": plan.energy[None],
            "durations": plan.durations[None],
            "x_band_width": plan.x_band_width,
            "h_band_width": plan.h_band_width,
            "LR_length_rounded": plan.n_frames,
            "plan": plan,
        }


class _FsmnLayerStream:
    """One FSMN layer run on a stream: keeps `left` frames of filter history and waits for `right`."""

    def __init__(self, ffn, memory, residual, like):
        self.ffn, self.memory, self.residual = ffn, memory, residual
        self.ctx = like.new_zeros(1, memory.conv_dw.in_channels, memory.left)  # frames [done - left, seen)
        self.inputs = like.new_zeros(1, ffn.w_1.in_channels, 0)  # frames [done, seen), for the residual

    def push(self, x, final):
        if x.shape[2]:
            self.ctx = torch.cat([self.ctx, self.ffn(x)], dim=2)
            self.inputs = torch.cat([self.inputs, x], dim=2)
        ctx = F.pad(self.ctx, (0, self.memory.right)) if final else self.ctx
        n = ctx.shape[2] - self.memory.left - self.memory.right
        if n <= 0:
            return self.ctx.new_zeros(1, self.ctx.shape[1], 0)
        out = self.memory.conv_dw(ctx[:, :, : self.memory.left + n + self.memory.right])
        out = out + self.ctx[:, :, self.memory.left : self.memory.left + n]
        if self.residual:
            out = out + self.inputs[:, :, :n]
        self.ctx, self.inputs = self.ctx[:, :, n:], self.inputs[:, :, n:]
        return out


class PostnetStream:
    """Exact streamed post-net: frame j comes out once frame j + lookahead has gone in (or at finish);
    the FSMN keeps its filter history per layer and the LSTM carries its state."""

    def __init__(self, postnet, n_frames):
        self.postnet = postnet
        self.remaining = n_frames
        self.layers = None
        self.state = None
        self.pending = None  # decoder frames waiting for their correction

    @property
    def lookahead(self):
        return self.postnet.fsmn.lookahead

    @torch.no_grad()
    def push(self, frames):
        """frames [1, n, n_mels] of decoder output -> [1, k, n_mels] final frames (k may be 0)."""
        frames = frames[:, : self.remaining]
        self.remaining -= frames.shape[1]
        return self._run(frames, final=False)

    @torch.no_grad()
    def finish(self):
        """The frames still held back (the sentence end stands in for their lookahead)."""
        return self._run(None, final=True)

    def _run(self, frames, final):
        if self.layers is None:
            if frames is None:
                return torch.zeros(1, 0, self.postnet.fc.out_features)
            fsmn = self.postnet.fsmn
            self.layers = [_FsmnLayerStream(f, m, r, frames)
                           for f, m, r in zip(fsmn.ffn_lst, fsmn.memory_block_lst, fsmn.residual)]
            self.pending = frames[:, :0]
        if frames is not None:
            self.pending = torch.cat([self.pending, frames], dim=1)
            x = frames.transpose(1, 2)
        else:
            x = self.pending.new_zeros(1, self.pending.shape[2], 0)
        for layer in self.layers:
            x = layer.push(x, final)
        n = x.shape[2]
        if n == 0:
            return self.pending[:, :0]
        h, self.state = self.postnet.lstm(x.transpose(1, 2), self.state)
        out = self.postnet.fc(h) + self.pending[:, :n]
        self.pending = self.pending[:, n:]
        return out
