"""Text-to-image backends for negative images: ``diffusers`` (default SDXL-Turbo) and ``world`` (offline).

TripletCLIP renders each negative caption alone with SDXL-Turbo (arXiv 2411.02545, Sec. 3.2: no editing of the
positive image), 512 px, a few steps, no classifier-free guidance (guidance 0 is what the distilled model is
trained for). Every setting is configurable. Each image gets its own torch.Generator seeded from the row, so
an image does not depend on which other prompts share its batch; the seed is recorded with the sample.
``world`` renders captions of the embedded compositional world with its own numpy renderer (no model).
"""
from __future__ import annotations

import inspect
import warnings
from typing import Any, Optional, Sequence

from PIL import Image

from tripletclip.errors import InputError, UnavailableError
from tripletclip.negatives.base import T2I_BACKENDS, local_device

SDXL_TURBO = "stabilityai/sdxl-turbo"


@T2I_BACKENDS.register("diffusers")
class DiffusersT2I:
    """Any diffusers text-to-image pipeline (AutoPipelineForText2Image) from a local folder or cached hub id."""

    def __init__(self, model: str = SDXL_TURBO, steps: int = 1, guidance: float = 0.0, size: int = 512,
                 height: Optional[int] = None, width: Optional[int] = None, device: str = "auto", dtype: str = "auto",
                 variant: Optional[str] = None, negative_prompt: Optional[str] = None, cpu_offload: bool = False) -> None:
        import torch
        from diffusers import AutoPipelineForText2Image

        if steps < 1:
            raise InputError(f"diffusers: steps must be >= 1, got {steps}")
        self.name, self.model_id = "diffusers", model
        device = local_device(device)
        if dtype == "auto":
            dtype = "float16" if device.startswith("cuda") else "float32"
        self.device, self.dtype = device, dtype
        if variant is None and model == SDXL_TURBO and dtype == "float16":
            variant = "fp16"
        try:
            with warnings.catch_warnings():  # newer diffusers rename torch_dtype to dtype; older ones know only this
                warnings.simplefilter("ignore", FutureWarning)
                self.pipe = AutoPipelineForText2Image.from_pretrained(model, torch_dtype=getattr(torch, dtype),
                                                                      variant=variant)
        except (OSError, ValueError, EnvironmentError) as e:
            raise UnavailableError(f"diffusers model '{model}': cannot load ({str(e).splitlines()[0]}); give a local "
                                   "pipeline folder or a cached hub id") from None
        if cpu_offload and device.startswith("cuda"):
            self.pipe.enable_model_cpu_offload()
        else:
            self.pipe.to(device)
        self.pipe.set_progress_bar_config(disable=True)
        self.steps, self.guidance = steps, guidance
        self.height, self.width = height or size, width or size
        self.negative_prompt = negative_prompt

    def info(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model_id, "pipeline": type(self.pipe).__name__,
                "steps": self.steps, "guidance": self.guidance, "height": self.height, "width": self.width,
                "dtype": self.dtype, "negative_prompt": self.negative_prompt}

    def render(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Image.Image]:
        import torch

        gen_device = "cpu" if self.device == "cpu" else self.device
        generators = [torch.Generator(device=gen_device).manual_seed(int(s)) for s in seeds]
        kwargs: dict[str, Any] = {}
        if self.negative_prompt and self.guidance > 1:
            kwargs["negative_prompt"] = [self.negative_prompt] * len(prompts)
        with torch.inference_mode():
            out = self.pipe(prompt=list(prompts), num_inference_steps=self.steps, guidance_scale=self.guidance,
                            height=self.height, width=self.width, generator=generators, output_type="pil", **kwargs)
        return list(out.images)


@T2I_BACKENDS.register("world")
class WorldT2I:
    """The embedded world's caption renderer (``tripletclip.world.render_caption``): offline, no model."""

    def __init__(self, size: int = 64) -> None:
        try:
            from tripletclip.world import render_caption
        except ImportError as e:
            raise RuntimeError(f"t2i backend 'world': tripletclip.world.render_caption is unavailable ({e})") from None
        self.name, self.model_id, self.size = "world", "tripletclip.world", size
        self._render = render_caption
        params = inspect.signature(render_caption).parameters
        self._kw = {k: v for k, v in (("size", size), ("image_size", size)) if k in params}
        self._seed_kw = "seed" if "seed" in params else ("rng" if "rng" in params else None)

    def info(self) -> dict[str, Any]:
        return {"backend": self.name, "size": self.size}

    def render(self, prompts: Sequence[str], seeds: Sequence[int]) -> list[Optional[Image.Image]]:
        out: list[Optional[Image.Image]] = []
        for p, s in zip(prompts, seeds):
            kw = dict(self._kw)
            if self._seed_kw == "seed":
                kw["seed"] = int(s)
            elif self._seed_kw == "rng":
                import numpy as np

                kw["rng"] = np.random.default_rng(int(s))
            img = self._render(p, **kw)  # None: the caption is outside the world's grammar
            out.append(img if img is None or isinstance(img, Image.Image) else Image.fromarray(img))
        return out


def build_t2i(backend: str, **options: Any) -> Any:
    """The registered text-to-image backend with its options."""
    return T2I_BACKENDS.get(backend)(**options)
