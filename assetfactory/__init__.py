"""The asset factory: e-commerce catalogs in, production 3D assets out."""

__version__ = "0.1.0"
