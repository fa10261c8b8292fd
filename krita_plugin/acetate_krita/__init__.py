"""Acetate for Krita: generate transparent layers with LayerDiffusion from a docker.

Inside Krita this registers the extension and the "Acetate" docker. Elsewhere (the unit
tests) importing the package does nothing, so its Qt-free modules can be used directly.
"""

__version__ = "0.1.0"

try:
    import krita  # noqa: F401  (only present inside Krita)
except ImportError:
    pass
else:
    from .extension import register

    register()
