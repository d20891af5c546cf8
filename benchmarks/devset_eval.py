"""Development-set benchmark: our U-Net vs ilastik-style and scikit-image random forests vs a dense ceiling.

Every image of ``benchmarks/devset/`` (real 2D images with dense hand-made masks, see
``benchmarks/devset/SOURCES.md``) is evaluated at scale 1x, 2x and 3x (image upsampled with linear
interpolation, the instance mask with nearest neighbour), plus one large case, ``mosaic``: a 3 x 3 mosaic of
the three DSB fluorescence crops and their rotated / flipped copies (1536 x 1536) in which only the top-left
frame carries strokes and the IoU is measured on the whole mosaic.

Strokes come from the project's simulator (``simulate_scribbles``: skeleton lines along a share of the
objects, background strokes kept away from objects, always under 1 % of the pixels), for each ``--seeds``.

Methods (``--methods``):

* ``unet``: the project's U-Net trained on the strokes through the Python API exactly as
  ``benchmarks/quality.py`` does (``Trainer`` with the default ``TrainConfig`` / ``ModelConfig`` apart from
  ``validate_every=0`` (the held-out strokes are scored once, at the end), ``device="cpu"``, the seed
  and the budget; ``val_share`` stays at its default, as a user's run holds strokes out), then one whole-image
  prediction, foreground = probability > 0.5. ``--set key=value`` overrides any ``TrainConfig`` or
  ``ModelConfig`` field (``train.key=`` / ``model.key=`` when ambiguous); ``--variant-name`` labels the run.
* ``ilastik``: an ilastik-style pixel classifier (ilastik's full default feature set, random forest with
  100 trees) trained on the labelled pixels, predicting every pixel.
* ``skimage``: ``skimage.future.fit_segmenter`` on ``skimage.feature.multiscale_basic_features`` with a
  ``RandomForestClassifier(n_estimators=100)``.
* ``dense``: the same U-Net and budget trained on the dense mask (every pixel labelled) -- the ceiling.

Metric: foreground IoU of the whole image against the dense mask (object classes merged), the predicted
foreground share over the true share, and steps/s for U-Nets. Every result is appended as one JSON line to
``--out`` (default ``benchmarks/results/devset.jsonl``); a run skips cases already there (``--force`` to
rerun), so long sweeps resume. ``--summary FILE`` prints the per-image / per-scale / per-method table
(means over seeds) and the issue-8 checks. A run ends with its own table and ONE JSON line.

    python benchmarks/devset_eval.py --methods ilastik,skimage --seeds 0,1,2
    python benchmarks/devset_eval.py --methods unet --steps 600 --threads 1
    python benchmarks/devset_eval.py --methods unet --steps 600 --set lr=2e-3 --set width=32 --variant-name lr2e-3_w32
    python benchmarks/devset_eval.py --summary benchmarks/results/devset.jsonl
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEVSET = ROOT / "benchmarks" / "devset"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "devset.jsonl"
MOSAIC = "mosaic"
MOSAIC_TILES = ("dsb_fluo_dense", "dsb_fluo_large", "dsb_fluo_small")
METHODS = ("unet", "ilastik", "skimage", "dense")
# ilastik's default scales: Gaussian smoothing also at 0.3, the other features from 0.7
ILASTIK_SMOOTH = (0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
ILASTIK_SCALES = (0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
# Per-image simulator settings (under --sim). EM: the background (membranes, 1-3 px wide) has no pixel more
# than 3 px from a cell interior, so background strokes may touch objects (margin 0) and are kept to the
# membrane pixels they cross; more of them, and fewer object strokes, to keep both kinds under the 1 % cap.
SIM_DEFAULTS: dict[str, dict[str, Any]] = {
    "isbi2012_em": {"margin": 0, "n_background": 30, "object_share": 0.15},
}


# --------------------------------------------------------------------------------------------------
# The project's API: the ONLY place that imports scribble_unet. Module paths are being reorganised;
# adapt the imports here and nothing else.
# --------------------------------------------------------------------------------------------------
def project_api() -> SimpleNamespace:
    sys.path.insert(0, str(ROOT / "src"))
    from scribble_unet.image import open_image
    from scribble_unet.inference.predict import predict_array
    from scribble_unet.model import ModelConfig
    from scribble_unet.model.checkpoint import save_checkpoint
    from scribble_unet.training.infer import predict_image
    from scribble_unet.training.simulate import simulate_scribbles
    from scribble_unet.training.trainer import FinishedEvent, TrainConfig, Trainer

    return SimpleNamespace(open_image=open_image, ModelConfig=ModelConfig, predict_image=predict_image,
                           simulate_scribbles=simulate_scribbles, FinishedEvent=FinishedEvent,
                           TrainConfig=TrainConfig, Trainer=Trainer, save_checkpoint=save_checkpoint,
                           predict_array=predict_array)


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------
def devset_names() -> list[str]:
    return sorted(p.stem for p in DEVSET.glob("*.npz"))


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    d = np.load(DEVSET / f"{name}.npz")
    return d["image"], d["instances"]


def upscale(image: np.ndarray, instances: np.ndarray, s: int) -> tuple[np.ndarray, np.ndarray]:
    """Image by linear interpolation (per channel), instance mask by nearest neighbour; same pixel grid."""
    if s == 1:
        return image, instances
    from scipy import ndimage as ndi

    zoom = (s, s) + ((1,) if image.ndim == 3 else ())
    img = ndi.zoom(image.astype(np.float32), zoom, order=1, mode="nearest", grid_mode=True)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        img = np.clip(np.rint(img), info.min, info.max)
    inst = ndi.zoom(instances, (s, s), order=0, mode="nearest", grid_mode=True)
    return img.astype(image.dtype), inst.astype(instances.dtype)


def mosaic() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """3 x 3 mosaic of the DSB fluorescence crops and their rotations / flips; returns image, instances and
    the mask of the frame that carries strokes (top left)."""
    crops = [load(n) for n in MOSAIC_TILES]
    ops = [lambda a: a, lambda a: np.rot90(a), lambda a: a[:, ::-1]]
    rows_i, rows_m = [], []
    offset = 0
    for r, op in enumerate(ops):
        ri, rm = [], []
        for c in range(3):
            img, inst = crops[(c + r) % 3]
            inst = op(inst).astype(np.int64)
            inst[inst > 0] += offset
            offset = int(inst.max())
            ri.append(op(img))
            rm.append(inst)
        rows_i.append(np.concatenate(ri, axis=1))
        rows_m.append(np.concatenate(rm, axis=1))
    image = np.ascontiguousarray(np.concatenate(rows_i, axis=0))
    instances = np.concatenate(rows_m, axis=0).astype(np.uint32)
    frame = np.zeros(instances.shape, bool)
    h, w = crops[0][1].shape
    frame[:h, :w] = True
    return image, instances, frame


def make_cases(images: list[str], scales: list[int]) -> list[dict[str, Any]]:
    cases = []
    for name in images:
        if name == MOSAIC:
            cases.append({"case": f"{MOSAIC}@1x", "image": MOSAIC, "scale": 1})
            continue
        for s in scales:
            cases.append({"case": f"{name}@{s}x", "image": name, "scale": s})
    return cases


def case_data(case: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if case["image"] == MOSAIC:
        return mosaic()
    image, inst = load(case["image"])
    image, inst = upscale(image, inst, case["scale"])
    return image, inst, None


def scribbles_for(api: SimpleNamespace, inst: np.ndarray, frame: np.ndarray | None, seed: int,
                  sim: dict[str, Any]) -> np.ndarray:
    """Simulated strokes (under 1 % of the pixels); on the mosaic only inside ``frame``."""
    kw = {"max_fraction": 0.0099, **sim}
    if frame is None:
        return api.simulate_scribbles(inst, seed=seed, **kw)
    ys, xs = np.nonzero(frame)
    sl = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    out = np.zeros(inst.shape, np.uint8)
    out[sl] = api.simulate_scribbles(inst[sl], seed=seed, **kw)
    return out


# --------------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------------
def parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def split_overrides(api: SimpleNamespace, sets: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``key=value`` strings into (TrainConfig, ModelConfig) keyword overrides, by field name."""
    train_f = set(api.TrainConfig.model_fields)  # pydantic models (scribble_unet.config)
    model_f = set(api.ModelConfig.model_fields)
    train: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for item in sets:
        if "=" not in item:
            sys.exit(f"error: --set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip()
        target = None
        if key.startswith("train."):
            key, target = key[6:], "train"
        elif key.startswith("model."):
            key, target = key[6:], "model"
        elif key in train_f and key in model_f:
            sys.exit(f"error: {key!r} is a field of both TrainConfig and ModelConfig; write train.{key} or model.{key}")
        elif key in train_f:
            target = "train"
        elif key in model_f:
            target = "model"
        if target == "train" and key in train_f:
            train[key] = parse_value(value)
        elif target == "model" and key in model_f:
            model[key] = parse_value(value)
        else:
            sys.exit(f"error: {key!r} is not a field of TrainConfig ({sorted(train_f)}) "
                     f"or ModelConfig ({sorted(model_f)})")
    return train, model


def train_unet(api: SimpleNamespace, image: np.ndarray, labels: np.ndarray, args: argparse.Namespace,
               seed: int, dense: bool = False) -> tuple[np.ndarray, dict[str, Any]]:
    """The project's U-Net on ``labels`` (as benchmarks/quality.py), then a whole-image prediction."""
    train_over, model_over = split_overrides(api, args.set)
    rgb = image.ndim == 3
    src = api.open_image(image, channel_axis=2) if rgb else api.open_image(image)
    model_kw: dict[str, Any] = {"in_channels": image.shape[2] if rgb else 1, **model_over}
    model_config = api.ModelConfig(**model_kw)
    train_kw: dict[str, Any] = {"validate_every": 0, "seed": seed, "device": "cpu"}
    if args.steps:
        train_kw.update(steps=args.steps, time_budget=None)
    else:
        train_kw.update(steps=None, time_budget=args.budget)
    train_kw.update(train_over)
    if dense:
        train_kw["val_share"] = 0.0  # every pixel is labelled: nothing to hold out
    config = api.TrainConfig(**train_kw)
    trainer = api.Trainer(src, labels, model_config, config)
    if args.start is None and str(getattr(trainer, "start", "")).startswith("generalist"):
        print("  note: started from the shipped generalist, which learnt from DSB 2018, Usiigaci and "
              "AxonDeepSeg images; for held-out figures pass --start FOLD or --set start=scratch", flush=True)
    if args.start is not None:
        load_start(trainer.model, args.start)
    finished = None
    for ev in trainer.run():
        if isinstance(ev, api.FinishedEvent):
            finished = ev
    assert finished is not None
    t0 = time.perf_counter()
    probs = api.predict_image(trainer.model, trainer.source, trainer.normalization)
    # the mask the product gives (borders snapped to edges when the model says so), from the checkpoint
    mask = api.predict_array(finished.checkpoint, src, tile=0, device="cpu")[1] > 0
    ckpt = finished.checkpoint
    unet_mask = None
    if ckpt.config.pixel_forest:  # the same U-Net without its pixel forest, for comparison
        alone = type(ckpt)(ckpt.config.replace(pixel_forest=False),
                           {k: v for k, v in ckpt.state_dict.items() if not k.startswith("forest.")},
                           ckpt.normalization, dict(ckpt.training))
        unet_mask = api.predict_array(alone, src, tile=0, device="cpu")[1] > 0
    stats = {
        "steps": int(finished.step),
        "train_s": round(float(trainer.elapsed), 1),
        "steps_per_s": round(finished.step / max(trainer.elapsed, 1e-9), 2),
        "predict_s": round(time.perf_counter() - t0, 2),
        "tile": int(trainer.tile),
        "start": str(args.start) if args.start is not None else getattr(trainer, "start", None),
    }
    p = probs[0].astype(np.float64)
    fg = p > 0.5
    # the model's own expected IoU of its mask, if its probabilities were calibrated
    stats["self_iou"] = round(float(p[fg].sum() / max(fg.sum() + p[~fg].sum(), 1e-9)), 4)
    val = (finished.checkpoint.training.get("val_iou") or {}).get("object")
    stats["stroke_iou"] = None if val is None else round(float(val), 4)  # what train/the plot show
    choice = getattr(trainer, "scale_choice", None)
    if choice is not None:  # the working resolution the trainer chose, and from what
        stats.update(work_scale=choice.scale, diameter_est=choice.diameter and round(choice.diameter, 1),
                     diameter_source=choice.source)
    if args.save is not None:  # probabilities and the model, for prediction-time variants measured later
        stats["_probs"] = probs
        stats["_checkpoint"] = finished.checkpoint
    stats["_plain"] = probs[0] > 0.5  # each pixel's most probable class, borders not snapped
    if unet_mask is not None:
        stats["_unet_alone"] = unet_mask
    return mask, stats


def load_start(model: Any, path: Path) -> None:
    """Copy a generalist's weights (``benchmarks/pretrain/generalist.py``) into ``model``, in place.

    A one-channel generalist's first convolution is spread evenly over an RGB model's channels (each
    channel is normalised on its own, so their mean is the grey image the generalist saw).
    """
    from scribble_unet.model.checkpoint import load_checkpoint

    if path.suffix == ".pt":  # this session's first pretrainings (torch.save of the state)
        import torch

        state = dict(torch.load(path, map_location="cpu", weights_only=False)["state_dict"])
    else:
        state = dict(load_checkpoint(path).state_dict)
    own = model.state_dict()
    for k, v in list(state.items()):
        if k in own and v.ndim == 4 and own[k].shape[1] != v.shape[1] and v.shape[1] == 1:
            state[k] = v.repeat(1, own[k].shape[1], 1, 1) / own[k].shape[1]
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("forest.") for k in missing), (missing, unexpected)


def _eig2(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (larger, smaller) of the symmetric 2x2 matrices [[a, b], [b, c]]."""
    mean = (a + c) / 2
    root = np.sqrt(((a - c) / 2) ** 2 + b * b)
    return mean + root, mean - root


def ilastik_features(image: np.ndarray) -> np.ndarray:
    """ilastik's default pixel features, per channel (RGB: each channel separately, as ilastik does).

    Gaussian smoothing at 0.3, 0.7, 1, 1.6, 3.5, 5, 10; at 0.7 ... 10 also Laplacian of Gaussian, Gaussian
    gradient magnitude, difference of Gaussians G(s) - G(0.66 s), structure-tensor eigenvalues (inner scale
    s, outer scale 0.5 s) and Hessian-of-Gaussian eigenvalues, following ilastik's (lazyflow's) conventions
    with scipy's Gaussian derivatives (truncate 3, reflect boundary) instead of vigra's.
    """
    from scipy import ndimage as ndi

    chans = [image[..., c] for c in range(image.shape[2])] if image.ndim == 3 else [image]
    feats: list[np.ndarray] = []
    kw = {"mode": "reflect", "truncate": 3.0}
    for ch in chans:
        x = ch.astype(np.float32)
        x = (x - x.min()) / max(float(x.max() - x.min()), 1e-6)
        for s in ILASTIK_SMOOTH:
            feats.append(ndi.gaussian_filter(x, s, **kw))
        for s in ILASTIK_SCALES:
            dyy = ndi.gaussian_filter(x, s, order=(2, 0), **kw)
            dxx = ndi.gaussian_filter(x, s, order=(0, 2), **kw)
            dxy = ndi.gaussian_filter(x, s, order=(1, 1), **kw)
            dy = ndi.gaussian_filter(x, s, order=(1, 0), **kw)
            dx = ndi.gaussian_filter(x, s, order=(0, 1), **kw)
            feats.append(dxx + dyy)  # Laplacian of Gaussian
            feats.append(np.sqrt(dx * dx + dy * dy))  # Gaussian gradient magnitude
            feats.append(ndi.gaussian_filter(x, s, **kw) - ndi.gaussian_filter(x, 0.66 * s, **kw))  # DoG
            t = 0.5 * s  # structure tensor: gradient at inner scale s, averaged at outer scale 0.5 s
            e1, e2 = _eig2(ndi.gaussian_filter(dx * dx, t, **kw), ndi.gaussian_filter(dx * dy, t, **kw),
                           ndi.gaussian_filter(dy * dy, t, **kw))
            feats += [e1, e2]
            h1, h2 = _eig2(dxx, dxy, dyy)
            feats += [h1, h2]
    return np.stack(feats, axis=-1).astype(np.float32)


def random_forest(features: np.ndarray, labels: np.ndarray, seed: int, threads: int,
                  max_depth: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Random forest (100 trees) on the labelled pixels; foreground = object classes (label >= 2)."""
    from sklearn.ensemble import RandomForestClassifier

    t0 = time.perf_counter()
    m = labels > 0
    clf = RandomForestClassifier(n_estimators=100, max_depth=max_depth, n_jobs=threads, random_state=seed)
    clf.fit(features[m], np.minimum(labels[m], 2))
    flat = features.reshape(-1, features.shape[-1])
    pred = np.empty(flat.shape[0], np.uint8)
    step = 1 << 18
    prob = np.empty(flat.shape[0], np.float32)
    for i in range(0, flat.shape[0], step):
        pr = clf.predict_proba(flat[i:i + step])
        pred[i:i + step] = clf.classes_[pr.argmax(1)]
        prob[i:i + step] = pr[:, list(clf.classes_).index(2)] if 2 in clf.classes_ else 0.0
    return pred.reshape(labels.shape) >= 2, {"seconds": round(time.perf_counter() - t0, 1),
                                             "n_features": int(features.shape[-1]),
                                             "_probs": prob.reshape(labels.shape)[None]}


def run_ilastik(image: np.ndarray, labels: np.ndarray, seed: int, threads: int) -> tuple[np.ndarray, dict[str, Any]]:
    t0 = time.perf_counter()
    feats = ilastik_features(image)
    f_s = time.perf_counter() - t0
    mask, st = random_forest(feats, labels, seed, threads)
    st["features_s"] = round(f_s, 1)
    st["seconds"] = round(st["seconds"] + f_s, 1)
    return mask, st


def run_skimage(image: np.ndarray, labels: np.ndarray, seed: int, threads: int) -> tuple[np.ndarray, dict[str, Any]]:
    from skimage.feature import multiscale_basic_features
    from skimage.future import fit_segmenter, predict_segmenter
    from sklearn.ensemble import RandomForestClassifier

    t0 = time.perf_counter()
    x = image.astype(np.float32)
    x = (x - x.min()) / max(float(x.max() - x.min()), 1e-6)
    feats = multiscale_basic_features(x, channel_axis=-1 if image.ndim == 3 else None)
    clf = RandomForestClassifier(n_estimators=100, n_jobs=threads, random_state=seed)
    lab = np.minimum(labels, 2)
    clf = fit_segmenter(lab, feats, clf)
    pred = predict_segmenter(feats, clf)
    return pred >= 2, {"seconds": round(time.perf_counter() - t0, 1), "n_features": int(feats.shape[-1])}


# --------------------------------------------------------------------------------------------------
# Records, tables, checks
# --------------------------------------------------------------------------------------------------
def label_of(rec: dict[str, Any]) -> str:
    v = rec.get("variant") or "default"
    return rec["method"] if v == "default" or rec["method"] in ("ilastik", "skimage") else f"{rec['method']}:{v}"


def record_key(rec: dict[str, Any]) -> tuple[Any, ...]:
    unet = rec["method"] in ("unet", "dense")
    return (rec["case"], rec["method"], rec.get("variant") if unet else None, rec["seed"],
            rec.get("steps_cfg") if unet else None, rec.get("budget_s") if unet else None, rec.get("sim"))


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            rec = json.loads(line)
            if rec.get("benchmark") == "devset":
                out.append(rec)
    return out


def case_order(case: str) -> tuple[Any, ...]:
    name, _, s = case.partition("@")
    return (name == MOSAIC, name, int(s.rstrip("x") or 1))


def summarize(records: list[dict[str, Any]], margin: float = 0.03) -> dict[str, Any]:
    """Print the table of mean IoU over seeds per case x method and the issue-8 checks; return them."""
    records = list({record_key(r): r for r in records}.values())  # a rerun of the same key: the last one
    cells: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        cells[(r["case"], label_of(r))].append(r)
    cases = sorted({c for c, _ in cells}, key=case_order)
    labels = sorted({m for _, m in cells}, key=lambda m: (METHODS.index(m.split(":")[0]), m))

    def mean(case: str, lab: str, key: str = "iou") -> float | None:
        rs = [r[key] for r in cells.get((case, lab), []) if r.get(key) is not None]
        return float(np.mean(rs)) if rs else None

    width = max(15, *(len(lab) for lab in labels)) + 2
    head = f"{'case':<24}{'true fg':>8}  " + "".join(f"{lab:>{width}}" for lab in labels)
    print("foreground IoU, mean over seeds (n seeds); U-Nets also pred/true foreground share")
    print(head)
    for c in cases:
        true_share = next(r["true_share"] for (cc, _), rs in cells.items() if cc == c for r in rs)
        row = f"{c:<24}{true_share:>8.1%}  "
        for lab in labels:
            v = mean(c, lab)
            n = len(cells.get((c, lab), []))
            if v is None:
                row += f"{'-':>{width}}"
            elif lab.split(":")[0] in ("unet", "dense"):
                cell = f"{v:.3f}({n}) x{mean(c, lab, 'share_ratio'):.2f}"
                row += f"{cell:>{width}}"
            else:
                cell = f"{v:.3f}({n})"
                row += f"{cell:>{width}}"
        print(row)
    avg: dict[str, float] = {}
    row = f"{'mean over cases':<34}"
    for lab in labels:
        vs = [mean(c, lab) for c in cases]
        vs2 = [v for v in vs if v is not None]
        if vs2:
            avg[lab] = float(np.mean(vs2))
        cell = f"{np.mean(vs2):.3f} [{len(vs2)}]" if vs2 else "-"
        row += f"{cell:>{width}}"
    print(row)
    common = [c for c in cases if all(mean(c, lab) is not None for lab in labels)]
    if len(labels) > 1 and 0 < len(common) < len(cases):
        row = f"{'mean, cases all have':<34}"
        for lab in labels:
            cell = f"{np.mean([mean(c, lab) for c in common]):.3f} [{len(common)}]"
            row += f"{cell:>{width}}"
        print(row)
    sps = {lab: float(np.mean([r["steps_per_s"] for (c, lb), rs in cells.items() if lb == lab for r in rs]))
           for lab in labels if lab.split(":")[0] in ("unet", "dense")}
    if sps:
        print("steps/s: " + ", ".join(f"{lab} {v:.1f}" for lab, v in sps.items()))

    checks: dict[str, Any] = {}
    for lab in labels:
        if lab.split(":")[0] != "unet":
            continue
        both = [c for c in cases if mean(c, lab) is not None and mean(c, "ilastik") is not None]
        diffs = [mean(c, lab) - mean(c, "ilastik") for c in both]  # type: ignore[operator]
        losses = [c for c, d in zip(both, diffs, strict=False) if d <= 0]
        with_share = [c for c in cases if mean(c, lab, "share_ratio") is not None]
        share_bad = [c for c in with_share if abs(mean(c, lab, "share_ratio") - 1) > 0.15]  # type: ignore[operator]
        dense_lab = "dense" + lab[4:] if any(lb == "dense" + lab[4:] for lb in labels) else "dense"
        with_dense = [c for c in cases if mean(c, lab) is not None and mean(c, dense_lab) is not None]
        ratio = (float(np.mean([mean(c, lab) / mean(c, dense_lab) for c in with_dense]))  # type: ignore[operator]
                 if with_dense else None)
        chk = {
            "cases_vs_ilastik": len(both),
            "beats_ilastik_every_case": bool(both) and not losses,
            "losses_to_ilastik": losses,
            "mean_margin_over_ilastik": round(float(np.mean(diffs)), 4) if diffs else None,
            "margin_ok": bool(diffs) and float(np.mean(diffs)) >= margin,
            "share_within_15pct_cases": f"{len(with_share) - len(share_bad)}/{len(with_share)}",
            "share_off_cases": share_bad,
            "vs_dense": dense_lab,
            "cases_vs_dense": len(with_dense),
            "mean_over_dense": round(ratio, 4) if ratio is not None else None,
            "reaches_90pct_dense": ratio is not None and ratio >= 0.9,
        }
        checks[lab] = chk
        print(f"\n{lab} vs ilastik on {len(both)} case(s): beats it on every case: "
              f"{'yes' if chk['beats_ilastik_every_case'] else 'NO'}"
              + (f" (loses on {', '.join(losses)})" if losses else "")
              + (f"; mean margin {np.mean(diffs):+.3f} ({'>=' if chk['margin_ok'] else '<'} {margin})" if diffs else ""))
        print(f"{lab} predicted/true foreground share within 15 %: {len(with_share) - len(share_bad)}/{len(with_share)} cases"
              + (f" (off: {', '.join(share_bad)})" if share_bad else ""))
        if ratio is not None:
            print(f"{lab} / {dense_lab} on {len(with_dense)} case(s): {ratio:.1%} "
                  f"({'>=' if ratio >= 0.9 else '<'} 90 %)")
    return {"cases": len(cases), "mean_iou": {k: round(v, 4) for k, v in avg.items()},
            "steps_per_s": {k: round(v, 2) for k, v in sps.items()}, "checks": checks}


# --------------------------------------------------------------------------------------------------
def parse_list(text: str, cast: Any = str) -> list[Any]:
    return [cast(t) for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", default="all", help=f"comma-separated devset names (and/or '{MOSAIC}'); default all")
    p.add_argument("--scales", default="1,2,3", help="comma-separated upscaling factors (default 1,2,3)")
    p.add_argument("--seeds", default=None,
                   help="comma-separated scribble/model seeds (default 0); with --summary: only these seeds")
    p.add_argument("--methods", default="ilastik,skimage,unet", help=f"comma-separated, from {','.join(METHODS)}")
    p.add_argument("--budget", type=float, default=60.0, help="U-Net training seconds (default 60)")
    p.add_argument("--steps", type=int, default=None,
                   help="U-Net training steps instead of a time budget (use on a loaded machine)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a TrainConfig/ModelConfig field (repeatable), e.g. --set lr=2e-3 --set model.width=32")
    p.add_argument("--variant-name", default=None, help="label of the U-Net variant (default: 'default' without --set)")
    p.add_argument("--sim", action="append", default=[], metavar="KEY=VALUE",
                   help="override a simulate_scribbles argument (object_share, n_background, brush, margin, ...)")
    p.add_argument("--threads", type=int, default=None, help="torch threads and random-forest n_jobs (default: all cores)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON-lines results file (default {DEFAULT_OUT.relative_to(ROOT)})")
    p.add_argument("--force", action="store_true", help="rerun cases already in --out")
    p.add_argument("--start", type=Path, default=None, metavar="FILE",
                   help="start the U-Net from these generalist weights (benchmarks/pretrain/generalist.py)")
    p.add_argument("--dry-run", action="store_true", help="list the cases and labelled fractions, train nothing")
    p.add_argument("--save", type=Path, default=None, metavar="DIR",
                   help="also write each run's foreground probabilities (and the U-Net's model) under DIR")
    p.add_argument("--summary", type=Path, default=None, metavar="FILE", help="print the table of FILE and exit")
    args = p.parse_args(argv)

    if args.summary is not None:
        recs = read_records(args.summary)
        if args.seeds is not None:
            keep = set(parse_list(args.seeds, int))
            recs = [r for r in recs if r["seed"] in keep]
        if not recs:
            sys.exit(f"error: no devset records in {args.summary}")
        res = summarize(recs)
        print(json.dumps({"benchmark": "devset_summary", "file": str(args.summary), "records": len(recs), **res}))
        return 0

    methods = parse_list(args.methods)
    for m in methods:
        if m not in METHODS:
            sys.exit(f"error: unknown method {m!r} (choose from {', '.join(METHODS)})")
    names = [*devset_names(), MOSAIC] if args.images == "all" else parse_list(args.images)
    for n in names:
        if n != MOSAIC and not (DEVSET / f"{n}.npz").is_file():
            sys.exit(f"error: no devset image {n!r} (have {', '.join(devset_names())}, {MOSAIC})")
    scales, seeds = parse_list(args.scales, int), parse_list(args.seeds or "0", int)
    sim = {k: parse_value(v) for k, v in (s.split("=", 1) for s in args.sim)}
    variant = args.variant_name or ("default" if not args.set else ",".join(args.set))
    threads = args.threads or os.cpu_count() or 1

    api = project_api()
    import torch

    torch.set_num_threads(threads)
    if any(m in methods for m in ("unet", "dense")):
        split_overrides(api, args.set)  # fail early on a bad --set
    done = {record_key(r) for r in read_records(args.out)} if not args.force else set()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    for case in make_cases(names, scales):
        image, inst, frame = case_data(case)
        truth = inst > 0
        true_share = float(truth.mean())
        sim_case = {**SIM_DEFAULTS.get(case["image"], {}), **sim}
        for seed in seeds:
            scr = scribbles_for(api, inst, frame, seed, sim_case)
            frac = float((scr > 0).mean())
            assert frac < 0.01, f"labelled fraction {frac:.3%} >= 1 %"
            print(f"{case['case']}: {image.shape}, true fg {true_share:.1%}, seed {seed}: labelled {frac:.3%} "
                  f"({int((scr == 1).sum())} bg, {int((scr >= 2).sum())} object px)", flush=True)
            if args.dry_run:
                continue
            for method in methods:
                unet = method in ("unet", "dense")
                base = {"benchmark": "devset", "case": case["case"], "image": case["image"], "scale": case["scale"],
                        "method": method, "variant": variant if unet else None, "seed": seed,
                        "steps_cfg": args.steps if unet else None,
                        "budget_s": (None if args.steps else args.budget) if unet else None,
                        "sim": json.dumps(sim_case, sort_keys=True) if sim_case else None}
                if record_key(base) in done:
                    print(f"  {method:<8} already in {args.out.name}, skipped", flush=True)
                    continue
                t0 = time.perf_counter()
                if method == "unet":
                    pred, st = train_unet(api, image, scr, args, seed)
                elif method == "dense":
                    pred, st = train_unet(api, image, (1 + truth).astype(np.uint8), args, seed, dense=True)
                elif method == "ilastik":
                    pred, st = run_ilastik(image, scr, seed, threads)
                else:
                    pred, st = run_skimage(image, scr, seed, threads)
                probs, ckpt = st.pop("_probs", None), st.pop("_checkpoint", None)
                plain = st.pop("_plain", None)
                alone = st.pop("_unet_alone", None)
                if alone is not None:  # the U-Net without its pixel forest (snapped as the product)
                    st["iou_unet_alone"] = round(int((alone & truth).sum()) / max(1, int((alone | truth).sum())), 4)
                    st["share_ratio_unet_alone"] = round(float(alone.mean()) / max(true_share, 1e-9), 4)
                if plain is not None:  # the U-Net's mask without snapped borders, for comparison
                    st["iou_plain"] = round(int((plain & truth).sum()) / max(1, int((plain | truth).sum())), 4)
                    st["share_ratio_plain"] = round(float(plain.mean()) / max(true_share, 1e-9), 4)
                if args.save is not None and probs is not None:
                    stem = f"{case['case']}_s{seed}_{method}_{variant if unet else 'na'}".replace("@", "_")
                    args.save.mkdir(parents=True, exist_ok=True)
                    np.savez_compressed(args.save / f"{stem}.npz", probs=probs.astype(np.float16), scribbles=scr)
                    if ckpt is not None:
                        api.save_checkpoint(args.save / f"{stem}.safetensors", ckpt)
                inter, union = int((pred & truth).sum()), int((pred | truth).sum())
                pred_share = float(pred.mean())
                rec = {**base, "iou": round(inter / max(1, union), 4), "pred_share": round(pred_share, 4),
                       "true_share": round(true_share, 4), "share_ratio": round(pred_share / max(true_share, 1e-9), 4),
                       "labelled_fraction": round(frac if method != "dense" else 1.0, 5), "shape": list(image.shape),
                       "threads": threads, "overrides": args.set if unet else None,
                       "wall_s": round(time.perf_counter() - t0, 1), **st,
                       "host": platform.node(), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
                with args.out.open("a") as fh:
                    fh.write(json.dumps(rec) + "\n")
                new.append(rec)
                extra = f", {st['steps']} steps, {st['steps_per_s']} steps/s" if unet else ""
                print(f"  {method:<8} IoU {rec['iou']:.3f}  pred/true fg {rec['share_ratio']:.2f}  "
                      f"{rec['wall_s']:.1f} s{extra}", flush=True)
    if args.dry_run:
        return 0
    print(f"\n{len(new)} new result(s) in {time.perf_counter() - t_start:.0f} s, appended to {args.out}\n")
    res = summarize(new) if new else {}
    print(json.dumps({"benchmark": "devset", "out": str(args.out), "new_records": len(new), "methods": methods,
                      "variant": variant, "steps": args.steps, "budget_s": None if args.steps else args.budget,
                      "threads": threads, "seeds": seeds, **res}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
