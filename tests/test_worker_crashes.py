"""numba's cache written by concurrent processes, and worker processes that die mid-extraction."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import write_tone

ROOT = Path(__file__).resolve().parents[1]

WARM = "from ser_models.feature_cache import warm_numba_cache; from ser_models.features import FeatureSpec; " \
       "warm_numba_cache(FeatureSpec())"
EXTRACT = textwrap.dedent("""
    import sys
    import pandas as pd
    from ser_models.feature_cache import extract_features
    manifest = pd.DataFrame({"path": sys.argv[1:]})
    features = extract_features(manifest, n_jobs=2, progress=False)
    assert len(features.functionals) == len(sys.argv) - 1 and not features.skipped, features.skipped
    print("extracted", len(features.functionals))
""")


def test_two_processes_filling_an_empty_numba_cache_leave_it_usable(tmp_path):
    """numba issue #10128: two processes compiling librosa's gufuncs at once once left a cache that
    segfaulted every later run. Both warm it here at the same moment; a third process (and its
    two workers) must then load it and extract."""
    numba_cache = tmp_path / "numba"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(numba_cache), "PYTHONPATH": str(ROOT)}
    racers = [subprocess.Popen([sys.executable, "-c", WARM], env=env, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    for racer in racers:
        _, err = racer.communicate(timeout=600)
        assert racer.returncode == 0, err[-2000:]
    assert any(numba_cache.rglob("*.nbc")), "numba wrote nothing to the cache folder: the test would prove nothing"
    files = [str(write_tone(tmp_path / f"t{i}.wav", freq=150.0 + 20 * i)) for i in range(6)]
    third = subprocess.run([sys.executable, "-c", EXTRACT, *files], env=env, capture_output=True, text=True,
                           timeout=600)
    assert third.returncode == 0, third.stderr[-2000:]
    assert "extracted 6" in third.stdout


KILL_ON_ONE_FILE = textwrap.dedent("""
    # Test-only: kill the worker process that reaches the file named in SER_TEST_KILL_ON (as a segfault would).
    import os
    import signal

    if os.environ.get("SER_TEST_KILL_ON"):
        import ser_models.feature_cache as feature_cache

        original = feature_cache.load_signal

        def load_signal(path, *args, **kwargs):
            if os.environ["SER_TEST_KILL_ON"] in str(path):
                os.kill(os.getpid(), signal.SIGKILL)
            return original(path, *args, **kwargs)

        feature_cache.load_signal = load_signal
""")

CRASH_SUITE = """
corpora = ["synthetic"]
models = ["logreg"]
[protocol_options]
n_folds = 2
[corpus_options.synthetic]
seed = 5
n_speakers = 4
utterances_per_emotion = 8
emotions = ["angry", "neutral", "sad"]
"""


def _entries(cache: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in cache.glob("features-*/*/*.npz")}


def test_a_worker_killed_mid_extraction_is_one_line_and_keeps_finished_work(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(KILL_ON_ONE_FILE)
    suite = tmp_path / "crash.toml"
    suite.write_text(CRASH_SUITE)
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "bench", "run", "--suite", str(suite), "--jobs", "2",
               "--results-dir", str(tmp_path / "results"), "--cache-dir", str(cache)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)])}

    # m02 sorts last: the worker dies on the last file, after the other worker has cached its batches
    crashed = subprocess.run(command, env={**env, "SER_TEST_KILL_ON": "m02_sad_07"}, capture_output=True,
                             text=True, timeout=600)
    assert crashed.returncode == 2, crashed.stderr[-3000:]
    error_lines = [line for line in crashed.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "Traceback" not in crashed.stderr, crashed.stderr[-3000:]
    assert "feature extraction" in error_lines[0] and "worker process died" in error_lines[0]
    assert "Run the same command again" in error_lines[0]
    kept = _entries(cache)
    assert 0 < len(kept) < 96, len(kept)  # 4 speakers x 3 emotions x 8: some finished, not all

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    after = _entries(cache)
    assert len(after) == 96
    assert all(after[path] == mtime for path, mtime in kept.items())  # reused, not recomputed
