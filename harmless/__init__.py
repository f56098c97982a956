"""harmless: harmless transfer learning for item embeddings, as a PyTorch plug-in."""

__version__ = "0.1.0"
