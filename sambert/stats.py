"""Per-request figures: time to first audio, real-time factor, peak memory.

Peak memory is CUDA's `max_memory_allocated` when a model runs on the GPU, else the process's peak
resident set size (Linux VmHWM, reset at the start of each request through /proc/self/clear_refs, so
it covers torch's CPU allocations too). Both are process-wide: with concurrent requests a request's
peak includes the others'.
"""

import resource
from dataclasses import asdict, dataclass, field

import torch


@dataclass
class Stats:
    profile: str
    device: str  # e.g. "acoustic cuda float16, vocoder cpu float32"
    chars: int
    sentences: int = 0
    audio_seconds: float = 0.0
    time_to_first_audio: float | None = None  # seconds of work before the first chunk was ready
    compute_seconds: float = 0.0  # seconds of work, not counting time the consumer held the stream
    peak_memory_bytes: int = 0
    peak_memory_kind: str = ""  # "cuda max_memory_allocated" | "peak RSS"
    fallbacks: list = field(default_factory=list)  # profile downgrades after CUDA out-of-memory
    completed: bool = False  # False when the consumer stopped early or an error ended it

    @property
    def real_time_factor(self):
        return self.compute_seconds / self.audio_seconds if self.audio_seconds else None

    def as_dict(self):
        return {**asdict(self), "real_time_factor": self.real_time_factor}

    def summary(self):
        ttfa = f"{self.time_to_first_audio * 1000:.0f} ms" if self.time_to_first_audio is not None else "-"
        rtf = f"{self.real_time_factor:.3f}" if self.real_time_factor is not None else "-"
        text = (
            f"time to first audio {ttfa}, RTF {rtf}, audio {self.audio_seconds:.2f} s, "
            f"peak memory {self.peak_memory_bytes / 2**20:.0f} MiB ({self.peak_memory_kind}), "
            f"profile {self.profile} [{self.device}]"
        )
        if self.fallbacks:
            text += "; " + "; ".join(self.fallbacks)
        return text


class PeakMemory:
    """Start a measurement with reset(); read the peak since then with peak()."""

    def __init__(self, cuda_devices):
        self.cuda = sorted({torch.device(d) for d in cuda_devices if torch.device(d).type == "cuda"}, key=str)
        self.kind = "cuda max_memory_allocated" if self.cuda else "peak RSS"

    def reset(self):
        if self.cuda:
            for device in self.cuda:
                torch.cuda.reset_peak_memory_stats(device)
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        except OSError:
            pass  # no procfs: peak() falls back to the lifetime peak

    def peak(self):
        if self.cuda:
            return sum(torch.cuda.max_memory_allocated(device) for device in self.cuda)
        return peak_rss()


def peak_rss():
    """Peak resident set size of this process in bytes since the last reset."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
