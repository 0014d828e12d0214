"""`bench predict` with a model a smoke run saved, and `bench download` against a local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import threading
import zipfile
from pathlib import Path

import pytest
from conftest import tone, write_tone

from bench.cli import main
from ser_models.corpora import load_corpus


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    base = tmp_path_factory.mktemp("predict")
    assert main(["run", "--suite", "smoke", "--model", "logreg", "svm", "--jobs", "1", "--results-dir", str(base),
                 "--cache-dir", str(base / "cache")]) == 0
    return base


def test_run_saves_the_refit_best_model(smoke_results):
    meta = json.loads((smoke_results / "smoke" / "models" / "synthetic.json").read_text())
    assert meta["model"] in ("logreg", "svm") and 0.2 < meta["cross_validated_uar"] <= 1
    assert meta["trained_on_utterances"] > 0 and (smoke_results / "smoke" / "models" / "synthetic.joblib").exists()


def test_predict_prints_emotions_and_probabilities(smoke_results, tmp_path, capsys):
    good = write_tone(tmp_path / "new.wav", freq=180.0)
    silent = tmp_path / "silent.wav"
    import soundfile as sf

    sf.write(silent, tone() * 0, 16_000)
    capsys.readouterr()
    assert main(["predict", str(good), str(silent), "--results-dir", str(smoke_results)]) == 0
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if "new.wav" in line]
    assert len(lines) == 1
    cells = [c.strip() for c in lines[0].strip("|").split("|")]
    probabilities = [float(c) for c in cells[2:]]
    assert cells[1] in ("angry", "happy", "neutral", "sad", "fearful") and sum(probabilities) == pytest.approx(1, 1e-2)
    assert "silent.wav" in err and "silent" in err


def test_predict_reads_a_folder_and_names_missing_files_and_folders(smoke_results, tmp_path, capsys):
    for name in ("a.wav", "deeper/b.FLAC"):
        write_tone(tmp_path / "in" / name, freq=200.0)
    (tmp_path / "in" / "notes.txt").write_text("not audio")
    (tmp_path / "empty").mkdir()
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "in"), str(tmp_path / "gone.wav"), str(tmp_path / "empty"),
                 "--results-dir", str(smoke_results)]) == 0
    out, err = capsys.readouterr()
    assert [line.split("|")[1].strip() for line in out.splitlines() if line.startswith(f"| {tmp_path}")] == \
        [str(tmp_path / "in" / "a.wav"), str(tmp_path / "in" / "deeper" / "b.FLAC")]
    assert f"skipped {tmp_path / 'gone.wav'}: no such file" in err
    assert f"skipped {tmp_path / 'empty'}: a folder with no .wav or .flac file under it" in err


def test_a_damaged_saved_model_or_meta_is_a_one_line_error_and_saved_again_by_the_next_run(
        smoke_results, tmp_path, capsys, caplog):
    import shutil

    results = tmp_path / "results"
    shutil.copytree(smoke_results, results, ignore=shutil.ignore_patterns("cache"))
    model = results / "smoke" / "models" / "synthetic.joblib"
    model.write_bytes(model.read_bytes()[:500])
    wav = write_tone(tmp_path / "a.wav")
    capsys.readouterr()
    assert main(["predict", str(wav), "--results-dir", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: the saved model {model} cannot be read") and "Traceback" not in err
    common = ["--jobs", "1", "--results-dir", str(results), "--cache-dir", str(smoke_results / "cache")]
    assert main(["run", "--suite", "smoke", "--model", "logreg", "svm", *common]) == 0  # as the error says
    assert "synthetic.joblib is damaged (its bytes are not the ones saved): it is saved again" in caplog.text
    assert main(["predict", str(wav), "--results-dir", str(results)]) == 0
    model.with_suffix(".json").write_text("{")
    assert main(["predict", str(wav), "--results-dir", str(results)]) == 2
    assert "synthetic.json is damaged and is ignored" in caplog.text
    assert "no saved model under" in capsys.readouterr().err
    assert main(["run", "--suite", "smoke", "--model", "logreg", "svm", *common]) == 0
    assert main(["predict", str(wav), "--results-dir", str(results)]) == 0


def test_predict_without_a_saved_model_lists_what_to_do(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "x.wav"), "--results-dir", str(tmp_path)]) == 2
    assert "run `python -m bench run` first" in capsys.readouterr().err


def test_predict_unknown_model_lists_the_saved_ones(smoke_results, tmp_path, capsys):
    write_tone(tmp_path / "a.wav")
    assert main(["predict", str(tmp_path / "a.wav"), "--model", "nope", "--results-dir", str(smoke_results)]) == 2
    assert "saved: synthetic" in capsys.readouterr().err


def _fixture_archive(corpus: str = "ravdess") -> bytes:
    """A small zip in the layout of the corpus' official archive (6 audio files, plus EmoDB's label files)."""
    names = {
        "ravdess": [f"Actor_{a:02d}/03-01-{e}-01-01-01-{a:02d}.wav" for a in (1, 2) for e in ("01", "05", "08")],
        "emodb": [f"wav/{s}a01{e}a.wav" for s in ("03", "08") for e in ("W", "L", "N")],
    }[corpus]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for name in names:
            audio = io.BytesIO()
            import soundfile as sf

            sf.write(audio, tone(seconds=0.4, rate=48_000), 48_000, format="WAV")
            zipped.writestr(name, audio.getvalue())
        if corpus == "emodb":
            zipped.writestr("lablaut/03a01Wa.lablaut", "not audio")
    return buffer.getvalue()


class _Server:
    """Serves one payload with Range support; the first `breaks` responses stop half way."""

    def __init__(self, payload: bytes, breaks: int = 0):
        self.payload, self.breaks, self.ranges = payload, breaks, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                server.ranges.append(start)
                body = server.payload[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.breaks > 0:
                    server.breaks -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/Audio_Speech_Actors_01-24.zip"

    def close(self):
        self.httpd.shutdown()


ARCHIVE_NAMES = {"ravdess": "Audio_Speech_Actors_01-24.zip", "emodb": "emodb-download.zip"}
EXPECTED = {"ravdess": 1440, "emodb": 535}


@pytest.mark.parametrize("corpus", ["ravdess", "emodb"])
def test_download_resumes_verifies_and_unpacks(tmp_path, capsys, corpus):
    payload = _fixture_archive(corpus)
    server = _Server(payload, breaks=1)
    try:
        argv = ["download", corpus, "--to", str(tmp_path), "--url", server.url, "--expect-files", "6",
                "--md5", hashlib.md5(payload).hexdigest()]
        assert main(argv) == 2  # the transfer broke off
        assert "run the same command again to resume" in capsys.readouterr().err
        part = tmp_path / f"{ARCHIVE_NAMES[corpus]}.part"
        kept = part.stat().st_size
        assert 0 < kept < len(payload)
        assert main(argv) == 0
        assert server.ranges == [0, kept]  # the second request asked only for the missing bytes
    finally:
        server.close()
    manifest = load_corpus(corpus, tmp_path / corpus)
    assert len(manifest) == 6 and manifest["speaker"].nunique() == 2
    assert not list(tmp_path.glob("*.zip*"))  # the archive is removed once unpacked


@pytest.mark.parametrize("corpus", ["ravdess", "emodb"])
def test_download_with_a_wrong_checksum_unpacks_nothing(tmp_path, capsys, corpus):
    server = _Server(_fixture_archive(corpus))
    try:
        code = main(["download", corpus, "--to", str(tmp_path), "--url", server.url, "--md5", "0" * 32,
                     "--expect-files", "6"])
    finally:
        server.close()
    assert code == 2 and "MD5" in capsys.readouterr().err
    assert not (tmp_path / corpus).exists() and not list(tmp_path.glob("*.zip"))


@pytest.mark.parametrize("corpus", ["ravdess", "emodb"])
def test_download_with_the_wrong_file_count_is_refused(tmp_path, capsys, corpus):
    server = _Server(_fixture_archive(corpus))
    try:
        code = main(["download", corpus, "--to", str(tmp_path), "--url", server.url])  # expects the full corpus
    finally:
        server.close()
    assert code == 2 and f"expected {EXPECTED[corpus]}" in capsys.readouterr().err
    assert not (tmp_path / corpus).exists()


def test_unknown_download_lists_the_available_ones(tmp_path, capsys):
    assert main(["download", "savee", "--to", str(tmp_path)]) == 2
    assert "available: ravdess, emodb" in capsys.readouterr().err
    assert Path(tmp_path).exists()


def test_download_with_a_bare_word_for_url_or_an_uncreatable_root_is_one_line(tmp_path, capsys):
    assert main(["download", "emodb", "--to", str(tmp_path), "--url", "mirror-host"]) == 2
    err = capsys.readouterr().err
    assert "'mirror-host' is not a URL" in err and "Traceback" not in err
    assert main(["download", "emodb", "--to", str(tmp_path), "--url", "ftp2://mirror/emodb.zip"]) == 2
    err = capsys.readouterr().err
    assert "cannot fetch a ftp2:// address" in err and "run the same command again" not in err
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["download", "emodb", "--to", str(blocker / "data")]) == 2
    err = capsys.readouterr().err
    assert f"cannot create the data root {blocker / 'data'}" in err and "Traceback" not in err
