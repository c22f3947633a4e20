"""The default voice's SAM-BERT size: KAN-TTS's network at about 3.4M parameters (the official voices
use ~40M), small enough to train on two CPU cores in hours."""

from sambert.frontend.inventory import Inventory

STUDENT_PARAMS = dict(
    max_len=800, embedding_dim=256, encoder_num_layers=4, encoder_num_heads=4, encoder_num_units=128,
    encoder_ffn_inner_dim=512, encoder_dropout=0.1, encoder_attention_dropout=0.1, encoder_relu_dropout=0.1,
    encoder_projection_units=32, speaker_units=16, emotion_units=16, predictor_filter_size=41,
    predictor_fsmn_num_layers=2, predictor_num_memory_units=128, predictor_ffn_inner_dim=256,
    predictor_dropout=0.1, predictor_shift=0, predictor_lstm_units=64, dur_pred_prenet_units=[64, 64],
    dur_pred_lstm_units=64, decoder_prenet_units=[128, 128], decoder_num_layers=4, decoder_num_heads=4,
    decoder_num_units=128, decoder_ffn_inner_dim=512, decoder_dropout=0.1, decoder_attention_dropout=0.1,
    decoder_relu_dropout=0.1, outputs_per_step=3, num_mels=80, postnet_filter_size=41,
    postnet_fsmn_num_layers=2, postnet_num_memory_units=128, postnet_ffn_inner_dim=256, postnet_dropout=0.1,
    postnet_shift=17, postnet_lstm_units=64, MAS=False,
)
SPEAKERS = ("F7",)  # the speaker our frontend writes into every unit
EMOTIONS = ("neutral",)


def student_params():
    """Architecture + vocabulary sizes, as SamBert(params) and voice.yaml take them."""
    return dict(STUDENT_PARAMS, **Inventory(SPEAKERS).sizes())
