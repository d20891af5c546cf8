"""The prior shift (training/prior.py) measured on models already trained by ``devset_eval.py --save``.

    python benchmarks/prior_shift_eval.py SAVE_DIR 0,0.5,1 [PART PARTS]

For every saved model (``*_unet_*.safetensors``, written before the shift existed, so without one) and
every damping: the same weights with ``forest.prior`` estimated as the trainer does at the end of a run
(:class:`~scribble_unet.training.prior.PriorEstimator`, seed 0), the mask the product gives
(``predict_array``, borders snapped), its foreground IoU and predicted/true share against the case's
truth. Damping 0 is the model as saved. One JSON line per model and damping (ninth session's records:
benchmarks/results/prior_shift_session9.jsonl). ``PART PARTS`` split the files between processes.
"""
import glob
import json
import re
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "src"))
import devset_eval as de  # noqa: E402
from scribble_unet.image import open_image  # noqa: E402
from scribble_unet.image.binned import BinnedSource  # noqa: E402
from scribble_unet.inference.predict import predict_array  # noqa: E402
from scribble_unet.model.checkpoint import Checkpoint, load_checkpoint  # noqa: E402
from scribble_unet.model.unet import build_model  # noqa: E402
from scribble_unet.training.prior import PriorEstimator  # noqa: E402

torch.set_num_threads(1)
folder, dampings = sys.argv[1], [float(v) for v in sys.argv[2].split(",")]
part, parts = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (0, 1)
files = sorted(glob.glob(folder + "/*_unet_*.safetensors"))[part::parts]
cache = {}
for f in files:
    m = re.match(r".*/(.+)_(\d)x_s(\d)_unet_(.+)\.safetensors", f)
    name, s, seed = m.group(1), int(m.group(2)), int(m.group(3))
    if (name, s) not in cache:
        cache = {(name, s): de.case_data({"case": f"{name}@{s}x", "image": name, "scale": s})}
    image, inst, frame = cache[(name, s)]
    truth = inst > 0
    src = open_image(image, channel_axis=2) if image.ndim == 3 else open_image(image)
    ck = load_checkpoint(f)
    work = src if ck.config.scale == 1 else BinnedSource(src, ck.config.scale)
    for d in dampings:
        if d == 0:
            ck2 = ck
            shares = None
        else:
            cfg = ck.config.replace(prior_shift=d)
            model = build_model(cfg)
            missing = model.load_state_dict(ck.state_dict, strict=False)
            assert list(missing.missing_keys) == ["forest.prior"], missing
            model.eval()
            est = PriorEstimator(work, cfg.align, d, 0)
            est.update(model, ck.normalization, "cpu", 0.0, force=True)
            shares = est.shares.tolist()
            ck2 = Checkpoint(cfg, {k: v.clone() for k, v in model.state_dict().items()}, ck.normalization, dict(ck.training))
        mask = predict_array(ck2, src, tile=0, device="cpu")[1] > 0
        iou = float((mask & truth).sum() / max(1, (mask | truth).sum()))
        print(json.dumps({"case": f"{name}@{s}x", "seed": seed, "damping": d, "iou": round(iou, 4),
                          "share_ratio": round(float(mask.mean() / truth.mean()), 3),
                          "shares": None if shares is None else [round(v, 3) for v in shares]}), flush=True)
