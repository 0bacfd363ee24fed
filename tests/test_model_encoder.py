"""Speech encoder: any length, padding-invariant, loads Whisper weights by name."""

import torch
from transformers import WhisperModel

from flowomni.model.encoder import Adapter, EncoderConfig, SpeechEncoder, n_adapter_frames

from helpers.models import tiny_hf_whisper

torch.manual_seed(0)
CFG = EncoderConfig(n_mels=16, d_model=32, n_layers=2, n_heads=4, ffn_dim=64)


def test_any_length_and_frame_rate():
    enc, ada = SpeechEncoder(CFG).eval(), Adapter(32, 48, stack=2)
    for t in (1, 7, 100, 3001):
        h, n = enc(torch.randn(1, t, 16), torch.tensor([t]))
        a, na = ada(h, n)
        assert h.shape == (1, (t + 1) // 2, 32)
        assert a.shape == (1, n_adapter_frames(t, 2), 48) and int(na) == a.shape[1]


def test_padding_does_not_change_features():
    enc, ada = SpeechEncoder(CFG).eval(), Adapter(32, 48, stack=2)
    x = torch.randn(1, 37, 16)
    alone, n1 = ada(*enc(x, torch.tensor([37])))
    padded = torch.cat([x, torch.zeros(1, 20, 16)], dim=1)
    other = torch.randn(1, 57, 16)
    batch, n2 = ada(*enc(torch.cat([padded, other]), torch.tensor([37, 57])))
    assert int(n1) == int(n2[0])
    torch.testing.assert_close(batch[0, : int(n1)], alone[0], atol=1e-5, rtol=1e-5)


def test_loads_pretrained_whisper_encoder(tmp_path):
    tiny_hf_whisper(tmp_path)
    ours = SpeechEncoder(CFG)
    ours.load_whisper(str(tmp_path))
    ref = WhisperModel.from_pretrained(tmp_path).encoder.eval()
    mel = torch.randn(1, 16, 100)  # HF wants [B, n_mels, 2 * max_source_positions]
    want = ref(mel).last_hidden_state
    got, _ = ours.eval()(mel.transpose(1, 2), torch.tensor([100]))
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
