"""Near-duplicates: images that differ only by re-encoding, slight shifts or noise, found by perceptual hash.

Each decoded image gets a 64-bit DCT perceptual hash (``imagehash.phash``), stored in the manifest as 16 hex
digits. Two images whose hashes differ in at most ``validate.near_duplicate_distance`` bits are near
duplicates; groups are the connected components of that relation. A JPEG re-encode at quality 95 moves a
hash by 0-4 bits; unrelated NEU-CLS images are 10 or more bits apart.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

BLOCK = 1024  # rows of the distance matrix computed at a time (memory: BLOCK × n bytes)


def phash(gray: np.ndarray) -> str:
    """The perceptual hash of a uint8 grayscale image, as 16 hex digits."""
    import imagehash  # imported here: only ingest needs it

    return str(imagehash.phash(Image.fromarray(gray)))


def distance(a: str, b: str) -> int:
    """Bits in which two hashes differ."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def groups(hashes: list[str], max_distance: int) -> list[list[int]]:
    """Indices of ``hashes`` grouped by near-duplication (size ≥ 2), each group and the list in index order.

    Empty hashes (undecodable images) belong to no group. Equal hashes are at distance 0, so callers that
    handle exact copies separately pass one hash per distinct content.
    """
    index = [i for i, h in enumerate(hashes) if h]
    if len(index) < 2:
        return []
    values = np.array([int(hashes[i], 16) for i in index], dtype=np.uint64)
    parent = list(range(len(values)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, len(values), BLOCK):
        block = values[start : start + BLOCK]
        close = np.bitwise_count(block[:, None] ^ values[None, :]) <= max_distance
        for a, b in zip(*np.nonzero(close), strict=True):
            a = int(a) + start
            if a < b:
                parent[root(int(b))] = root(a)
    members: dict[int, list[int]] = {}
    for i in range(len(values)):
        members.setdefault(root(i), []).append(index[i])
    return sorted((m for m in members.values() if len(m) > 1), key=lambda m: m[0])
