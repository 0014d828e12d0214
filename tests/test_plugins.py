"""The extension API: a user's model, feature set and precomputed features reach the leaderboard unedited."""

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

from bench.plan import job_key
from bench.records import RecordStore
from bench.runner import RunOptions, run_suite
from bench.suite import SuiteError, load_suite
from bench.votes import is_vote
from ser_models.extractors import FEATURES
from ser_models.feature_cache import extract_features
from ser_models.features import FeatureSpec
from ser_models.models import model_names, model_spec
from ser_models.plugins import PluginError, resolve
from ser_models.protocols import PROTOCOLS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(autouse=True, scope="module")
def registries_as_they_were():
    """What this file's plugins register is gone after it: other test files in this process see the built-ins."""
    from ser_models import plugins
    from ser_models.corpora.registry import CORPORA
    from ser_models.extractors import extractor_for
    from ser_models.models.registry import MODELS

    saved = [(registry, dict(registry._entries)) for registry in (MODELS, FEATURES, CORPORA)]
    loaded = dict(plugins._loaded)
    yield
    for registry, entries in saved:
        registry._entries.clear()
        registry._entries.update(entries)
    plugins._loaded.clear()
    plugins._loaded.update(loaded)
    sys.modules.pop("my_plugin", None)
    extractor_for.cache_clear()


def bench(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SER_BENCH_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)


def records(folder: Path) -> pd.DataFrame:
    return pd.DataFrame(RecordStore(folder).load())


def test_plugin_model_keras_model_and_feature_set_reach_the_leaderboard_and_predict(tmp_path):
    """examples/plugin_suite.toml through the command line with 2 worker processes, then `bench predict`."""
    suite = EXAMPLES / "plugin_suite.toml"
    run = bench("run", "--suite", str(suite), "--jobs", "2", "--results-dir", "results", cwd=tmp_path,
                cache=tmp_path / "cache")
    assert run.returncode == 0, run.stderr[-3000:]
    rows = records(tmp_path / "results" / "plugin_suite")
    main = rows[rows["variant"].isna()] if "variant" in rows else rows
    assert set(main["model"]) == {"pca_knn", "tiny_keras", "logreg", "svm"}
    assert (main["features"].map(lambda f: f["feature_set"]) == "mfcc_stats").all()
    assert set(rows.dropna(subset=["variant"])["model"]) == {"pca_knn", "logreg"}  # the librosa rows beside them
    assert (rows["uar"] > 0.3).all()  # 4 classes: chance is 0.25
    board = (tmp_path / "results" / "plugin_suite" / "leaderboard.md").read_text()
    assert "| pca_knn" in board and "| tiny_keras" in board
    first = next(line for line in board.splitlines() if line.startswith("| 1 ")).split("|")[2].strip()
    saved = json.loads((tmp_path / "results" / "plugin_suite" / "models" / "synthetic.json").read_text())
    feature_set = saved["feature_spec"]["feature_set"]
    assert first == saved["model"] + ("" if feature_set == "mfcc_stats" else f" · {feature_set}")  # the best row
    audio = sorted((tmp_path / "cache" / "corpora").rglob("*.wav"))[:2]
    predicted = bench("predict", "--suite", str(suite), "--results-dir", "results", *map(str, audio), cwd=tmp_path,
                      cache=tmp_path / "cache")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert audio[0].name in predicted.stdout and "Traceback" not in predicted.stderr


def test_a_plugin_runs_on_a_dask_cluster_as_locally(tmp_path):
    """Dask worker processes load the suite's plugin before their first job; their records equal a local run's."""
    distributed = pytest.importorskip("distributed")
    suite = load_suite(str(EXAMPLES / "plugin_suite.toml"))
    options = {"suite": suite, "cache_dir": tmp_path / "c", "progress": False, "models": ("pca_knn", "logreg"),
               "save_models": False}
    local = run_suite(RunOptions(**options, results_dir=tmp_path / "local", jobs=1))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        remote = run_suite(RunOptions(**options, results_dir=tmp_path / "dask", scheduler=cluster.scheduler_address))

    def uars(summary):
        return {r["config_hash"]: (r["uar"], r["confusion"]) for r in RecordStore(summary.folder).load()}

    assert remote.trained == local.trained == 12 and uars(remote) == uars(local)


def test_precomputed_features_reach_the_leaderboard_and_bad_rows_are_skipped_with_reasons(tmp_path):
    made = subprocess.run([sys.executable, str(EXAMPLES / "make_precomputed.py"), "--out", "features.npz"],
                          cwd=tmp_path, env={**os.environ, "SER_BENCH_CACHE": str(tmp_path / "cache"),
                                             "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-2000:]
    suite_file = tmp_path / "pre.toml"
    suite_file.write_text((EXAMPLES / "precomputed_suite.toml").read_text()
                          .replace('"precomputed_features.npz"', '"features.npz"')
                          .replace('"my_plugin.py"', json.dumps(str(EXAMPLES / "my_plugin.py"))))
    with np.load(tmp_path / "features.npz") as data:
        table = {name: data[name] for name in data.files}
    table["functionals"][3] = np.nan  # a damaged row, and a file with no row at all
    np.savez(tmp_path / "features.npz", **{k: (v[1:] if k == "paths" or k == "functionals" else v)
                                           for k, v in table.items()})
    run = bench("run", "--suite", str(suite_file), "--jobs", "2", "--results-dir", "results", "--model", "logreg",
                cwd=tmp_path, cache=tmp_path / "cache")
    assert run.returncode == 0, run.stderr[-3000:]
    skipped = pd.read_csv(tmp_path / "results" / "pre" / "skipped.csv")
    assert sorted(skipped["reason"].str.split(" ").str[:3].str.join(" ")) == ["its row in", "no row for"]
    rows = records(tmp_path / "results" / "pre")
    assert len(rows) == 3 and rows["n_test"].sum() == len(table["paths"]) - 2 and (rows["uar"] > 0.4).all()
    first_key = rows["features"].iloc[0]["key"]
    np.savez(tmp_path / "features.npz", paths=table["paths"], functionals=table["functionals"][:, :16] * 2)
    again = bench("run", "--suite", str(suite_file), "--results-dir", "results", "--model", "logreg", "--jobs", "1",
                  cwd=tmp_path, cache=tmp_path / "cache")
    assert again.returncode == 0 and "3 fits run, 0 reused" in again.stdout  # new file content: new rows
    assert records(tmp_path / "results" / "pre")["features"].map(lambda f: f["key"]).iloc[-1] != first_key


@pytest.mark.parametrize("plugin, words", [
    ("no_such_lab.plugins", "plugin 'no_such_lab.plugins' cannot be loaded: ModuleNotFoundError"),
    ("broken.py", "cannot be loaded: ZeroDivisionError: division by zero"),
])
def test_a_broken_plugin_is_one_line_before_any_work(tmp_path, plugin, words):
    (tmp_path / "broken.py").write_text("x = 1 / 0\n")
    run = bench("run", "--plugin", plugin, "--results-dir", "results", cwd=tmp_path, cache=tmp_path / "cache")
    assert run.returncode == 2 and words in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


def test_a_suite_naming_an_unknown_plugin_model_says_how_to_register_it():
    with pytest.raises(KeyError, match="registered in a plugin"):
        model_spec("my_own_model")
    with pytest.raises(SuiteError, match="cannot be loaded"):
        from bench.suite import parse_suite

        parse_suite({"corpora": ["synthetic"], "models": ["logreg"], "plugins": ["missing_module_xyz"]},
                    default_name="x")


def test_lazy_names_import_only_when_built(tmp_path, monkeypatch):
    (tmp_path / "lazy_lab.py").write_text(textwrap.dedent("""
        from sklearn.linear_model import LogisticRegression
        IMPORTED = True
        def make(C=1.0):
            return LogisticRegression(C=C)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    from ser_models.api import register_model

    register_model("lazy_logreg", defaults={"C": 0.5}, factory="lazy_lab:make")
    try:
        assert "lazy_lab" not in sys.modules
        estimator = model_spec("lazy_logreg").build(seed=3)  # a factory without `seed` is built without one
        assert estimator.C == 0.5 and sys.modules["lazy_lab"].IMPORTED
        with pytest.raises(PluginError, match="has no 'nothing'"):
            resolve("lazy_lab:nothing")
    finally:
        from ser_models.models.registry import MODELS

        del MODELS._entries["lazy_logreg"]
    assert "lazy_logreg" not in model_names()


def test_entry_point_plugins_are_found_by_name(tmp_path):
    """An installed package's `ser_bench.plugins` entry point registers its model the first time a name is missed."""
    (tmp_path / "ep_lab.py").write_text("from ser_models.api import register_model\n"
                                        "from sklearn.naive_bayes import GaussianNB\n"
                                        "register_model('gaussian_nb', factory=GaussianNB)\n")
    info = tmp_path / "ep_lab-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-lab\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[ser_bench.plugins]\nep_lab = ep_lab\n")
    code = "from ser_models.models import model_spec; print(type(model_spec('gaussian_nb').build()).__name__)"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": f"{tmp_path}:{ROOT}"},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "GaussianNB", out.stderr[-2000:]


def test_an_extractor_batch_is_retried_file_by_file_and_a_wrong_width_is_named(synthetic_manifest, tmp_path):
    class Picky:
        produces = ("functionals",)

        def __init__(self, fail_on: float = 0.0):
            self.fail_on = fail_on

        def functional_names(self):
            return ["a", "b"]

        def extract(self, signals, sample_rate, *, frames):
            if any(len(y) == self.fail_on for y in signals):
                raise ValueError("this one is odd")
            return [np.array([y.mean(), y.std()]) if len(y) % 7 else np.zeros(3) for y in signals]

    FEATURES.add("picky_test", Picky)
    try:
        subset = synthetic_manifest.head(10)
        plain = extract_features(subset, FeatureSpec(feature_set="picky_test"), cache_dir=tmp_path)
        lengths = [len(y) for y in map(_signal, subset["path"])]
        odd = [p for p, n in zip(subset["path"], lengths, strict=True) if n % 7 == 0]
        assert sorted(row["path"] for row in plain.skipped) == sorted(odd)
        assert all("functional_names() has 2" in row["reason"] for row in plain.skipped)
        spec = FeatureSpec(feature_set="picky_test", options={"fail_on": lengths[0]})
        assert spec.key() != FeatureSpec(feature_set="picky_test").key()  # options enter the cache key
        retried = extract_features(subset, spec, cache_dir=tmp_path)
        failing = {p for p, n in zip(subset["path"], lengths, strict=True) if n == lengths[0]}
        assert {row["path"] for row in retried.skipped if "odd" in row["reason"]} == failing
        assert len(retried.manifest) == 10 - len(failing | set(odd))
    finally:
        del FEATURES._entries["picky_test"]


def _signal(path):
    from ser_models.features import load_signal

    return load_signal(path, FeatureSpec(feature_set="picky_test"))


@pytest.mark.parametrize("suite", ["full", "gpu"])
def test_every_committed_record_keeps_its_config_hash(suite):
    """job_key() holds every rule of what a fit's hash covers: recomputed from each committed record's own fields,
    it gives the hash the record was stored under, so no recorded fit is trained again. (Cross-corpus folds name
    their training speakers; the other folds of these records, their test speakers.)"""
    rows = RecordStore(ROOT / "results" / suite).load()
    definition = load_suite(suite)
    keys = {(r["corpus"], r["protocol"], r["model"], r["fold"], r["seed"], r.get("target"),
             json.dumps(r.get("variant"), sort_keys=True)): r["config_hash"] for r in rows}
    for r in rows:
        corpora = r.get("corpora") or [r["corpus"]]
        options = definition.corpus_options.get(r["corpus"], {}) if len(corpora) == 1 else \
            {c: definition.corpus_options.get(c, {}) for c in corpora}
        members = [keys[(r["corpus"], r["protocol"], m, r["fold"], r["seed"], r.get("target"),
                         json.dumps(r.get("variant"), sort_keys=True))] for m in r["params"]["members"]] \
            if is_vote(r["model"]) else None
        fold = {"fold": r["fold"], "test_speakers": r["test_speakers"],
                **({"train_speakers": r["train_speakers"]} if PROTOCOLS[r["protocol"]].scope == "cross" else {})}
        searched = r["tuning"]["searched_from"] if r.get("tuning") else r["params"]  # tuned: what it searched from
        key = job_key(corpus=r["corpus"], corpus_options=options, protocol=r["protocol"], fold=fold, model=r["model"],
                      params=searched, seed=r["seed"], features=r["features"]["key"], data=r["data_fingerprint"],
                      labels=r["labels"], target=r.get("target") or "emotion", variant=r.get("variant"),
                      augment=r["augment"], model_version=r["model_version"], member_hashes=members)
        assert key == r["config_hash"], (r["corpus"], r["protocol"], r["model"], r["fold"])
        assert not r.get("tuning") or r["params"] == r["tuning"]["params"]  # the parameters it was fitted with
    assert len(rows) > 200


def test_a_plugin_corpus_is_found_under_the_data_root(synthetic_manifest, tmp_path):
    """The example's `by_folder` corpus: SPEAKER/EMOTION/*.wav, loaded by the plugin, run on speaker folds."""
    from bench.suite import parse_suite

    for row in synthetic_manifest.itertuples():
        link = tmp_path / "data" / "by_folder" / row.speaker.split(":")[1] / row.emotion / Path(row.path).name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(row.path)
    (tmp_path / "data" / "by_folder" / "stray.wav").symlink_to(synthetic_manifest["path"].iloc[0])
    suite = parse_suite({"corpora": ["found"], "models": ["logreg"], "plugins": [str(EXAMPLES / "my_plugin.py")],
                         "protocol_options": {"n_folds": 2}}, default_name="own_corpus")
    summary = run_suite(RunOptions(suite=suite, data_root=tmp_path / "data", results_dir=tmp_path / "r",
                                   cache_dir=tmp_path / "c", progress=False, save_models=False))
    rows = records(summary.folder)
    assert set(rows["corpus"]) == {"by_folder"} and rows["n_test"].sum() == len(synthetic_manifest)
    assert {s for speakers in rows["test_speakers"] for s in speakers} == \
        {"by_folder:" + s.split(":")[1] for s in synthetic_manifest["speaker"]}
    assert "not SPEAKER/EMOTION/FILE" in (summary.folder / "skipped.csv").read_text()


def test_a_features_table_with_a_label_or_text_column_is_refused(synthetic_manifest, tmp_path):
    """An emotion id exported beside the features would be the answer read as a feature: refused, as is text."""
    from ser_models.precomputed import PrecomputedError

    table = pd.DataFrame({"path": synthetic_manifest["relpath"], "f0": np.arange(len(synthetic_manifest)) * 0.1,
                          "emotion_id": 0})
    table.to_csv(tmp_path / "ok.csv", index=False)
    features = extract_features(synthetic_manifest, FeatureSpec(feature_set="precomputed",
                                                                options={"file": str(tmp_path / "ok.csv")}))
    assert features.functional_names == ["f0", "emotion_id"] and len(features.manifest) == len(synthetic_manifest)
    for column, value, words in (("emotion", 1, "labels or speakers"), ("note", "x", "not numbers")):
        table.assign(**{column: value}).to_csv(tmp_path / f"{column}.csv", index=False)
        spec = FeatureSpec(feature_set="precomputed", options={"file": str(tmp_path / f"{column}.csv")})
        with pytest.raises(PrecomputedError, match=words):
            extract_features(synthetic_manifest, spec)
