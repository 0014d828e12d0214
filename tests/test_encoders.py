"""Pretrained speech encoders as a feature set, on tiny random WavLM, wav2vec 2.0 and Whisper models saved offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch", reason="the encoders extra is not installed: pip install -e '.[encoders]'")
pytest.importorskip("transformers", reason="the encoders extra is not installed: pip install -e '.[encoders]'")

from fixtures.tiny_encoders import save_tiny_encoders  # noqa: E402

from bench.records import RecordStore  # noqa: E402
from ser_models import encoders  # noqa: E402
from ser_models.feature_cache import extract_features  # noqa: E402
from ser_models.features import FeatureSpec, extract_signal  # noqa: E402
from ser_models.opensmile_features import MissingExtraError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RATE = 16_000


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    return save_tiny_encoders(tmp_path_factory.mktemp("encoders"))


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def spec_of(folder: Path, **options) -> FeatureSpec:
    return FeatureSpec(feature_set="encoder", options={"model": str(folder), **options})


def noise(seconds: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.1, int(seconds * RATE)).astype(np.float32)


@pytest.mark.parametrize("name", ["wavlm", "wav2vec2", "whisper"])
def test_every_layer_pooled_over_real_frames_only(tiny, name):
    """(layers + 1) x (mean, std) x dim per file; batching with a longer file (padding) changes nothing."""
    extractor = spec_of(tiny[name], layer="all", frames_layer=2).extractor()
    assert extractor.shape == (3, 16)  # the embedding output and 2 transformer layers, 16 wide
    short, long = noise(1.0, 0), noise(2.6, 1)
    (alone, alone_frames), = extractor.extract([short], RATE, frames=True)
    (batched, batched_frames), _ = extractor.extract([short, long], RATE, frames=True)
    assert alone.shape == (3 * 2 * 16,) and np.isfinite(alone).all()
    assert alone_frames.shape == (49 if name != "whisper" else 50, 16)  # 20 ms frames of 1 s of audio
    np.testing.assert_allclose(batched, alone, atol=1e-4)
    np.testing.assert_allclose(batched_frames, alone_frames, atol=1e-4)
    stack = alone.reshape(3, 2, 16)
    np.testing.assert_allclose(stack[2, 0], alone_frames.mean(axis=0), atol=1e-5)  # layer 2's mean over the frames
    np.testing.assert_allclose(stack[2, 1], alone_frames.std(axis=0), atol=1e-5)


def test_the_layer_view_is_read_from_one_cached_stack(tiny, synthetic_manifest, tmp_path, monkeypatch):
    """`layer` chooses a view of one cache entry: average (default), one layer or all, with no second extraction."""
    manifest = synthetic_manifest.iloc[:6]
    full = extract_features(manifest, spec_of(tiny["wavlm"], layer="all"), cache_dir=tmp_path, progress=False)
    assert full.functionals.shape == (6, 96) and full.functional_names[0] == "layer0.mean0"
    runs = []
    original = encoders.SpeechEncoder.extract
    monkeypatch.setattr(encoders.SpeechEncoder, "extract", lambda self, *a, **k: runs.append(1) or original(
        self, *a, **k))
    average = extract_features(manifest, spec_of(tiny["wavlm"]), cache_dir=tmp_path, progress=False)
    second = extract_features(manifest, spec_of(tiny["wavlm"], layer=1), cache_dir=tmp_path, progress=False)
    assert runs == []  # both views read the cached stacks
    stacks = full.functionals.reshape(6, 3, 32)
    np.testing.assert_allclose(average.functionals, stacks.mean(axis=1), atol=1e-6)
    np.testing.assert_allclose(second.functionals, stacks[:, 1], atol=1e-6)
    assert spec_of(tiny["wavlm"]).key() != spec_of(tiny["wavlm"], layer=1).key()  # records tell the views apart
    one = extract_signal(noise(1.0, 3), spec_of(tiny["wavlm"], layer=1))  # bench predict's path: the same view
    assert one.functionals.shape == (32,)


def test_the_weights_key_the_cache_not_the_folder_or_device(tiny, tmp_path):
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for file in tiny["wav2vec2"].iterdir():
        (moved / file.name).write_bytes(file.read_bytes())
    assert spec_of(moved).key() == spec_of(tiny["wav2vec2"], device="cpu", batch_size=2).key()
    assert spec_of(tiny["wavlm"]).key() != spec_of(tiny["wav2vec2"]).key()


def test_long_files_are_chunked_and_short_ones_refused_with_the_reason(tiny, tmp_path):
    extractor = spec_of(tiny["wav2vec2"], chunk_seconds=1.0, frames_layer=1).extractor()
    (_, frames), = extractor.extract([noise(3.0, 4)], RATE, frames=True)
    assert frames.shape[0] == 3 * 49  # three 1 s pieces, each encoded alone, joined in time
    import soundfile as sf

    sf.write(tmp_path / "click.wav", noise(0.01, 5), RATE)
    sf.write(tmp_path / "fine.wav", noise(1.0, 6), RATE)
    manifest = pd.DataFrame({"path": [str(tmp_path / "click.wav"), str(tmp_path / "fine.wav")]})
    found = extract_features(manifest, FeatureSpec(feature_set="encoder", trim_db=None,
                                                   options={"model": str(tiny["wav2vec2"])}),
                             cache_dir=tmp_path / "cache", progress=False)
    assert len(found.manifest) == 1 and "too short" in found.skipped[0]["reason"]  # the audio loader's 0.1 s floor
    with pytest.raises(ValueError, match="shorter than the encoder's 0.025 s window"):  # a signal given directly
        extractor.extract([noise(0.01, 5)], RATE)


def test_a_model_that_cannot_be_fetched_says_what_to_do(tmp_path):
    with pytest.raises(encoders.EncoderUnavailableError, match="hf download no-such-lab/encoder --local-dir DIR"):
        spec_of("no-such-lab/encoder").check_available()
    with pytest.raises(encoders.EncoderUnavailableError, match="does not exist"):
        spec_of(tmp_path / "missing").check_available()
    with pytest.raises(encoders.EncoderUnavailableError, match="no config.json"):
        spec_of(tmp_path).check_available()
    with pytest.raises(ValueError, match="layer must be a layer number or one of"):
        spec_of(tmp_path, layer="last").extractor()


def test_a_missing_extra_names_the_install_command(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install -e '.\[encoders\]'"):
        spec_of(tiny["wavlm"], chunk_seconds=7.0).check_available()


SUITE = """
description = "tiny encoder, end to end"
corpora = ["synthetic"]
models = ["layer_weighted"]
seeds = [0]

[protocol_options]
n_folds = 3

[corpus_options.synthetic]
seed = 0
n_speakers = 6
utterances_per_emotion = 3
emotions = ["angry", "happy", "neutral", "sad"]

[features]
feature_set = "encoder"

[feature_options.encoder]
model = "{model}"
layer = "{layer}"

[model_params.layer_weighted]
epochs = 6
refit_networks = 1
"""


def write_suite(folder: Path, model: Path, layer: str = "all") -> Path:
    suite = folder / "enc.toml"
    suite.write_text(textwrap.dedent(SUITE).format(model=model, layer=layer))
    return suite


def bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SER_BENCH_CACHE": str(cwd / "cache"), "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)


def test_the_layer_head_reaches_the_leaderboard_and_predicts_from_the_command_line(tiny, tmp_path):
    """`bench run` then `bench predict` with the layer-weighting head on every layer of a tiny WavLM, offline."""
    suite = write_suite(tmp_path, tiny["wavlm"])
    run = bench("run", "--suite", str(suite), "--results-dir", "results", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = pd.DataFrame(RecordStore(tmp_path / "results" / "enc").load())
    assert set(rows["model"]) == {"layer_weighted"} and len(rows) == 3
    assert rows["features"].map(lambda f: dict(f["options"])["layer"]).eq("all").all()
    assert "| layer_weighted" in (tmp_path / "results" / "enc" / "leaderboard.md").read_text()
    saved = json.loads((tmp_path / "results" / "enc" / "models" / "synthetic.json").read_text())
    assert saved["model"] == "layer_weighted" and saved["feature_spec"]["feature_set"] == "encoder"
    audio = sorted((tmp_path / "cache" / "corpora").rglob("*.wav"))[:2]
    predicted = bench("predict", "--suite", str(suite), "--results-dir", "results", *map(str, audio), cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert audio[0].name in predicted.stdout and "Traceback" not in predicted.stderr


@pytest.mark.parametrize("name", ["wavlm", "wav2vec2", "whisper"])
def test_each_encoder_runs_a_suite_reuses_its_cache_and_predicts(tiny, tmp_path, monkeypatch, name):
    """logreg on the layer average, run twice (the second extracts and trains nothing), then predict."""
    from bench.runner import RunOptions, run_suite
    from bench.saved_models import predict_files
    from bench.suite import load_suite

    suite = load_suite(str(write_suite(tmp_path, tiny[name], layer="average")))
    options = {"suite": suite, "cache_dir": tmp_path / "cache", "results_dir": tmp_path / "results",
               "progress": False, "models": ("logreg",), "jobs": 1}
    first = run_suite(RunOptions(**options))
    assert first.trained == 3
    runs = []
    monkeypatch.setattr(encoders.SpeechEncoder, "extract", lambda *a, **k: runs.append(1))
    second = run_suite(RunOptions(**options))
    assert second.trained == 0 and runs == []  # every feature from the cache, every fit from the records
    monkeypatch.undo()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    audio = sorted((tmp_path / "cache" / "corpora").rglob("*.wav"))[:2]
    found = predict_files(next((tmp_path / "results" / "enc" / "models").glob("*.joblib")), list(map(str, audio)))
    assert found["error"].isna().all() and found["emotion"].isin(["angry", "happy", "neutral", "sad"]).all()


def test_the_layer_head_refuses_a_single_layer_view(tiny, synthetic_manifest, tmp_path):
    from ser_models.model_inputs import ModelInputError, ModelInputs

    features = extract_features(synthetic_manifest.iloc[:4], spec_of(tiny["wavlm"]), cache_dir=tmp_path,
                                progress=False)
    with pytest.raises(ModelInputError, match='layer = "all"'):
        ModelInputs(features).test_set("layer_weighted", np.arange(4))


def test_an_ensemble_takes_encoder_members(tiny):
    from bench.suite import parse_suite

    suite = parse_suite({"corpora": ["synthetic"], "models": ["stacking"],
                         "feature_options": {"encoder": {"model": str(tiny["wav2vec2"])}},
                         "model_params": {"stacking": {"members": ["logreg@encoder", "svm"]}}}, default_name="mixed")
    assert suite.model_params["stacking"]["members"] == ["logreg@encoder", "svm"]
    assert dict(suite.spec_for("encoder").options)["model"] == str(tiny["wav2vec2"])
