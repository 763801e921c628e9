#!/usr/bin/env python3
"""Writes scikit-learn's handwritten digits (1797 8x8 grey images, bundled with the package: no
download) as CIFAR-10 binary batches, so `darts ... --data cifar10:DIR` reads them: a small real
dataset for studies. Each image is scaled 4x (nearest neighbour) to 32x32, its 0-16 grey levels
mapped to 0-255 and copied into the three channels. The first 1497 images are the training set
(data_batch_1..5.bin), the last 300 the test set (test_batch.bin).

    pip install scikit-learn
    python3 scripts/digits_to_cifar.py DIR
"""
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits


def records(images, labels):
    out = bytearray()
    for img, label in zip(images, labels):
        big = np.kron(img, np.ones((4, 4)))  # 8x8 -> 32x32
        grey = np.clip(np.round(big * 255.0 / 16.0), 0, 255).astype(np.uint8)
        out.append(int(label))
        out += np.stack([grey] * 3).tobytes()  # R, G, B planes, row-major
    return bytes(out)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    d = load_digits()
    images, labels = d.images, d.target
    train, test = slice(0, 1497), slice(1497, 1797)
    chunks = np.array_split(np.arange(1497), 5)
    for k, idx in enumerate(chunks, start=1):
        (out / f"data_batch_{k}.bin").write_bytes(records(images[train][idx], labels[train][idx]))
    (out / "test_batch.bin").write_bytes(records(images[test], labels[test]))
    print(f"wrote 1497 training and 300 test images to {out}")


if __name__ == "__main__":
    main()
