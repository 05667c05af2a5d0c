"""gpu-inference: the pure core (config, catalog, sizing, pricing, renderers, preview, CLI).

Nothing in this package imports Pulumi except ``gpu_inference.preview_runner``, which runs the real
Pulumi program under recording mocks.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
