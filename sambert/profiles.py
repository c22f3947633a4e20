"""Hardware profiles: where each model runs, in which dtype, and how big the streaming blocks are.

One YAML file per tier in `configs/`. `choose_profile()` picks one for this machine from the free CUDA
memory (or the CPU when there is no CUDA device), applies overrides from the caller and from
`SAMBERT_<KEY>` environment variables, and says why it chose what it chose.
"""

import dataclasses
import functools
import logging
import os
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
GIB = 1024**3


class ProfileError(ValueError):
    """An unknown profile, an unknown key or a value of the wrong kind."""


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    description: str
    min_free_gb: float | None  # free CUDA memory this tier needs to be chosen automatically
    acoustic_device: str
    vocoder_device: str
    dtype: str  # float32 | float16 (float16 means autocast on CUDA; the CPU always runs float32)
    # The vocoder on the CPU: float32, bfloat16 (autocast) or auto = bfloat16 where the CPU computes it
    # natively (avx512_bf16 / AMX, as oneDNN reports), where it roughly halves the vocoder's time.
    cpu_vocoder_dtype: str
    mel_block_frames: int
    vocoder_chunk_frames: int
    vocoder_first_chunk_frames: int  # a request's first chunks start this small and double (sooner audio)
    vocoder_context_frames: int | str  # "auto": the vocoder's own receptive field
    max_concurrent_requests: int
    max_text_length: int
    fallback: str | None  # the next smaller profile, used after a CUDA out-of-memory
    reason: str = ""  # why this profile was chosen, for logs and the UI

    def with_reason(self, reason):
        return dataclasses.replace(self, reason=reason)


# Keys a user may override (everything but the name and the bookkeeping ones).
_FIXED = {"name", "reason"}
KEYS = [f.name for f in dataclasses.fields(Profile) if f.name not in _FIXED]
_DTYPES = ("float32", "float16")
_CPU_VOCODER_DTYPES = ("auto", "float32", "bfloat16")


def available():
    """Names of the profiles shipped in configs/, largest GPU tier first, cpu last."""
    profiles = [_read(path) for path in sorted(CONFIG_DIR.glob("*.yaml"))]
    profiles.sort(key=lambda p: -(p.min_free_gb if p.min_free_gb is not None else -1))
    return [p.name for p in profiles]


def load_profile(name, overrides=None):
    """The profile `name` with `overrides` ({key: value}, values may be strings as from the environment)."""
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise ProfileError(f"unknown profile {name!r}; valid profiles: {', '.join(available())}")
    return apply_overrides(_read(path), overrides or {})


def apply_overrides(profile, overrides):
    fields = {f.name: f for f in dataclasses.fields(Profile)}
    changes = {}
    for key, value in overrides.items():
        key = key.lower()
        if key not in KEYS:
            raise ProfileError(f"unknown profile key {key!r}; valid keys: {', '.join(KEYS)}")
        changes[key] = _coerce(key, value, fields[key].type)
    profile = dataclasses.replace(profile, **changes)
    _check(profile, source=f"profile {profile.name!r}")
    return profile


def env_overrides(environ=None):
    """{key: value} from `SAMBERT_<KEY>` variables (e.g. SAMBERT_MEL_BLOCK_FRAMES=12)."""
    environ = os.environ if environ is None else environ
    return {key: environ[f"SAMBERT_{key.upper()}"] for key in KEYS if f"SAMBERT_{key.upper()}" in environ}


def auto_profile_name():
    """(name, reason) for this machine, from the free memory of the current CUDA device."""
    import torch

    if not torch.cuda.is_available():
        return "cpu", "no CUDA device"
    free, total = torch.cuda.mem_get_info()
    gpu = torch.cuda.get_device_name()
    tiers = [_read(CONFIG_DIR / f"{name}.yaml") for name in available()]
    for tier in tiers:
        if tier.min_free_gb is not None and free >= tier.min_free_gb * GIB:
            return tier.name, (
                f"{gpu}: {free / GIB:.1f} GiB free of {total / GIB:.1f} GiB "
                f"(>= {tier.min_free_gb} GiB needed for {tier.name})"
            )
    return "cpu", f"{gpu}: only {free / GIB:.1f} GiB free of {total / GIB:.1f} GiB, too little for any GPU profile"


def choose_profile(name=None, overrides=None, environ=None):
    """The profile to run with, and why: argument > SAMBERT_PROFILE > automatic; then per-key overrides
    (environment first, the `overrides` argument on top)."""
    environ = os.environ if environ is None else environ
    if name:
        reason = "requested"
    elif environ.get("SAMBERT_PROFILE"):
        name, reason = environ["SAMBERT_PROFILE"], "SAMBERT_PROFILE"
    else:
        name, reason = auto_profile_name()
        reason = f"auto: {reason}"
    merged = {**env_overrides(environ), **(overrides or {})}
    profile = load_profile(name, merged)
    if merged:
        reason += "; overrides: " + ", ".join(f"{k}={v}" for k, v in merged.items())
    profile = profile.with_reason(reason)
    log.info("profile %s (%s)", profile.name, profile.reason)
    return profile


def cpu_vocoder_dtype(profile, vocoder=None):
    """The dtype `vocoder` runs in on the CPU under `profile`: the setting, with auto resolved here: bf16
    where the CPU has native bf16 and the vocoder's family gains from it (its `bf16_on_cpu`)."""
    if profile.cpu_vocoder_dtype != "auto":
        return profile.cpu_vocoder_dtype
    return "bfloat16" if cpu_has_native_bf16() and getattr(vocoder, "bf16_on_cpu", True) else "float32"


@functools.cache  # the hardware does not change; asked on every vocoder chunk
def cpu_has_native_bf16():
    """Whether oneDNN has bf16 kernels for this CPU (avx512_bf16 or AMX); without them bf16 is emulated
    and slower than float32."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _read(path):
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ProfileError(f"{path}: not valid YAML: {err}") from None
    fields = {f.name for f in dataclasses.fields(Profile)} - {"reason"}
    missing, unknown = fields - set(data or {}), set(data or {}) - fields
    if missing or unknown:
        raise ProfileError(f"{path}: missing keys {sorted(missing)}, unknown keys {sorted(unknown)}")
    profile = Profile(**data)
    _check(profile, source=str(path))
    return profile


def _coerce(key, value, type_):
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.lower() in ("null", "none", ""):
        return None
    if key == "vocoder_context_frames" and text == "auto":
        return text
    if "int" in str(type_):
        try:
            return int(text)
        except ValueError:
            raise ProfileError(f"profile key {key!r} needs an integer, got {value!r}") from None
    if "float" in str(type_):
        try:
            return float(text)
        except ValueError:
            raise ProfileError(f"profile key {key!r} needs a number, got {value!r}") from None
    return text


def _check(profile, source):
    def bad(what):
        raise ProfileError(f"{source}: {what}")

    for key in ("acoustic_device", "vocoder_device"):
        device = getattr(profile, key)
        if not isinstance(device, str) or device.split(":")[0] not in ("cpu", "cuda"):
            bad(f"{key} must be cpu, cuda or cuda:N, got {device!r}")
    if profile.dtype not in _DTYPES:
        bad(f"dtype must be one of {', '.join(_DTYPES)}, got {profile.dtype!r}")
    if profile.cpu_vocoder_dtype not in _CPU_VOCODER_DTYPES:
        bad(f"cpu_vocoder_dtype must be one of {', '.join(_CPU_VOCODER_DTYPES)}, got {profile.cpu_vocoder_dtype!r}")
    for key in ("mel_block_frames", "vocoder_chunk_frames", "vocoder_first_chunk_frames", "max_concurrent_requests",
                "max_text_length"):
        value = getattr(profile, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            bad(f"{key} must be a positive integer, got {value!r}")
    context = profile.vocoder_context_frames
    if context != "auto" and (not isinstance(context, int) or isinstance(context, bool) or context < 0):
        bad(f"vocoder_context_frames must be 'auto' or an integer >= 0, got {context!r}")
    if profile.fallback is not None and not (CONFIG_DIR / f"{profile.fallback}.yaml").is_file():
        bad(f"fallback {profile.fallback!r} is not a profile")
