"""Acetate: transparent image layers with LayerDiffusion latent transparency."""

__version__ = "0.1.0"
