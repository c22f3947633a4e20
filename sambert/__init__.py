"""sambert: Mandarin Sambert-HiFiGAN text-to-speech in pure PyTorch."""

__all__ = ["Engine"]


def __getattr__(name):
    # Importing the engine pulls in torch; keep `import sambert` (and the frontend CLI) light.
    if name == "Engine":
        from sambert.engine import Engine

        return Engine
    raise AttributeError(name)
