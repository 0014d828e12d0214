"""`bench download`: fetch an official corpus archive, resume a broken transfer, verify, unpack."""

from __future__ import annotations

import http.client
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ser_models.corpora import corpus_info
from ser_models.corpora.registry import audio_files
from ser_models.files import file_digest


class DownloadError(RuntimeError):
    """A download that failed or did not verify; the message says what to do."""


@dataclass(frozen=True)
class Archive:
    corpus: str
    url: str
    filename: str
    size: int | None  # bytes, when known
    md5: str | None  # when known
    expected_files: int  # audio files after unpacking


# The official distributions (sizes and checksums as listed by the hosting record).
ARCHIVES = {
    "ravdess": Archive(
        corpus="ravdess",
        url="https://zenodo.org/record/1188976/files/Audio_Speech_Actors_01-24.zip?download=1",
        filename="Audio_Speech_Actors_01-24.zip", size=208_468_073, md5="bc696df654c87fed845eb13823edef8a",
        expected_files=1440,
    ),
    # The corpus website publishes no size or checksum: pass --md5 to check one; the file count is checked.
    "emodb": Archive(
        corpus="emodb", url="http://emodb.bilderbar.info/download/download.zip", filename="emodb-download.zip",
        size=None, md5=None, expected_files=535,
    ),
}
CHUNK = 1 << 16
SCHEMES = ("http", "https", "ftp", "file")  # what urllib fetches


def _fetch(url: str, part: Path, progress: bool | None, timeout: float) -> None:
    """Append the rest of `url` to `part`, asking the server for the missing range only."""
    have = part.stat().st_size if part.exists() else 0
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme and scheme not in SCHEMES:  # a retry cannot help: say so instead of "run again to resume"
        raise DownloadError(f"{url!r}: cannot fetch a {scheme}:// address; give an {', '.join(SCHEMES[:-1])} "
                            f"or {SCHEMES[-1]} URL")
    try:
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    except ValueError as error:  # no scheme, e.g. a bare host name
        raise DownloadError(f"{url!r} is not a URL ({error}); give a full one, e.g. https://host/file.zip") from error
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if have and response.status != 206:  # the server ignored the range: start over
                have = 0
            total = response.headers.get("Content-Length")
            total = int(total) + have if total is not None else None
            with open(part, "ab" if have else "wb") as stream, tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=part.name,
                disable=None if progress is None else not progress,
            ) as bar:
                while block := response.read(CHUNK):
                    stream.write(block)
                    bar.update(len(block))
            if total is not None and part.stat().st_size < total:
                raise DownloadError(f"transfer of {url} broke off at {part.stat().st_size} of {total} bytes; "
                                    "run the same command again to resume")
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # range not satisfiable: the file is already complete
            return
        raise DownloadError(f"{url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError, OSError) as error:
        if isinstance(error, DownloadError):
            raise
        raise DownloadError(f"transfer of {url} failed ({error}); run the same command again to resume "
                            f"({part.stat().st_size if part.exists() else 0} bytes kept in {part})") from error


def _verify(path: Path, size: int | None, md5: str | None) -> None:
    actual = path.stat().st_size
    if size is not None and actual != size:
        path.unlink()
        raise DownloadError(f"{path.name} has {actual} bytes, expected {size}; removed, run the command again")
    if md5 is not None and file_digest(path, "md5") != md5.lower():
        path.unlink()
        raise DownloadError(f"{path.name} does not match its MD5 checksum {md5}; the damaged file was removed, "
                            "run the command again")


def _unpack(archive_path: Path, target: Path, expected_files: int) -> None:
    """Unzip into a temporary folder next to `target`, check the file count, then move into place."""
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".unpack-") as tmp:
        try:
            with zipfile.ZipFile(archive_path) as zipped:
                root = Path(tmp).resolve()
                for member in zipped.namelist():
                    if not (root / member).resolve().is_relative_to(root):
                        raise DownloadError(f"{archive_path.name} holds an unsafe path {member!r}")
                zipped.extractall(root)
        except zipfile.BadZipFile as error:
            archive_path.unlink()
            raise DownloadError(f"{archive_path.name} is not a valid zip archive ({error}); removed, run again") \
                from error
        found = audio_files(Path(tmp))
        if len(found) != expected_files:
            raise DownloadError(f"{archive_path.name} unpacked to {len(found)} audio files, expected {expected_files}")
        target.mkdir(parents=True, exist_ok=True)
        for path in found:  # keep each file's folder (Actor_NN) below the corpus folder
            destination = target / path.parent.name / path.name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), destination)


def download_corpus(name: str, to: str | Path, *, url: str | None = None, md5: str | None = None,
                    expected_files: int | None = None, progress: bool | None = None,
                    timeout: float = 60.0) -> Path:
    """Fetch, verify and unpack corpus `name` into `to/<corpus folder>`; returns that folder.

    With `url` (a mirror) the official size and checksum are not assumed; pass `md5` to check one.
    """
    if name not in ARCHIVES:
        raise DownloadError(f"no download for {name!r}; available: {', '.join(ARCHIVES)}")
    archive = ARCHIVES[name]
    official = url is None
    expected = expected_files or archive.expected_files
    to = Path(to)
    target = to / corpus_info(name).folder
    if target.is_dir() and len(audio_files(target)) == expected:
        return target
    try:
        to.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(f"cannot create the data root {to} ({error.strerror or error}); choose another --to")\
            from error
    final = to / archive.filename
    if not final.exists():
        part = final.with_name(final.name + ".part")
        _fetch(url or archive.url, part, progress, timeout)
        part.replace(final)
    _verify(final, archive.size if official else None, md5 or (archive.md5 if official else None))
    _unpack(final, target, expected)
    final.unlink()
    return target
