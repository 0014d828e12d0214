"""The committed GPU results: speaker-independent records, and a leaderboard that is exactly their report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.cli import main

GPU_RESULTS = Path(__file__).resolve().parents[1] / "results" / "gpu"
pytestmark = pytest.mark.skipif(not (GPU_RESULTS / "records.jsonl").exists(),
                                reason="results/gpu is not in this checkout")


def test_committed_gpu_records_are_speaker_independent():
    records = [json.loads(line) for line in (GPU_RESULTS / "records.jsonl").read_text().splitlines()]
    assert records
    for record in records:
        train, test = set(record["train_speakers"]), set(record["test_speakers"])
        validation = set(record.get("validation_speakers") or [])
        assert train and test and not train & test, record["config_hash"]
        assert not validation & test, record["config_hash"]
        assert (GPU_RESULTS / "predictions" / f"{record['config_hash']}.csv.gz").exists()


def test_committed_gpu_leaderboard_is_rebuilt_from_its_records(tmp_path):
    copy = tmp_path / "gpu"
    copy.mkdir()
    shutil.copy(GPU_RESULTS / "records.jsonl", copy)
    shutil.copytree(GPU_RESULTS / "predictions", copy / "predictions")
    shutil.copy(GPU_RESULTS / "deep_models_timings.json", copy)  # the benchmark output its page reads
    (tmp_path / "full").mkdir()
    shutil.copy(GPU_RESULTS.parent / "full" / "records.jsonl", tmp_path / "full")  # the suite it stands beside
    assert main(["report", "--suite", "gpu", "--results-dir", str(tmp_path)]) == 0
    assert (copy / "leaderboard.md").read_text() == (GPU_RESULTS / "leaderboard.md").read_text()
    page = (copy / "README.md").read_text()
    assert page == (GPU_RESULTS / "README.md").read_text()  # the committed page is the generated one, untouched
    assert "`bilstm` 0 of 30 fits recorded" in page and "| cnn " in page


def test_a_results_page_follows_the_records(tmp_path):
    """Drop a model's records: the generated page says it is missing and its row leaves the comparison."""
    import json

    copy = tmp_path / "gpu"
    copy.mkdir()
    kept = [line for line in (GPU_RESULTS / "records.jsonl").read_text().splitlines()
            if json.loads(line)["model"] != "gru"]
    (copy / "records.jsonl").write_text("\n".join(kept) + "\n")
    (tmp_path / "full").mkdir()
    shutil.copy(GPU_RESULTS.parent / "full" / "records.jsonl", tmp_path / "full")
    assert main(["report", "--suite", "gpu", "--results-dir", str(tmp_path)]) == 0
    page = (copy / "README.md").read_text()
    assert "`gru` 0 of 30 fits recorded" in page and "| gru " not in page
    assert "deep_models_timings.json is not in this checkout" in page
