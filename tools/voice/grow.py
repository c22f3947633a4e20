"""Grow a trained student into a larger one that computes exactly the same function, so training goes on
from what it knows with room to learn more (the student underfits: its train and held-out mel L1 are equal).

Two growths keep the function, and only these are allowed:
- wider feed-forward layers (`*_ffn_inner_dim`): the new hidden units get fresh input weights and zero
  output weights, so they add nothing until training moves them;
- more PNCA decoder blocks (`decoder_num_layers`), appended: both attention output projections and the
  feed-forward's output convolution start at zero, and the block is pre-LN with residuals, so a new block
  passes its input through unchanged.
"""

import torch

GROWABLE = ("decoder_num_layers", "decoder_ffn_inner_dim", "postnet_ffn_inner_dim", "encoder_ffn_inner_dim",
            "predictor_ffn_inner_dim")
# the output projections of a PNCA block: zero in an appended block makes it the identity
BLOCK_OUTPUTS = ("pnca_attn.fc_x.", "pnca_attn.fc_h.", "pos_ffn.w_2.")


def parse_growth(pairs):
    """["decoder_num_layers=6", ...] -> {"decoder_num_layers": 6, ...}, refusing anything not GROWABLE."""
    growth = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in GROWABLE:
            raise SystemExit(f"--grow {pair}: only {', '.join(GROWABLE)} can grow without changing the output")
        growth[key] = int(value)
    return growth


def grown_state(small, large, old_layers):
    """State dict for `large` (a fresh model's state: its init) holding every tensor of `small`.

    A tensor that grew keeps the small one in its leading slice; along a grown input dimension (dim 1 of a
    linear or convolution weight) the new entries are zero, along a grown output dimension they keep their
    fresh init. Keys of appended decoder blocks keep their init except BLOCK_OUTPUTS, which are zeroed.
    """
    state = {}
    for key, fresh in large.items():
        if key in small:
            old = small[key]
            if old.dim() != fresh.dim() or any(o > n for o, n in zip(old.shape, fresh.shape)):
                raise ValueError(f"{key}: {tuple(old.shape)} cannot grow into {tuple(fresh.shape)}")
            new = fresh.clone()
            if new.dim() > 1 and new.shape[1] > old.shape[1]:
                new[:, old.shape[1]:] = 0
            new[tuple(slice(0, n) for n in old.shape)] = old
            state[key] = new
        elif _appended_block(key, old_layers):
            state[key] = torch.zeros_like(fresh) if any(s in key for s in BLOCK_OUTPUTS) else fresh.clone()
        else:
            raise ValueError(f"{key}: not in the trained model and not part of an appended decoder block")
    return state


def _appended_block(key, old_layers):
    prefix = "mel_decoder.mel_dec.pnca."
    return key.startswith(prefix) and int(key[len(prefix):].split(".")[0]) >= old_layers
