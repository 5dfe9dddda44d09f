"""Algorithms the stages compose: each readable and testable alone.

Repair (``repair``, ``orientation``, ``holes``, ``placement``), ``visibility``, ``parts``,
decimation (``decimate``, ``qem_placement``, ``part_budgets``, ``edge_ops``,
``surface_error``, ``collision``, ``lods``), UV (``unwrap``, ``chart_packing``,
``uv_quality``), baking (``normal_bake``, ``ambient_occlusion``), texturing (``projection``,
``inpaint``, ``shading``, ``materials``), photos (``masking``, ``photos``) and files
(``gltf``, ``usdz``, ``poster``). Imports only ``core`` and ``geometry``.
"""
