"""Bad input never sinks a run, and a run killed at any moment continues to the same records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import tone, write_tone

from bench.cli import main
from bench.records import RecordStore

ROOT = Path(__file__).resolve().parents[1]

# Each bad kind: (file name in Actor_01, how to write it, words expected in its skipped.csv reason)
BAD = {
    "corrupt": ("03-01-05-02-02-02-01.wav", lambda p: p.write_bytes(b"RIFF\x00\x00garbage" * 10), "unreadable"),
    "empty file": ("03-01-05-01-02-02-01.wav", lambda p: p.write_bytes(b""), "unreadable"),
    "no samples": ("03-01-01-01-02-02-01.wav", lambda p: sf.write(p, np.zeros(0), 16_000), "empty"),
    "silent": ("03-01-01-01-02-01-01.wav", lambda p: sf.write(p, np.zeros(16_000), 16_000), "silent"),
    "shorter than a frame": ("03-01-05-01-02-01-01.wav", lambda p: sf.write(p, tone(seconds=0.003), 16_000),
                             "too short"),
    "nan samples": ("03-01-05-02-01-02-01.wav",
                    lambda p: sf.write(p, np.where(np.arange(8000) == 100, np.nan, tone(seconds=0.5)).astype("float32"),
                                       16_000, subtype="FLOAT"), "NaN"),
    "unparseable name": ("recording_final.wav", lambda p: write_tone(p), "file name"),
}
# Odd but usable: these must be used, not skipped.
ODD = {"six channels at 44.1 kHz": ("03-01-01-01-01-02-02.wav", dict(rate=44_100, channels=6)),
       "8 kHz mono": ("03-01-05-02-01-02-02.wav", dict(rate=8_000))}


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad")
    corpus = base / "data" / "ravdess"
    for actor in range(1, 5):
        for emotion, freq in (("01", 150.0), ("05", 300.0)):
            for statement in ("01", "02"):
                write_tone(corpus / f"Actor_{actor:02d}" / f"03-01-{emotion}-01-{statement}-01-{actor:02d}.wav",
                           freq=freq * (1 + actor / 20))
    for name, write, _ in BAD.values():
        write(corpus / "Actor_01" / name)
    for name, kwargs in ODD.values():
        write_tone(corpus / "Actor_02" / name, **kwargs)
    suite = base / "bad.toml"
    suite.write_text('corpora = ["ravdess"]\nmodels = ["logreg"]\n')
    argv = ["run", "--suite", str(suite), "--data-root", str(base / "data"), "--jobs", "1",
            "--results-dir", str(base / "results"), "--cache-dir", str(base / "cache")]
    return base, argv


@pytest.fixture(scope="module")
def bad_run_output(bad_run):
    base, argv = bad_run
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        code = main(argv)
    return code, out.getvalue(), pd.read_csv(base / "results" / "bad" / "skipped.csv"), base


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_file_is_skipped_with_its_reason(bad_run_output, kind):
    code, stdout, skipped, base = bad_run_output
    name, _, reason = BAD[kind]
    assert code == 0
    row = skipped[skipped["path"].str.endswith(name)]
    assert len(row) == 1 and reason in row.iloc[0]["reason"], skipped.to_string()
    records = RecordStore(base / "results" / "bad").load()
    assert len(records) == 4 and all(0 <= r["uar"] <= 1 for r in records)  # the rest is measured
    assert f"{len(BAD)} files skipped" in stdout


@pytest.mark.parametrize("kind", sorted(ODD))
def test_odd_but_usable_audio_is_used(bad_run_output, kind):
    code, _, skipped, base = bad_run_output
    name, _ = ODD[kind]
    assert not skipped["path"].str.endswith(name).any()
    tested = [r for r in RecordStore(base / "results" / "bad").load() if r["test_speakers"] == ["ravdess:02"]]
    assert tested[0]["n_test"] == 6  # 4 tones + the two odd files


def test_a_corpus_with_nothing_usable_stops_the_run(tmp_path, capsys):
    (tmp_path / "ravdess" / "Actor_01").mkdir(parents=True)
    (tmp_path / "ravdess" / "Actor_01" / "03-01-05-01-01-01-01.wav").write_bytes(b"")
    code = main(["run", "--suite", "quick", "--data-root", str(tmp_path), "--results-dir", str(tmp_path / "r"),
                 "--cache-dir", str(tmp_path / "c")])
    assert code == 2 and "no usable audio" in capsys.readouterr().err


def test_missing_data_root_is_a_clear_error(tmp_path, capsys):
    assert main(["run", "--suite", "quick", "--data-root", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


KILL_SUITE = """
corpora = ["synthetic"]
models = ["logreg", "random_forest", "svm", "xgboost"]
[protocol_options]
n_folds = 3
[corpus_options.synthetic]
seed = 3
n_speakers = 12
utterances_per_emotion = 3
emotions = ["angry", "neutral", "sad"]
"""


def _records(folder: Path) -> dict[str, tuple]:
    return {r["config_hash"]: (r["uar"], r["confusion"]) for r in RecordStore(folder).load()}


def test_sigkill_mid_run_then_rerun_gives_the_same_records(tmp_path):
    suite = tmp_path / "kill.toml"
    suite.write_text(KILL_SUITE)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def command(results):
        return [sys.executable, "-m", "bench", "run", "--suite", str(suite), "--jobs", "1",
                "--results-dir", str(tmp_path / results), "--cache-dir", str(tmp_path / "cache")]

    subprocess.run(command("whole"), env=env, check=True, capture_output=True, timeout=600)
    expected = _records(tmp_path / "whole" / "kill")
    assert len(expected) == 12  # 4 models x 3 folds

    records_path = tmp_path / "cut" / "kill" / "records.jsonl"
    process = subprocess.Popen(command("cut"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if records_path.exists() and records_path.read_text().count("\n") >= 3:
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = records_path.read_text().count("\n")
    assert 3 <= written < 12, f"the kill came too late ({written} records)"

    subprocess.run(command("cut"), env=env, check=True, capture_output=True, timeout=600)
    assert _records(tmp_path / "cut" / "kill") == expected
    lines = records_path.read_text().splitlines()
    assert all(json.loads(line) for line in lines if line.strip())


def test_sigterm_stops_with_the_resume_message(tmp_path):
    suite = tmp_path / "term.toml"
    suite.write_text(KILL_SUITE)
    records_path = tmp_path / "r" / "term" / "records.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "--suite", str(suite), "--jobs", "1", "--results-dir",
         str(tmp_path / "r"), "--cache-dir", str(tmp_path / "cache")],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and not records_path.exists():
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and "run the same command again to continue" in err
    assert all(json.loads(line) for line in records_path.read_text().splitlines())  # every line whole
