"""Tiny, randomly initialised models of the real architectures, saved in the real layouts.

The learned backends' tests load these exactly as they would load published weights (same
folder layout, same loaders, no network) and run the whole inference path on the CPU in a
second or two. The shapes they make are noise; the tests check the plumbing, not the geometry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def marching_cubes_table() -> tuple[np.ndarray, np.ndarray]:
    """The (256, 5, 3) case table and (256, 5) mask that diffusers' ``MeshDecoder`` reads.

    Published Shap-E renderer weights carry this table as buffers; a randomly initialised
    renderer has zeros (no triangles at all). It is derived here from scikit-image's classic
    (Lorensen) marching cubes run on each of the 256 sign patterns of one cube, mapped to the
    corner bits (x + 2y + 4z) and edge numbering of diffusers' ``_create_flat_edge_indices``.
    """
    from skimage import measure

    cases = np.zeros((256, 5, 3), np.int64)
    masks = np.zeros((256, 5), bool)
    for code in range(1, 255):
        field = np.empty((2, 2, 2))
        for x in range(2):
            for y in range(2):
                for z in range(2):
                    field[x, y, z] = 1.0 if code >> (x + 2 * y + 4 * z) & 1 else -1.0
        verts, faces, _, _ = measure.marching_cubes(field, 0.0, method="lorensen")
        for k, tri in enumerate(faces):
            cases[code, k] = [_edge(verts[i]) for i in tri]
            masks[code, k] = True
    return cases, masks


def _edge(p: np.ndarray) -> int:
    """diffusers' local edge number of a vertex at an edge midpoint of the unit cube."""
    axis = int(np.argmin(np.abs(p - 0.5)))
    a, b = (int(p[i] > 0.5) for i in range(3) if i != axis)
    return 4 * axis + a + 2 * b


def make_tiny_shap_e(root: Path, seed: int = 0, variant: str | None = None) -> Path:
    """A ``ShapEImg2ImgPipeline`` the way diffusers' own fast tests build it, saved."""
    import torch
    from diffusers import HeunDiscreteScheduler, PriorTransformer, ShapEImg2ImgPipeline
    from diffusers.pipelines.shap_e import ShapERenderer
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(seed)
    width = 32
    encoder = CLIPVisionModel(CLIPVisionConfig(
        hidden_size=width, image_size=32, projection_dim=width, intermediate_size=37,
        num_attention_heads=4, num_channels=3, num_hidden_layers=2, patch_size=8))
    processor = CLIPImageProcessor(
        crop_size=32, do_center_crop=True, do_normalize=True, do_resize=True, resample=3,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711], size=32)
    hidden = 8  # renderer MLP width; the prior's latent has one row per MLP weight row
    prior = PriorTransformer(
        num_attention_heads=2, attention_head_dim=16, embedding_dim=width, num_embeddings=4 * hidden,
        embedding_proj_dim=width, time_embed_dim=4 * width, num_layers=1,
        clip_embed_dim=2 * width, additional_embeddings=0, time_embed_act_fn="gelu",
        norm_in_type="layer", embedding_proj_norm_type="layer", encoder_hid_proj_type=None,
        added_emb_type=None)
    renderer = ShapERenderer(
        param_shapes=((hidden, 93), (hidden, 8), (hidden, 8), (hidden, 8)), d_latent=width,
        d_hidden=hidden, n_output=12, background=(0.1, 0.1, 0.1))
    cases, masks = marching_cubes_table()
    renderer.mesh_decoder.cases.copy_(torch.from_numpy(cases))
    renderer.mesh_decoder.masks.copy_(torch.from_numpy(masks))
    scheduler = HeunDiscreteScheduler(
        beta_schedule="exp", num_train_timesteps=1024, prediction_type="sample",
        use_karras_sigmas=True, clip_sample=True, clip_sample_range=1.0)
    pipe = ShapEImg2ImgPipeline(prior=prior, image_encoder=encoder, image_processor=processor,
                                scheduler=scheduler, shap_e_renderer=renderer)
    if variant == "fp16":
        pipe = pipe.to(torch.float16)
    pipe.save_pretrained(root, safe_serialization=True, variant=variant)
    return root


#: A Hunyuan3D-2 shape config of the published form (same targets and keys, tiny sizes).
TINY_HUNYUAN3D_CONFIG = {
    "model": {"target": "hy3dgen.shapegen.models.Hunyuan3DDiT", "params": {
        "in_channels": 8, "context_in_dim": 32, "hidden_size": 32, "mlp_ratio": 2.0,
        "num_heads": 2, "depth": 1, "depth_single_blocks": 1, "axes_dim": [16],
        "theta": 10000, "qkv_bias": True, "guidance_embed": False}},
    "vae": {"target": "hy3dgen.shapegen.models.ShapeVAE", "params": {
        "num_latents": 16, "embed_dim": 8, "num_freqs": 4, "include_pi": False, "heads": 2,
        "width": 32, "num_decoder_layers": 1, "qkv_bias": False, "qk_norm": True,
        "scale_factor": 1.0}},
    "conditioner": {"target": "hy3dgen.shapegen.models.SingleImageEncoder", "params": {
        "main_image_encoder": {"type": "DinoImageEncoder", "kwargs": {
            "config": {
                "attention_probs_dropout_prob": 0.0, "drop_path_rate": 0.0,
                "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "hidden_size": 32,
                "image_size": 56, "initializer_range": 0.02, "layer_norm_eps": 1e-6,
                "layerscale_value": 1.0, "mlp_ratio": 2, "model_type": "dinov2",
                "num_attention_heads": 2, "num_channels": 3, "num_hidden_layers": 1,
                "patch_size": 14, "qkv_bias": True, "use_swiglu_ffn": False},
            "image_size": 56, "use_cls_token": True}}}},
    "scheduler": {"target": "hy3dgen.shapegen.schedulers.FlowMatchEulerDiscreteScheduler",
                  "params": {"num_train_timesteps": 1000}},
    "image_processor": {"target": "hy3dgen.shapegen.preprocessors.ImageProcessorV2",
                        "params": {"size": 64, "border_ratio": 0.15}},
}


def make_tiny_hunyuan3d(root: Path, subfolder: str = "hunyuan3d-dit-v2-mini", seed: int = 0,
                        config: dict | None = None) -> Path:
    """DiT, ShapeVAE and DINOv2 conditioner built from the config, saved as one safetensors
    file with ``model.``/``vae.``/``conditioner.`` prefixes in fp16, as published."""
    import torch
    import yaml
    from safetensors.torch import save_file

    from assetfactory.models.hunyuan3d import import_pipeline

    import_pipeline()
    from hy3dgen.shapegen.pipelines import instantiate_from_config

    config = config or TINY_HUNYUAN3D_CONFIG
    torch.manual_seed(seed)
    state = {}
    for part in ("model", "vae", "conditioner"):
        module = instantiate_from_config(config[part])
        for name, tensor in module.state_dict().items():
            state[f"{part}.{name}"] = tensor.detach().to(torch.float16).contiguous().clone()
    folder = root / subfolder
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "model.fp16.safetensors"))
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return root


def make_tiny_segformer(root: Path, seed: int = 0) -> Path:
    """A two-label (background, object) SegFormer with its image processor, saved."""
    import torch
    from transformers import (
        SegformerConfig,
        SegformerForSemanticSegmentation,
        SegformerImageProcessor,
    )

    torch.manual_seed(seed)
    config = SegformerConfig(
        num_channels=3, num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1],
        hidden_sizes=[8, 16], patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2],
        mlp_ratios=[2, 2], decoder_hidden_size=16, num_labels=2,
        id2label={0: "background", 1: "object"}, label2id={"background": 0, "object": 1})
    model = SegformerForSemanticSegmentation(config)
    model.save_pretrained(root, safe_serialization=True)
    SegformerImageProcessor(size={"height": 64, "width": 64}).save_pretrained(root)
    return root


# --- a product photo and a fast recipe for the whole factory --------------------------------

def product_state(root: Path, sku: str = "lamp-1", backend: str = "silhouette"):
    """An asset state for one catalog row with one real PNG photo (a two-tone lamp on white)."""
    from PIL import Image, ImageDraw

    from assetfactory.core.types import AssetState, ImageSpec, SkuSpec

    catalog = root / "catalog"
    catalog.mkdir(parents=True, exist_ok=True)
    im = Image.new("RGB", (160, 160), "white")
    draw = ImageDraw.Draw(im)
    draw.rectangle([60, 30, 100, 120], fill=(200, 60, 40))
    draw.ellipse([40, 110, 120, 140], fill=(40, 60, 160))
    im.save(catalog / "front.png")
    spec = SkuSpec(sku=sku, images=(ImageSpec("front.png", "front"),), width_mm=200.0,
                   height_mm=300.0, depth_mm=200.0, catalog_root=str(catalog))
    return AssetState(sku=sku, spec=spec, store_uri=str(root / "store"), profile="web",
                      backend=backend)


def fast_overrides(backend_options: dict) -> dict:
    """The web profile cut down to seconds: small crops, few views, small maps."""
    return {
        "ingest": {"size": 64},
        "generate": {"backend_options": backend_options},
        "cleanup": {"visibility_views": 16, "visibility_resolution": 64},
        "simplify": {"target_tris": 1500},
        "uv": {"resolution": 64},
        "bake": {"size": 64},
        "texture": {"size": 64},
        "export": {"texture_size": 64, "poster_size": 64},
    }
