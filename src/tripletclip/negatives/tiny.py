"""Tiny random models saved in the layout of real ones, for offline tests, benchmarks and smoke runs.

Each builder trains a small tokenizer on the given texts with the ``tokenizers`` library, builds the model
from a config (no download), and saves both with ``save_pretrained``, so the backends load them exactly as
they load a real model folder: a causal LM (LLaMA layout) for ``llm``/``rewrite``, a Stable-Diffusion-layout
pipeline (UNet, VAE, CLIP text encoder, Euler scheduler with SDXL-Turbo's trailing timesteps) for ``images``,
and a ViLT yes/no VQA model for ``faithfulness``. Their outputs are meaningless; their code paths are real.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence


def build_tiny_causal_lm(out: str | Path, corpus: Sequence[str], seed: int = 0) -> Path:
    """A 2-layer LLaMA (hidden 32) with a byte-level BPE tokenizer trained on ``corpus``."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = Path(out)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(list(corpus) * 3, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(out)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=fast.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                      pad_token_id=0, bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(cfg).save_pretrained(out)
    return out


def build_tiny_t2i(out: str | Path, corpus: Sequence[str], seed: int = 0) -> Path:
    """A tiny StableDiffusionPipeline (latent 4 channels, VAE factor 2) with a word-level tokenizer."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTextConfig, CLIPTextModel, PreTrainedTokenizerFast

    out = Path(out)
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(list(corpus), trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "[BOS]", "[EOS]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="[BOS]",
                                   eos_token="[EOS]", model_max_length=16)
    torch.manual_seed(seed)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=fast.vocab_size, hidden_size=32, intermediate_size=37,
                                        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=16,
                                        projection_dim=32, pad_token_id=0, bos_token_id=2, eos_token_id=3))
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
                                norm_num_groups=32, attention_head_dim=(2, 4))
    vae = AutoencoderKL(block_out_channels=(32, 64), in_channels=3, out_channels=3, latent_channels=4,
                        norm_num_groups=32, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32)
    sched = EulerDiscreteScheduler(timestep_spacing="trailing", steps_offset=1)  # SDXL-Turbo's scheduler setting
    StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=fast, unet=unet, scheduler=sched, safety_checker=None,
                            feature_extractor=None, requires_safety_checker=False).save_pretrained(out)
    return out


def build_tiny_vqa(out: str | Path, corpus: Sequence[str], seed: int = 0) -> Path:
    """A 1-layer ViLT with a yes/no answer head and a WordPiece vocabulary of the corpus words."""
    import torch
    from transformers import BertTokenizerFast, ViltConfig, ViltForQuestionAnswering, ViltImageProcessor, ViltProcessor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    words = sorted({w.strip("?.,").lower() for c in corpus for w in c.split()} - {""} |
                   {"is", "are", "there", "the", "in", "image"})
    (out / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "?", "."] + words) + "\n")
    tok = BertTokenizerFast(vocab_file=str(out / "vocab.txt"), model_max_length=40)
    ViltProcessor(image_processor=ViltImageProcessor(size={"shortest_edge": 32}, size_divisor=16),
                  tokenizer=tok).save_pretrained(out)
    torch.manual_seed(seed)
    ViltForQuestionAnswering(ViltConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=37, image_size=32, patch_size=16,
                                        max_position_embeddings=40, num_labels=2, id2label={0: "no", 1: "yes"},
                                        label2id={"no": 0, "yes": 1}, max_image_length=-1)).save_pretrained(out)
    return out
