"""The geometry and imaging layer: one implementation of each mesh and image basic.

``topology`` (edge table, face pairs, fans, numba kernels), ``weld``, ``components``,
``closed`` (watertight, manifold, per-part), ``normals`` (face and vertex), ``tangents`` (the
normal-map frame), ``sampling`` (surface points), ``closest`` (closest points and ray scenes),
``meshopt`` (meshoptimizer's collapse), ``colour`` (sRGB), ``texture_sampling``, ``dilation``,
``raster`` (exact UV coverage), ``render`` (headless OpenGL), ``derived`` (derived data cached
on a mesh by content). Imports only ``core``.
"""
