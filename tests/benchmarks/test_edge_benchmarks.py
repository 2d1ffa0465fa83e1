"""The issue-30 benchmarks (cnn-int8, tails, trees): every candidate they build runs, and what they write is raw
data the results schema accepts. Tiny graphs and bundles, a fraction of a second of timing."""

from __future__ import annotations

import numpy as np
import pytest

from ..helpers import tiny_cnn


@pytest.mark.train  # onnx and onnxruntime's quantizer (the [train] extra)
def test_every_cnn_int8_candidate_builds_and_runs_on_a_tiny_cnn() -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime.quantization")
    import onnxruntime as ort

    from benchmarks.cnn_int8 import recipes

    graph = tiny_cnn.patch_graph()
    image = tiny_cnn.ct_image((140, 140))
    x = np.stack([image[i:i + 100, i:i + 100, None] for i in range(0, 40, 2)]).astype(np.float32)
    ref = ort.InferenceSession(graph).run(["probability"], {"hu": x})[0]
    for name, make in recipes(graph, x[:16], "hu", "probability").items():
        data, config = make()
        so = ort.SessionOptions()
        for k, v in config.items():
            so.add_session_config_entry(k, v)
        got = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"]).run(["probability"], {"hu": x})[0]
        assert got.shape == ref.shape and np.max(np.abs(got - ref)) < 0.2, name  # the same model, quantized


def test_the_tails_measurement_writes_raw_data(tiny_bundle_ro, tmp_path) -> None:
    from benchmarks import results, tails

    doc = tails.measure([tiny_bundle_ro], batches=[1, 4], seconds=0.3, rounds=2, progress=lambda m: None)
    rows = doc["models"]["tiny_logistic"]["batches"][0]["rows"]
    assert {"profile", "1 intra-op thread", "all cores, spinning off"} <= {r["candidate"] for r in rows}
    assert all(r["latency_us"]["p99.9"] >= r["latency_us"]["p50"] for r in rows)  # the tails are reported
    assert doc["models"]["tiny_logistic"]["batches"][0]["rule"]["reason"] in ("kept", "changed")
    results.write("tails", doc, tmp_path)  # refuses anything the schema does not accept
    assert any("p99.9" in line for line in tails.render(doc))
    assert doc["provenance"]["started"] and doc["bundles"]  # provenance captured at the start, bundles' digests


def test_report_has_a_section_for_each_edge_results_file_present_and_none_for_a_missing_one(tiny_bundle_ro,
                                                                                            tmp_path) -> None:
    from benchmarks import report_sections, results, tails

    titles = {"cnn_int8": "The CNN's int8 options", "tails": "Tails: p99 and p99.9",
              "trees": "RandomForest: onnxruntime"}
    assert not [t for t, _ in report_sections.extras(tmp_path) if t.startswith(tuple(titles.values()))]
    doc = tails.measure([tiny_bundle_ro], batches=[1], seconds=0.1, rounds=2, progress=lambda m: None)
    results.write("tails", doc, tmp_path)
    sections = dict(report_sections.extras(tmp_path))
    body = "\n".join(next(v for t, v in sections.items() if t.startswith(titles["tails"])))
    assert "| 1 intra-op thread |" in body and "results/tails.json" in body and doc["command"] in body
    assert not [t for t in sections if t.startswith((titles["cnn_int8"], titles["trees"]))]


def test_the_renderers_say_what_was_compared() -> None:
    from benchmarks import cnn_int8, trees

    row = {"latency_us": {"p99": 900.0}, "round_p50_us": [700.0, 710.0]}
    doc = {"model": "m", "rounds": 2, "command": "python -m benchmarks cnn-int8",
           "runs": [{"threads": 1, "rows": [{"candidate": "LiteRT [dynamic-range int8]", **row},
                                            {"candidate": "nhwc", **row, "round_p50_us": [630.0, 640.0]}]}],
           "accuracy": {"nhwc": {"value": 0.8952}}, "unavailable": {"x": {"reason": "build_failed"}}}
    text = "\n".join(cnn_int8.render(doc))
    assert "| nhwc | 635 | 900 | 0.90× | 0.8952 |" in text and "x: build_failed" in text
    tdoc = {"command": "c", "agreement": {"max_abs_diff_vs_native": 0.0, "decision_flips_vs_native": 0, "n": 3},
            "batches": [{"batch": 64, "compiled_over_ort": 0.83, "rows": []}], "required_gain": 0.2,
            "why": "slower_or_within_margin"}
    assert "does not beat onnxruntime by more than 20%" in "\n".join(trees.render(tdoc))


def _cnn_int8_doc(ours_int8_us: float, peer_int8_us: float) -> dict:
    """A results/cnn_int8.json shaped document (synthetic numbers, for the target's arithmetic only)."""
    def row(name: str, us: float) -> dict:
        return {"candidate": name, "round_p50_us": [us, us * 1.02, us * 0.98]}

    return {"model": "lung_nodule_cnn", "runs": [{"threads": 1, "rows": [
        row("ort fp32", 1000.0), row("medinfer bundle [int8]", ours_int8_us),
        row("medinfer bundle [int8_fast_but_wrong]", 50.0),  # beyond the AUC loss: never the best shipped
        row("ort qdq s8s8 per-channel", 10.0),  # not shipped: never medinfer's best
        row("LiteRT [fp32]", 900.0), row("LiteRT [full_integer]", peer_int8_us),
        row("LiteRT [dynamic_range]", 40.0)]}],  # beyond the AUC loss: never the peer's best
        "accuracy": {n: {"value": v} for n, v in {
            "ort fp32": 0.950, "medinfer bundle [int8]": 0.947, "medinfer bundle [int8_fast_but_wrong]": 0.90,
            "ort qdq s8s8 per-channel": 0.95, "LiteRT [fp32]": 0.95, "LiteRT [full_integer]": 0.946,
            "LiteRT [dynamic_range]": 0.80}.items()}}


@pytest.mark.parametrize(("ours", "peer", "met"), [(300.0, 250.0, False), (240.0, 250.0, True)])
def test_the_edge_peer_target_compares_the_best_shipped_variant_with_the_peers_best_at_equal_accuracy(
        tmp_path, ours: float, peer: float, met: bool) -> None:
    """Issue 30: medinfer's best shipped variant within the AUC loss / LiteRT's best within it, per thread count;
    a miss is explained in the report from the results files."""
    import json

    from benchmarks import report_sections

    goal = {"models": ["lung_nodule_cnn"], "peer": "LiteRT", "auc_loss": 0.005, "max": 1.0}
    (r,) = report_sections.peer_ratios(_cnn_int8_doc(ours, peer), goal)
    assert (r["ours"], r["peer"]) == ("medinfer bundle [int8]", "LiteRT [full_integer]")
    assert r["ratio"] == pytest.approx(ours / peer)
    (tmp_path / "cnn_int8.json").write_text(json.dumps(_cnn_int8_doc(ours, peer)))
    rows = [x for x in report_sections.targets(None, {"edge_peer": goal}, tmp_path) if "LiteRT's best" in x]
    assert len(rows) == 1 and rows[0].endswith("| met |" if met else "| not met |"), rows
    notes = report_sections._peer_note({"edge_peer": goal}, tmp_path)
    assert bool(notes) is not met and all("What would close it" in n for n in notes)
