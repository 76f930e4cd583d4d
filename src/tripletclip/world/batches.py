"""Training order in blocks of one batch with no mutual colour swap inside a block (docs/world_experiments.md,
section 11).

In a world of five shapes and five colours, captions that state two colours collide: about 21 of every 64
binding-dense positives have their own colour swap ("a blue cube and a red ball" for "a red cube and a blue ball")
elsewhere in the same batch, so plain CLIP receives swap negatives from its in-batch positives, which web-scale
batches (a few hundred captions out of millions) almost never hold. Ordering the training set in blocks of one
batch without such pairs, read in order (``data.shuffle_buffer`` 0, shards holding whole blocks), makes every
objective's batches look like web batches in this respect; negatives are the only source of swaps.
"""
from __future__ import annotations

from collections import Counter
from typing import Optional, Sequence

from tripletclip.errors import InputError
from tripletclip.world.parser import parse_caption

SwapKey = tuple[frozenset, frozenset]  # (the caption's two (shape, colour) pairs, the same with colours exchanged)


def swap_key(caption: str) -> Optional[SwapKey]:
    """The key of a caption that states two different colours on two different shapes, else None (a caption
    with no colour swap: nothing to collide)."""
    desc = parse_caption(caption)
    objs = [o for o in desc.objects if o.colour] if desc else []
    if len(objs) != 2 or objs[0].shape == objs[1].shape or objs[0].colour == objs[1].colour:
        return None
    a, b = objs
    return (frozenset([(a.shape, a.colour), (b.shape, b.colour)]),
            frozenset([(a.shape, b.colour), (b.shape, a.colour)]))


def order_without_mutual_swaps(keys: Sequence[Optional[SwapKey]], block: int) -> list[int]:
    """A permutation of ``range(len(keys))`` whose consecutive blocks of ``block`` hold no two items that are each
    other's colour swap. Blocks are filled in generation order, an item that would meet its swap waiting for the
    next block; when only such items are left for a block, each is exchanged with an item of an earlier block that
    fits both. Raises InputError when even that fails (too many captions share one colour swap for the blocks)."""
    if block < 1 or len(keys) % block:
        raise InputError(f"batches without mutual swaps: {len(keys)} training triplets do not fill blocks of "
                         f"{block}; make the number of triplets a multiple of the batch size")

    def fits(i: int, owns: Counter) -> bool:
        return keys[i] is None or owns[keys[i][1]] == 0

    def own(i: int) -> list[frozenset]:
        return [keys[i][0]] if keys[i] is not None else []

    blocks: list[list[int]] = []
    owns: list[Counter] = []
    waiting = list(range(len(keys)))
    while waiting:
        cur, cur_owns, later = [], Counter(), []
        for i in waiting:
            if len(cur) < block and fits(i, cur_owns):
                cur.append(i)
                cur_owns.update(own(i))
            else:
                later.append(i)
        waiting = later
        while len(cur) < block:  # only items that meet their swap here are left: exchange one with an earlier block
            i = waiting.pop(0)
            for b, (other, o) in enumerate(zip(blocks, owns)):
                j = next((j for j in other if fits(j, cur_owns) and fits(i, o - Counter(own(j)))), None)
                if j is not None:
                    other[other.index(j)] = i
                    owns[b] = o - Counter(own(j)) + Counter(own(i))
                    cur.append(j)
                    cur_owns.update(own(j))
                    break
            else:
                raise InputError(f"batches without mutual swaps: no block of {block} can take training triplet {i} "
                                 f"without its colour swap; too many captions share one swap for {len(keys)} triplets")
        blocks.append(cur)
        owns.append(cur_owns)
    return [i for b in blocks for i in b]
