"""Four models nobody in the project's specs trained, brought in with :func:`medinfer.export.bring.bundle`:

- ``ct_nodule_unet``: a MONAI 2-D UNet segmenting the simulated nodules (their masks drawn with them), fully
  convolutional so a whole CT slice runs in one pass: ``--dicom-out`` writes a DICOM SEG;
- ``ct_nodule_monai``: a MONAI 2-D DenseNet121 (PyTorch) trained briefly on the lung spec's CT patches (simulated
  nodules on real CT), HU windowing and the softmax inside the module; saved as a ``torch.export`` ExportedProgram;
- ``drug_activity_lgbm``: a LightGBM booster on the drug spec's 216 RDKit descriptors (real ChEMBL molecules,
  scaffold split), saved as LightGBM's own ``.txt`` model file;
- ``<bundle>_onnx``: an existing bundle's ``model.onnx`` wrapped without its framework, gated against the outputs
  its parity sample holds.

    python -m medinfer.export.bring.examples --size tiny --out build/bring   # what make test uses (seconds)
    python -m medinfer.export.bring.examples --size full --out bundles       # make demo

Each writes its source, REF.npz (held-out inputs, the source's outputs, labels), TRAIN.npz (a training sample for the
domain guard) and contract.toml into ``--work``, then brings it in; the files stay there for the commands in
docs/bring-your-own-model.md.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from medinfer.samples import pair_arrays

from ...train.spec import Progress, quiet

SIZES = {"tiny": {"patches": 40, "epochs": 1, "features": 4, "blocks": (1, 1), "molecules": 160, "trees": 20},
         "full": {"patches": 1200, "epochs": 6, "features": 16, "blocks": (2, 2, 2, 2), "molecules": None,
                  "trees": 200}}
WINDOW = (-1000.0, 400.0)  # HU window of the CT model's input layer (lung window)


@dataclass(frozen=True)
class Brought:
    """What one example writes: the arguments of ``medinfer bundle``."""

    source: Path
    reference: Path
    contract: Path
    train: Path | None = None


def _toml(doc: dict[str, Any]) -> str:
    """A small TOML writer for the contract files (tables of scalars and lists; JSON strings are TOML strings)."""
    lines, tables = [], []
    for key, value in doc.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    for key, table in tables:
        inner = [(k, v) for k, v in table.items() if isinstance(v, dict)]
        flat = [(k, v) for k, v in table.items() if not isinstance(v, dict)]
        if flat:
            lines += ["", f"[{key}]", *(f"{k} = {json.dumps(v)}" for k, v in flat)]
        for k, v in inner:
            lines += ["", f"[{key}.{k}]", *(f"{kk} = {json.dumps(vv)}" for kk, vv in v.items())]
    return "\n".join(lines) + "\n"


def ct_module(size: str) -> Any:
    """The MONAI DenseNet121 (2-D, one channel, two classes) behind an HU window and a softmax."""
    import torch
    from monai.networks.nets import DenseNet121

    s = SIZES[size]

    class WindowedDenseNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = DenseNet121(spatial_dims=2, in_channels=1, out_channels=2, init_features=s["features"],
                                   growth_rate=s["features"], block_config=s["blocks"], bn_size=2)

        def forward(self, hu: torch.Tensor) -> torch.Tensor:
            x = (torch.clamp(hu, WINDOW[0], WINDOW[1]) - WINDOW[0]) / (WINDOW[1] - WINDOW[0])
            return torch.softmax(self.net(x), dim=1)

    return WindowedDenseNet()


def monai_ct(work: Path, size: str = "tiny", seed: int = 0, progress: Progress = quiet) -> Brought:
    """Train the MONAI DenseNet on CT patches briefly and write what ``medinfer bundle`` takes."""
    import torch

    from ...train import registry

    s = SIZES[size]
    work.mkdir(parents=True, exist_ok=True)
    spec = registry.get("lung_nodule_cnn").configure(backgrounds="pydicom" if size == "tiny" else "all")
    ds = spec.load_data(sample=int(s["patches"]), seed=seed, progress=progress)
    X_train = np.ascontiguousarray(np.transpose(ds.X_train, (0, 3, 1, 2)))  # NHWC -> NCHW, as MONAI takes
    X_test = np.ascontiguousarray(np.transpose(ds.X_test, (0, 3, 1, 2)))
    torch.manual_seed(seed)
    model = ct_module(size)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(X_train), torch.from_numpy(np.asarray(ds.y_train, dtype=np.int64))
    progress(f"[ct_nodule_monai] training a MONAI DenseNet121 ({sum(p.numel() for p in model.parameters()):,} "
             f"parameters) on {len(xt)} CT patches, {s['epochs']} epochs")
    for _ in range(int(s["epochs"])):
        model.train()
        for idx in torch.randperm(len(xt)).split(16):
            optimizer.zero_grad()
            loss = torch.nn.functional.nll_loss(torch.log(model(xt[idx]) + 1e-7), yt[idx])
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        proba = torch.cat([model(b) for b in torch.from_numpy(X_test).split(64)]).numpy()
    batch = torch.export.Dim("N", min=1)
    program = torch.export.export(model, (torch.from_numpy(X_test[:2]),), dynamic_shapes={"hu": {0: batch}})
    torch.export.save(program, work / "ct_nodule_monai.pt2")
    np.savez(work / "ref.npz", **pair_arrays({"hu": X_test}, {"probabilities": proba}), y=np.asarray(ds.y_test))
    np.savez(work / "train.npz", **pair_arrays({"hu": X_train}, {}))
    (work / "contract.toml").write_text(_toml({
        "name": "ct_nodule_monai", "version": "1.0.0", "task": "binary_classification",
        "labels": ["no_nodule", "nodule"], "positive_label": "nodule", "threshold": 0.5,
        "output_names": ["probabilities"],
        "description": "A MONAI 2-D DenseNet121 scoring 100 x 100 CT patches (Hounsfield units) for a nodule; the "
                       "lung window and the softmax are inside the model.",
        "preprocessing": f"HU as stored x RescaleSlope + RescaleIntercept; inside the graph: window "
                         f"[{WINDOW[0]:g}, {WINDOW[1]:g}] HU scaled to [0, 1]",
        "inputs": {"hu": {"units": "HU", "range": [-1024.0, 3071.0],
                          "description": "one CT patch per sample, channels first (N, 1, 100, 100)"}},
        "outputs": {"probabilities": {"description": "P(no_nodule), P(nodule)"}},
        "card": {"summary": "MONAI DenseNet121 (PyTorch) nodule classifier for CT patches, trained briefly on "
                            "SIMULATED nodules on real CT background: a demonstration of bringing a model in.",
                 "intended_use": "Demonstrating medinfer bundle with a PyTorch/MONAI model; not a diagnostic tool.",
                 "out_of_scope": ["Any clinical decision: the lesions are simulated."],
                 "limitations": [f"Trained for {s['epochs']} epoch(s) on {len(xt)} patches."]},
        "data": {"description": f"SIMULATED nodules on REAL CT background: {len(xt) + len(X_test)} patches "
                                f"(the lung_nodule_cnn spec's data), held-out part as the reference",
                 "licence": "MIT (pydicom's test CT slices)", "synthetic": True,
                 "citation": "pydicom test data; lesions simulated by medinfer.train.datasets.lesions"},
    }))
    return Brought(work / "ct_nodule_monai.pt2", work / "ref.npz", work / "contract.toml", work / "train.npz")


def unet_module(size: str) -> Any:
    """A MONAI 2-D UNet behind an HU window: the per-pixel nodule probability (N, H, W) and, from its largest value,
    the patch's probabilities (N, 2). Fully convolutional: any H and W that are multiples of 4."""
    import torch
    from monai.networks.nets import UNet

    channels = (4, 8, 16) if size == "tiny" else (16, 32, 64)

    class WindowedUNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = UNet(spatial_dims=2, in_channels=1, out_channels=2, channels=channels, strides=(2, 2),
                            num_res_units=1)

        def forward(self, hu: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = (torch.clamp(hu, WINDOW[0], WINDOW[1]) - WINDOW[0]) / (WINDOW[1] - WINDOW[0])
            mask = torch.softmax(self.net(x), dim=1)[:, 1]
            peak = torch.amax(mask, dim=(1, 2))
            return torch.stack([1.0 - peak, peak], dim=1), mask

    return WindowedUNet()


def monai_unet(work: Path, size: str = "tiny", seed: int = 0, progress: Progress = quiet) -> Brought:
    """Train a MONAI UNet briefly to segment the simulated nodules of CT patches; write what ``medinfer bundle``
    takes (an ExportedProgram whose H and W are dynamic: a whole CT slice runs in one pass)."""
    import torch

    from ...train.datasets import ct, lesions
    from ...train.specs.lung_nodule_cnn import split_slices

    s = SIZES[size]
    work.mkdir(parents=True, exist_ok=True)
    slices = ct.load_slices("pydicom" if size == "tiny" else "all")
    groups = split_slices(slices)
    rng = np.random.default_rng(seed)
    n = int(s["patches"])
    train = lesions.make_patches(groups["train"], int(0.75 * n), rng, masks=True)
    test = lesions.make_patches(groups["test"], n - int(0.75 * n), rng, masks=True)
    X_train = np.ascontiguousarray(np.transpose(train.X, (0, 3, 1, 2)))
    X_test = np.ascontiguousarray(np.transpose(test.X, (0, 3, 1, 2)))
    torch.manual_seed(seed)
    model = unet_module(size)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    xt, mt = torch.from_numpy(X_train), torch.from_numpy(np.asarray(train.masks, dtype=np.float32))
    progress(f"[ct_nodule_unet] training a MONAI UNet on {len(xt)} CT patches with nodule masks, "
             f"{s['epochs']} epochs")
    for _ in range(int(s["epochs"])):
        model.train()
        for idx in torch.randperm(len(xt)).split(16):
            optimizer.zero_grad()
            _, p = model(xt[idx])
            inter = (p * mt[idx]).sum()
            dice = 1 - (2 * inter + 1) / (p.sum() + mt[idx].sum() + 1)
            loss = dice + torch.nn.functional.binary_cross_entropy(p.clamp(1e-6, 1 - 1e-6), mt[idx])
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        proba, mask = (torch.cat(t).numpy() for t in zip(*(model(b) for b in torch.from_numpy(X_test).split(32))))
    quarter_h = torch.export.Dim("quarter_h", min=2, max=1024)  # H = 4 x quarter_h: the UNet's two 2x poolings
    quarter_w = torch.export.Dim("quarter_w", min=2, max=1024)
    program = torch.export.export(model, (torch.from_numpy(X_test[:2]),), dynamic_shapes={
        "hu": {0: torch.export.Dim("N", min=1), 2: 4 * quarter_h, 3: 4 * quarter_w}})
    torch.export.save(program, work / "ct_nodule_unet.pt2")
    np.savez(work / "ref.npz", **pair_arrays({"hu": X_test}, {"probabilities": proba, "mask": mask}),
             y=np.asarray(test.y))
    np.savez(work / "train.npz", **pair_arrays({"hu": X_train}, {}))
    (work / "contract.json").write_text(json.dumps({
        "name": "ct_nodule_unet", "version": "1.0.0", "task": "binary_classification",
        "labels": ["no_nodule", "nodule"], "positive_label": "nodule", "threshold": 0.5,
        "score_output": "probabilities", "output_names": ["probabilities", "mask"],
        "description": "A MONAI 2-D UNet segmenting simulated nodules in CT (Hounsfield units), whole slices in one "
                       "pass; the patch or slice is positive when its largest pixel probability reaches 0.5.",
        "preprocessing": f"HU; inside the graph: window [{WINDOW[0]:g}, {WINDOW[1]:g}] HU scaled to [0, 1]",
        "inputs": {"hu": {"units": "HU", "range": [-1024.0, 3071.0], "shape": ["N", 1, "H", "W"],
                          "description": "CT in HU, channels first; H and W multiples of 4 (a 100 x 100 patch or a "
                                         "whole slice)"}},
        "outputs": {"probabilities": {"description": "P(no nodule), P(nodule) from the largest pixel probability"},
                    "mask": {"description": "per-pixel nodule probability", "facts": {"segmentation": {
                        "segments": ["nodule"], "threshold": 0.5, "multiple": 4, "category": "morphologically "
                        "abnormal structure", "property": "nodule"}}}},
        "card": {"summary": "MONAI UNet (PyTorch) segmenting SIMULATED nodules on real CT: a demonstration of "
                            "bringing a segmentation model in, with DICOM SEG output.",
                 "intended_use": "Demonstrating medinfer bundle with a segmentation model; not a diagnostic tool.",
                 "out_of_scope": ["Any clinical decision: the lesions are simulated."]},
        "data": {"description": f"SIMULATED nodules (with their masks) on REAL CT background: {n} patches",
                 "licence": "MIT (pydicom's test CT slices)", "synthetic": True,
                 "citation": "pydicom test data; lesions simulated by medinfer.train.datasets.lesions"},
    }, indent=1) + "\n")  # JSON: the segmentation facts nest deeper than the small TOML writer goes
    return Brought(work / "ct_nodule_unet.pt2", work / "ref.npz", work / "contract.json", work / "train.npz")


def lightgbm_drug(work: Path, size: str = "tiny", seed: int = 0, progress: Progress = quiet) -> Brought:
    """Fit a LightGBM booster on the drug spec's descriptors and write what ``medinfer bundle`` takes."""
    import lightgbm as lgb

    from ...train import registry

    s = SIZES[size]
    work.mkdir(parents=True, exist_ok=True)
    spec = registry.get("drug_activity_rf")
    ds = spec.load_data(sample=s["molecules"], seed=seed, progress=progress)
    names = list(ds.feature_names or ())
    progress(f"[drug_activity_lgbm] fitting LightGBM ({s['trees']} trees) on {ds.n_train} molecules")
    model = lgb.LGBMClassifier(n_estimators=int(s["trees"]), num_leaves=15, learning_rate=0.05, verbose=-1,
                               random_state=seed, deterministic=True, n_jobs=1)
    model.fit(np.asarray(ds.X_train), np.asarray(ds.y_train))
    model.booster_.save_model(str(work / "drug_activity_lgbm.txt"))
    X_test = np.asarray(ds.X_test, dtype=np.float32)
    np.savez(work / "ref.npz", **pair_arrays({"descriptors": X_test},
                                             {"probabilities": model.predict_proba(X_test).astype(np.float32)}),
             y=np.asarray(ds.y_test))
    np.savez(work / "train.npz", **pair_arrays({"descriptors": np.asarray(ds.X_train, dtype=np.float32)}, {}))
    source = spec.inputs(ds)[0]
    (work / "contract.toml").write_text(_toml({
        "name": "drug_activity_lgbm", "version": "1.0.0", "task": "binary_classification",
        "labels": list(spec.labels or ()), "positive_label": spec.positive_label, "threshold": 0.5,
        "description": "LightGBM on 216 RDKit descriptors: is a molecule active (pIC50 >= 7)?",
        "preprocessing": ds.preprocessing,
        "inputs": {"descriptors": {"units": source.units or "1", "range": list(source.range or (-1e9, 1e9)),
                                   "names": names, "description": source.description}},
        "card": {"summary": "Gradient-boosted trees (LightGBM) for aryl-sulfonamide activity from RDKit descriptors: "
                            "a demonstration of bringing a booster in.",
                 "intended_use": "Research ranking of molecules of the training series; a chemist decides.",
                 "out_of_scope": ["Other chemical series or targets (flagged by the domain guard)."]},
        "data": {"description": ds.description, "licence": "CC BY-SA 3.0 (ChEMBL)",
                 "citation": "; ".join(src.citation for src in ds.sources)},
    }))
    return Brought(work / "drug_activity_lgbm.txt", work / "ref.npz", work / "contract.toml", work / "train.npz")


def onnx_rewrap(bundle: Path, work: Path, name: str | None = None) -> Brought:
    """An existing bundle's ``model.onnx`` as a bare graph, with its parity sample as the reference (the outputs it
    gave on onnxruntime's CPU at its export) and a contract written from its manifest."""
    import medinfer

    work.mkdir(parents=True, exist_ok=True)
    model = medinfer.load(bundle)
    m = model.manifest
    sample = model.parity_sample()
    if sample is None:
        raise ValueError(f"{bundle} has no parity sample to use as the reference")
    inputs, outputs = sample
    (work / "model.onnx").write_bytes(model.graph_bytes())
    np.savez(work / "ref.npz", **pair_arrays(inputs, outputs))
    new = name or f"{m.name}_onnx"
    contract: dict[str, Any] = {
        "name": new, "version": m.version, "task": m.task,
        "score_output": m.decision.score_output,
        "inputs": {t.name: {"units": t.units or "1", "range": list(t.range or (-1e30, 1e30)),
                            **({"names": list(t.names)} if t.names else {}), "description": t.description}
                   for t in m.inputs},
        "card": {"summary": f"{m.name}'s graph, brought again as a bare .onnx file (no framework): {m.card.summary}",
                 "intended_use": m.card.intended_use, "out_of_scope": list(m.card.out_of_scope)},
    }
    if m.labels:
        contract["labels"] = list(m.labels)
    if m.decision.label_output:
        contract["label_output"] = m.decision.label_output
    if m.task == "binary_classification":
        contract.update(positive_label=m.decision.positive_label, threshold=m.decision.threshold)
    (work / "contract.toml").write_text(_toml(contract))
    return Brought(work / "model.onnx", work / "ref.npz", work / "contract.toml")


def main(argv: list[str] | None = None) -> int:
    from . import bundle

    parser = argparse.ArgumentParser(prog="python -m medinfer.export.bring.examples", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=tuple(SIZES), default="tiny")
    parser.add_argument("--out", default="bundles", help="where the bundles go")
    parser.add_argument("--work", default="build/bring", help="where sources, REF.npz and contracts go")
    parser.add_argument("--onnx-from", default="examples/sample-bundle/gene_expression_svd",
                        help="the bundle whose model.onnx is wrapped again")
    parser.add_argument("--only", nargs="*", default=["monai", "unet", "lightgbm", "onnx"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    def say(msg: str) -> None:
        print(msg, flush=True)

    work = Path(args.work)
    jobs = {"monai": lambda: monai_ct(work / "monai", args.size, progress=say),
            "unet": lambda: monai_unet(work / "unet", args.size, progress=say),
            "lightgbm": lambda: lightgbm_drug(work / "lightgbm", args.size, progress=say),
            "onnx": lambda: onnx_rewrap(Path(args.onnx_from), work / "onnx")}
    for key in args.only:
        b = jobs[key]()
        path = bundle(b.source, b.reference, args.out, contract=b.contract, train_sample=b.train,
                      measure_profile=args.size == "full", progress=say)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
