"""A Vocos-style neural vocoder (Siuzdak 2023): ConvNeXt over mel frames -> STFT -> iSTFT.

Everything runs at the mel frame rate (~86 Hz) and one inverse FFT makes the samples, so it
costs a few milliseconds per second of audio on a CPU, far less than upsampling vocoders
(HiFi-GAN) or iterative phase recovery (Griffin-Lim).

Convolutions are padded asymmetrically: each sees `kernel - 1 - lookahead` past frames and
`lookahead` future ones. Output sample i*hop then depends on a bounded, mostly-past window
of frames, which is what lets `stream()` reproduce one-shot output exactly with little
latency (`n_convs * lookahead + 2` frames; the 2 are the iSTFT window's reach).
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from flowomni.audio.istft import istft
from flowomni.audio.mel import MelConfig
from flowomni.config import Bounds
from flowomni.vocoder.base import MAX_CHUNK_FRAMES, Vocoder, VocoderStream

log = logging.getLogger(__name__)


@dataclass
class VocosConfig:
    # allowed ranges, checked when read (flowomni.config.check_bounds)
    BOUNDS: ClassVar[Bounds] = {
        "dim": (1, 16384),
        "intermediate": (1, 65536),
        "layers": (1, 256),
        "kernel": (1, 255),
        "lookahead": (0, 254),
        "max_log_mag": (0, 100),
        "layer_scale": (0, 100),
    }

    dim: int = 128
    intermediate: int = 384  # ConvNeXt MLP width
    layers: int = 6
    kernel: int = 7
    lookahead: int = 1  # future frames each convolution sees
    max_log_mag: float = 4.6  # exp(4.6) ~ 100: clips the magnitude as Vocos does
    layer_scale: float = 1.0 / 6  # initial residual branch scale (ConvNeXt layer scale)


def _istft_frames_reach(n_fft: int, hop: int) -> tuple[int, int]:
    """(past, future) frames whose centred windows overlap a frame's own hop of samples."""
    return (n_fft // 2 - 1) // hop, (n_fft // 2 + hop - 1) // hop


class CausalishConv(nn.Conv1d):
    """Conv1d over time-major frames [B, T, C] with `lookahead` frames of right padding and the
    rest on the left. (Weights keep nn.Conv1d's layout, so checkpoints are plain Conv1d ones.)

    Time-major, the per-frame layers around it need no transposes. A depthwise kernel becomes
    `kernel` shifted multiply-adds (measured on one core, 128 channels x 225 frames: 162 us for
    the oneDNN convolution, 90 us here) and a dense one a single matmul over unfolded frames
    (what the convolution does anyway: same speed, same numbers)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, lookahead: int, groups: int = 1) -> None:
        if not 0 <= lookahead < kernel:
            raise ValueError(f"lookahead {lookahead} must be in [0, kernel {kernel})")
        if groups not in (1, c_in) or (groups == c_in and c_out != c_in):
            raise ValueError("CausalishConv is either dense (groups=1) or depthwise (groups=c_in=c_out)")
        super().__init__(c_in, c_out, kernel, groups=groups)
        self.pad = (kernel - 1 - lookahead, lookahead)
        self.packed: nn.Module | None = None  # a dense conv's matmul, packed for CPU inference (NeuralVocoder)

    def as_linear(self) -> nn.Linear:
        """A dense conv's matmul over unfolded frames as an nn.Linear (sharing the weights)."""
        lin = nn.Linear(self.in_channels * self.kernel_size[0], self.out_channels)
        lin.weight, lin.bias = nn.Parameter(self.weight.flatten(1)), self.bias
        return lin.to(self.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, C_in] -> [B, T, C_out]
        return self.valid(F.pad(x, (0, 0, *self.pad)))

    def valid(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution without padding: [B, T, C_in] -> [B, T - kernel + 1, C_out] (streaming
        feeds it the frames it kept from the last call in front of the new ones)."""
        k = self.kernel_size[0]
        if self.groups == 1:  # unfold gives [B, T, C_in, k], the order of weight.flatten(1)
            x = x.unfold(1, k, 1).flatten(2)
            return F.linear(x, self.weight.flatten(1), self.bias) if self.packed is None else self.packed(x)
        # depthwise. Slices end at constant offsets from the end, so a traced graph works for any length.
        w = self.weight[:, 0].T.contiguous()  # [k, C]
        y = torch.addcmul(self.bias, x[:, : 1 - k], w[0])
        for i in range(1, k):
            y.addcmul_(x[:, i : (i + 1 - k) or None], w[i])
        return y


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (time mixing) then a per-frame MLP (channel mixing), residual."""

    def __init__(self, cfg: VocosConfig) -> None:
        super().__init__()
        self.dwconv = CausalishConv(cfg.dim, cfg.dim, cfg.kernel, cfg.lookahead, groups=cfg.dim)
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.pw1 = nn.Linear(cfg.dim, cfg.intermediate)
        self.pw2 = nn.Linear(cfg.intermediate, cfg.dim)
        self.act = nn.GELU()  # a module, so inference can fuse it into pw1 (vocoder.packed)
        self.gamma = nn.Parameter(torch.full((cfg.dim,), cfg.layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, C]
        return self.mix(x, self.dwconv(x))

    def mix(self, x: torch.Tensor, mixed: torch.Tensor) -> torch.Tensor:
        """The block's output from its input x and the depthwise conv's output for the same frames."""
        h = self.norm(mixed).to(self.pw1.weight.dtype)  # the MLP may run in bf16 (NeuralVocoder)
        return torch.addcmul(x, self.pw2(self.act(self.pw1(h))), self.gamma)  # adds in the residual's dtype


class VocosGenerator(nn.Module):
    """log-mel [B, T, n_mels] -> waveform [B, T * hop]."""

    def __init__(self, cfg: VocosConfig, mel_cfg: MelConfig) -> None:
        super().__init__()
        self.cfg, self.mel_cfg = cfg, mel_cfg
        self.n_fft, self.hop = mel_cfg.n_fft, mel_cfg.hop_length
        self.win_length = mel_cfg.win_length or mel_cfg.n_fft
        self.embed = CausalishConv(mel_cfg.n_mels, cfg.dim, cfg.kernel, cfg.lookahead)
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(cfg) for _ in range(cfg.layers))
        self.final_norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = nn.Linear(cfg.dim, 2 * (self.n_fft // 2 + 1))  # log-magnitude and phase angle
        self.register_buffer("window", torch.hann_window(self.win_length), persistent=False)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Conv1d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)

    @property
    def receptive_field(self) -> tuple[int, int]:
        """(past, future) mel frames that one output frame's spectrum depends on."""
        n_convs = self.cfg.layers + 1
        return n_convs * (self.cfg.kernel - 1 - self.cfg.lookahead), n_convs * self.cfg.lookahead

    def trunk(self, mel: torch.Tensor) -> torch.Tensor:
        """log-mel [B, T, M] -> per-frame log-magnitudes and phase angles [B, T, 2 * (n_fft//2+1)]."""
        # the matrix products may run in bf16 (NeuralVocoder's dtype); the residual stream, norms,
        # depthwise convs and everything after the head stay fp32
        x = self.norm(self.embed(mel.to(self.embed.weight.dtype)).to(self.norm.weight.dtype))
        for block in self.blocks:
            x = block(x)
        return self.head(self.final_norm(x).to(self.head.weight.dtype)).float()

    def spectrum(self, mel: torch.Tensor, trunk_out: torch.Tensor | None = None) -> torch.Tensor:
        """log-mel [B, T, M] (or the trunk's output for it) -> complex STFT [B, n_fft//2+1, T]."""
        out = self.trunk(mel) if trunk_out is None else trunk_out
        log_mag, angle = out.chunk(2, dim=-1)
        mag = torch.clamp(log_mag, max=self.cfg.max_log_mag).exp_()
        # = torch.polar(mag, angle), which is no faster on 2 threads and ~1.7x slower on one
        # (measured, 244 x 513 bins: 1.38 vs 0.80 ms); in-place products: no extra tensors
        # (autograd is fine with them: tested)
        spec = torch.complex(torch.cos(angle).mul_(mag), torch.sin(angle).mul_(mag))  # [B, T, F], time-major
        return spec.transpose(1, 2)  # a view: istft transposes back for free

    def forward(self, mel: torch.Tensor, trunk_out: torch.Tensor | None = None) -> torch.Tensor:
        """log-mel [B, T, M] (and the trunk's output for it, if already computed) -> [B, T * hop]."""
        return self.waveform(self.trunk(mel) if trunk_out is None else trunk_out)

    def waveform(self, trunk_out: torch.Tensor) -> torch.Tensor:
        """The trunk's output for T frames [B, T, 2 * (n_fft//2+1)] -> [B, T * hop]."""
        return istft(
            self.spectrum(trunk_out, trunk_out), self.n_fft, self.hop, self.window, trunk_out.shape[1] * self.hop
        )


VOCODER_DTYPES = ("auto", "float32", "bfloat16")


class NeuralVocoder(Vocoder):
    """A trained `VocosGenerator` behind the `Vocoder` interface; streams exactly.

    `dtype`: the precision of the matrix products (embedding, MLPs, head), ~2x faster in bf16
    where the CPU has native bf16 ("auto" picks it there, flowomni.hardware); norms, depthwise
    convs, the residual stream and the spectrum stay fp32 (element-wise bf16 is no faster on a
    CPU, only less precise). The mean log-mel difference to fp32 output is ~0.03 (tested <0.1);
    benchmarks/vocoder.py measures both (`--neural-dtypes`).

    `freeze`: run the trunk (ConvNeXt + head) as a frozen TorchScript graph: weights and their
    casts become constants and the ops run in TorchScript's C++ interpreter, without Python
    between them. Measured interleaved on 2 threads (bf16): 10 calls of 244 frames 67 -> 57 ms,
    40 streaming-sized calls of 20-120 frames 151 -> 124 ms. It runs with the profiling
    executor off: that one re-specialises the graph for every new length (10-30 ms each time,
    which a stream's first packets would pay). The graph is traced once here and holds for any
    number of frames (tests check it against the eager trunk); if tracing fails, the eager trunk
    runs and a warning says why. (`torch.jit` is deprecated, but present in the pinned torch.)

    `pack` (CPU): the MLPs' and head's weights pre-packed for oneDNN, GELU fused into the first
    MLP product (flowomni.vocoder.packed); `packed` says whether it took."""

    def __init__(
        self,
        generator: VocosGenerator,
        name: str,
        chunk_frames: int = 4,
        dtype: str = "auto",
        freeze: bool = True,
        pack: bool = True,
    ) -> None:
        from flowomni.hardware import native_bf16

        if dtype not in VOCODER_DTYPES:
            raise ValueError(f"unknown vocoder dtype {dtype!r}: use one of {VOCODER_DTYPES}")
        self.generator = generator.eval()
        self.device = next(generator.parameters()).device
        cpu = self.device.type == "cpu"
        bf16 = dtype == "bfloat16" or (dtype == "auto" and native_bf16() and cpu)
        self.dtype = "bfloat16" if bf16 else "float32"
        self._run = copy.deepcopy(self.generator) if bf16 or (pack and cpu) else self.generator
        if bf16:
            for m in (self._run.embed, self._run.head, *(lin for b in self._run.blocks for lin in (b.pw1, b.pw2))):
                m.to(torch.bfloat16)
        self.packed = pack and cpu and _pack_linears(self._run)
        self._trunk = _frozen_trunk(self._run) if freeze else self._run.trunk
        self._freeze = freeze
        self._stream_steps: dict[bool, nn.Module] = {}
        self.name = name
        mel_cfg = generator.mel_cfg
        self.sample_rate, self.hop_length, self.n_mels = mel_cfg.sample_rate, mel_cfg.hop_length, mel_cfg.n_mels
        past, future = generator.receptive_field
        ist_past, ist_future = _istft_frames_reach(generator.n_fft, generator.hop)
        self.left_context = past + ist_past
        self.lookahead_frames = future + ist_future
        self.chunk_frames = chunk_frames
        self.crossfade = 0  # windows agree exactly: nothing to blend

    def stream(
        self, max_chunk_frames: int = MAX_CHUNK_FRAMES, clock: Callable[[], float] = time.perf_counter
    ) -> VocoderStream:
        """A stream that computes every frame's trunk once, keeping each convolution's last
        inputs between calls (neural_stream.py), instead of re-running the receptive field."""
        from flowomni.vocoder.neural_stream import NeuralStream

        return NeuralStream(self, max_chunk_frames, clock)

    def stream_step(self, like: torch.Tensor, final: bool) -> nn.Module:
        """The streams' trunk step (neural_stream.StreamTrunk; `final`: the last one, with the end
        padding), traced and frozen once per vocoder."""
        if final not in self._stream_steps:
            from flowomni.vocoder.neural_stream import StreamTrunk, frozen_step

            step = StreamTrunk(self._run, final)
            self._stream_steps[final] = frozen_step(step, self.n_mels, like) if self._freeze else step
        return self._stream_steps[final]

    def synthesize(self, mel: torch.Tensor, prefix: torch.Tensor | None = None) -> torch.Tensor:
        with torch.jit.optimized_execution(False):  # thread-local: see the class docstring
            out = self._trunk(mel)
        return self._run(mel, out)

    @property
    def frozen(self) -> bool:
        """Whether the trunk runs as a frozen TorchScript graph (False: not asked, or tracing failed)."""
        return isinstance(self._trunk, torch.jit.ScriptModule)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.generator.parameters())


def _pack_linears(generator: VocosGenerator) -> bool:
    """Swap the MLPs', the head's and the embedding's matmuls for oneDNN-packed ones, GELU fused into pw1
    (flowomni.vocoder.packed); False, and nothing changed, where packing is unavailable."""
    from flowomni.vocoder.packed import pack_linear

    swaps = [
        (generator, "head", pack_linear(generator.head)),
        (generator.embed, "packed", pack_linear(generator.embed.as_linear())),
    ]
    for block in generator.blocks:
        swaps += [(block, "pw1", pack_linear(block.pw1, "gelu")), (block, "pw2", pack_linear(block.pw2))]
    if any(new is None for _, _, new in swaps):
        return False
    for owner, attr, new in swaps:
        setattr(owner, attr, new)
    for block in generator.blocks:
        block.act = nn.Identity()  # pw1 applies it
    return True


class _Trunk(nn.Module):
    def __init__(self, generator: VocosGenerator) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.generator.trunk(mel)


def _frozen_trunk(generator: VocosGenerator):
    """`generator.trunk` as a frozen TorchScript graph, or the eager method if that fails."""
    example = torch.zeros(1, 64, generator.mel_cfg.n_mels, device=next(generator.parameters()).device)
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation notices
            return torch.jit.freeze(torch.jit.trace(_Trunk(generator).eval(), example))
    except Exception as e:  # noqa: BLE001 - any failure here only costs speed
        log.warning("vocoder: could not freeze the trunk (%s: %s); running it eagerly", type(e).__name__, e)
        return generator.trunk
