"""Pure tensor functions shared by the objectives: masked InfoNCE and NegCLIP(A, P, N).

NegCLIP (arXiv 2210.01936; docs/methods.md section 2.2): anchors pick their positive among all positives and all
valid hard negatives of the global batch; positives pick their anchor among anchors only. TripletCLIP
(arXiv 2411.02545) and CE-CLIP's ITC (arXiv 2306.08832) are built from the same pieces.

NOTE on masking: invalid columns get logit -inf in *valid* rows only. Rows that are themselves invalid
(ignored anchors) keep finite logits and are dropped through ``ignore_index``: a row of only -inf would make
log-softmax and its backward NaN; masked_fill would stop that NaN before the features, but it would still
trip ``torch.autograd.detect_anomaly`` and hide real problems behind a false alarm.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def nce(
    queries: torch.Tensor,
    keys: torch.Tensor,
    labels: torch.Tensor,
    scale: torch.Tensor,
    key_valid: torch.Tensor | None = None,
    row_valid: torch.Tensor | None = None,
    denom: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Sum over valid rows of CE(scale * queries @ keys^T, labels), divided by ``denom`` (default: rows).

    ``labels`` index into ``keys``; invalid keys are excluded (-inf); invalid rows contribute nothing.
    """
    logits = (scale * queries) @ keys.t()  # scaling the [Q,D] side is cheaper than the [Q,C] logits
    if key_valid is not None:
        drop = ~key_valid.unsqueeze(0)
        if row_valid is not None:
            drop = drop & row_valid.unsqueeze(1)
        logits = logits.masked_fill(drop, float("-inf"))
    if row_valid is not None:
        labels = labels.masked_fill(~row_valid, IGNORE)
    total = F.cross_entropy(logits, labels, reduction="sum", ignore_index=IGNORE)
    return total / (queries.shape[0] if denom is None else denom)


def negclip_terms(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    anchors_all: torch.Tensor,
    positives_all: torch.Tensor,
    negatives_all: torch.Tensor,
    negatives_valid: torch.Tensor,
    labels: torch.Tensor,
    scale: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(anchor->positive over [P | valid N], positive->anchor over A), each a mean over local rows.

    anchors, positives: local pairs [B,D]; ``*_all``: global columns ([B_glob,D], negatives [N,D] flattened
    with validity [N]); labels: global index of each local pair.
    """
    columns = torch.cat([positives_all, negatives_all], dim=0)
    valid = torch.cat([negatives_valid.new_ones(positives_all.shape[0]), negatives_valid], dim=0)
    a2p = nce(anchors, columns, labels, scale, key_valid=valid)
    p2a = nce(positives, anchors_all, labels, scale)
    return a2p, p2a
