"""CLIC: concatenated image pairs, word swaps across their captions, several positives (Peleg, Singh and
Hein, NeurIPS 2025, arXiv 2505.24424, Sec. 3, Eqs. 4-7; docs/objectives.md).

Batch transform (:class:`ClicPairs`, applied by the trainer before the forward): samples 2j and 2j+1 of the
local batch become one example: their images side by side, resized back to the model's input size; positives
p_1 = c_a + c_b and p_2 = c_b + c_a (the captions concatenated in both orders, CLIC's "shuffled" positive);
one hard negative n made from p_1 by swapping one word of c_a with one word of c_b (a pair of different
words, drawn at random). The transform works on token ids: CLIP's BPE tokenises word by word, so
concatenating two captions' tokens equals tokenising the concatenated text.

Loss, with P positives per image (p_m, m = 1..P) and s = exp(logit_scale):
    L_cont = 1/P sum_m 1/2 [CE(s I p_m^T, i) + CE(s p_m I^T, i)]      (positives of set m as the only columns)
    L_sneg = 1/P sum_m mean_i CE(s [<I_i, p_{m,i}>, <I_i, n_i>], 0)
    L_uni  = mean_i ||p_{1,i} - p_{2,i}||^2
    L = w_cont L_cont + w_sneg L_sneg + w_uni L_uni                      (Eq. 7; weights 1 here)
following the official ``CLIPLoss._compute_loss_with_hard_negatives`` (hard_negatives_separate=True).
Text tower only, as the paper fine-tunes it: ``model.lock_image=true``.

Differences from the paper: CLIC's additional positives p_3, p_4 come from further captions of the same images
(re-captioned data) and its swaps pick words of the same kind; our data have one caption per image, so P = 2,
and the swapped words are drawn among all pairs of different words (which can give ungrammatical negatives).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from tripletclip.edit_types import EDIT_TYPE_INDEX
from tripletclip.errors import InputError
from tripletclip.losses.base import LOSSES, ContrastiveLoss, LossInputs
from tripletclip.losses.degla import grounded_contrast
from tripletclip.losses.functional import nce


class ClicPairs:
    """The CLIC batch transform on the data contract (B pairs in, B/2 concatenated examples out)."""

    def __init__(self, tokenizer: Any) -> None:
        decoder = getattr(tokenizer, "decoder", None)
        if not isinstance(decoder, dict) or not hasattr(tokenizer, "sot_token_id"):
            raise InputError(f"loss 'clic' concatenates captions at the token level and needs open_clip's CLIP "
                             f"tokenizer (word-final '</w>' tokens); this model's is {type(tokenizer).__name__}")
        self.sot, self.eot = int(tokenizer.sot_token_id), int(tokenizer.eot_token_id)
        self.word_end = {i for i, tok in decoder.items() if tok.endswith("</w>")}

    def words(self, ids: torch.Tensor) -> list[list[int]]:
        """Content tokens between start and end-of-text, grouped into words."""
        content = ids.tolist()
        end = content.index(self.eot) if self.eot in content else len(content)
        out, cur = [], []
        for tok in content[1:end]:
            cur.append(tok)
            if tok in self.word_end:
                out.append(cur)
                cur = []
        return out + ([cur] if cur else [])

    def encode(self, words: list[list[int]], length: int) -> torch.Tensor:
        ids = [self.sot] + [t for w in words for t in w]
        ids = ids[: length - 1] + [self.eot]  # truncate as the tokenizer does: the end token always stays
        return torch.tensor(ids + [0] * (length - len(ids)), dtype=torch.long)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        image, text = batch["image"], batch["text"]
        b, length = text.shape
        if b % 2:
            raise InputError(f"loss 'clic' pairs the samples of a batch: train.batch_size must be even, got {b}")
        # deterministic in the data (so a resumed run draws the same swaps) without a global RNG
        seed = int((text.long() * torch.arange(1, length + 1)).sum()) % (2**31 - 1)
        gen = torch.Generator().manual_seed(seed)
        h, w = image.shape[-2:]
        pairs = torch.cat([image[0::2], image[1::2]], dim=-1)  # side by side: [B/2, 3, H, 2W]
        images = F.interpolate(pairs, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        p1, p2, neg, valid = [], [], [], []
        for j in range(b // 2):
            wa, wb = self.words(text[2 * j]), self.words(text[2 * j + 1])
            p1.append(self.encode(wa + wb, length))
            p2.append(self.encode(wb + wa, length))
            options = [(x, y) for x in range(len(wa)) for y in range(len(wb)) if wa[x] != wb[y]]
            if options:
                x, y = options[int(torch.randint(len(options), (1,), generator=gen))]
                sa, sb = list(wa), list(wb)
                sa[x], sb[y] = wb[y], wa[x]
                neg.append(self.encode(sa + sb, length))
            else:  # identical captions: no swap changes anything
                neg.append(torch.zeros(length, dtype=torch.long))
            valid.append(bool(options))
        half = b // 2
        out = dict(batch)
        out.update(image=images, text=torch.stack(p1), pos_text=torch.stack(p2)[:, None],
                   neg_text=torch.stack(neg)[:, None], neg_text_mask=torch.tensor(valid)[:, None],
                   neg_text_type=torch.full((half, 1), EDIT_TYPE_INDEX["unknown"], dtype=torch.long),
                   neg_image=batch["neg_image"][0::2], neg_image_mask=torch.zeros_like(batch["neg_image_mask"][0::2]))
        if "key" in batch:
            out["key"] = [f"{ka}+{kb}" for ka, kb in zip(batch["key"][0::2], batch["key"][1::2])]
        return out


@LOSSES.register("clic")
class ClicLoss(ContrastiveLoss):
    """cont_weight * L_cont + sneg_weight * L_sneg + uni_weight * L_uni; terms "cont", "sneg", "uni"."""

    name = "clic"
    needs_neg_text = True
    needs_neg_image = False
    needs_pos_text = True

    def __init__(self, cont_weight: float = 1.0, sneg_weight: float = 1.0, uni_weight: float = 1.0) -> None:
        super().__init__()
        self.cont_weight, self.sneg_weight, self.uni_weight = float(cont_weight), float(sneg_weight), float(uni_weight)

    def batch_transform(self, tokenizer: Any) -> Optional[Callable[[dict[str, Any]], dict[str, Any]]]:
        return ClicPairs(tokenizer)

    def transformed_rows(self, rows: int) -> int:
        return rows // 2  # one example per pair of samples

    def logits_shapes(self, local_b: int, global_b: int, k: int, m: int) -> dict[str, list[int]]:
        return {"logits_i2t": [local_b // 2, global_b // 2], "logits_t2i": [local_b // 2, global_b // 2],
                "logits_sneg": [local_b // 2, 1 + k]}

    def compute(self, inputs: LossInputs) -> dict[str, torch.Tensor]:
        loc, glob, labels, scale = inputs.local, inputs.glob, inputs.labels, inputs.scale
        local_sets = [loc.text] + list(loc.pos_text.unbind(1))
        glob_sets = [glob.text] + list(glob.pos_text.unbind(1))
        cont = sum(0.5 * (nce(loc.image, g, labels, scale) + nce(p, glob.image, labels, scale))
                   for p, g in zip(local_sets, glob_sets)) / len(local_sets)
        sneg = sum(grounded_contrast(loc.image, p, loc.neg_text, loc.neg_text_mask, scale)
                   for p in local_sets) / len(local_sets)
        uni = (local_sets[0] - local_sets[1]).square().sum(-1).mean()
        total = self.cont_weight * cont + self.sneg_weight * sneg + self.uni_weight * uni
        return {"loss": total, "cont": cont, "sneg": sneg, "uni": uni}
