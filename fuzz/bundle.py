"""Failure bundles: the shareable, replayable on-disk form of one minimized failure.

A bundle is a folder `<slug>-<hash8>/` holding `bundle.json` (format_version 1, see
`schemas/bundle.schema.json`), `media/<sha256>.<ext>`, a ready-to-paste `ISSUE.md`
and a standalone `repro.py`, plus a `.tar.gz` twin beside it for attaching upstream.
Bundles are read back from strangers' uploads, so loading is defensive throughout;
every write is atomic (temp file or folder, then `os.replace`), so readers never see
half a bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from fuzz import __version__
from fuzz.bundle_triage import BundleTriage
from fuzz.model import Failure, Scenario, Trace, sha256_hex
from fuzz.safetar import ArchiveError, ArchiveLimits, extract_tar_gz

BUNDLE_FORMAT_VERSION = 1
BUNDLE_JSON = "bundle.json"
MAX_JSON_BYTES = 32 * 1024 * 1024
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "bundle.schema.json"


class BundleError(ValueError):
    """A bundle that cannot be trusted or understood; the message says why."""


class Reproduced(NamedTuple):
    """The failure's signature showed up in `k` of `n` runs."""

    k: int
    n: int


@dataclass(frozen=True)
class Bundle:
    """A minimized failing scenario with its evidence and provenance.

    `trace` is the evidence from the minimized run; `target` is the server's identity
    (/version, model id, max_model_len, flags when known); `fuzzer` holds the vlfuzz
    version and seed (see `fuzzer_info`); `triage` a person's verdict, when someone
    gave one. `path` is where it was loaded from."""

    scenario: Scenario
    failure: Failure
    trace: Trace
    reproduced: Reproduced
    target: Mapping[str, Any]
    fuzzer: Mapping[str, Any]
    original_request_count: int
    triage: BundleTriage | None = None
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        k, n = self.reproduced
        if not 0 <= k <= n:
            raise ValueError(f"reproduced must satisfy 0 <= k <= n, got {k}/{n}")
        object.__setattr__(self, "reproduced", Reproduced(int(k), int(n)))

    @property
    def signature(self) -> str:
        return self.failure.signature

    @property
    def name(self) -> str:
        return bundle_dirname(self.signature)

    def to_json(self) -> dict[str, Any]:
        """bundle.json's content: everything except the media bytes."""
        doc = {"format_version": BUNDLE_FORMAT_VERSION, "failure": self.failure.to_json(),
               "scenario": self.scenario.to_json(), "trace": self.trace.to_json(),
               "reproduced": {"k": self.reproduced.k, "n": self.reproduced.n},
               "target": dict(self.target), "fuzzer": dict(self.fuzzer),
               "original_request_count": self.original_request_count,
               "media_files": {h: media_filename(h, m.data)
                               for h, m in sorted(self.scenario.media.items())}}
        if self.triage is not None:
            doc["triage"] = self.triage.to_json()
        return doc

    @classmethod
    def from_json(cls, d: Mapping[str, Any], media_bytes: Mapping[str, bytes],
                  path: Path | None = None) -> Bundle:
        r = d["reproduced"]
        triage = BundleTriage.from_json(d["triage"]) if d.get("triage") is not None else None
        return cls(scenario=Scenario.from_json(d["scenario"], media_bytes),
                   failure=Failure.from_json(d["failure"]), trace=Trace.from_json(d["trace"]),
                   reproduced=Reproduced(r["k"], r["n"]), target=d["target"],
                   fuzzer=d["fuzzer"], original_request_count=d["original_request_count"],
                   triage=triage, path=path)


def target_model(target: Mapping[str, Any]) -> str | None:
    """The model id the failure was found on (`fetch_target_info` calls it model_id)."""
    model = target.get("model_id") or target.get("model")
    return model if isinstance(model, str) and model else None


def fuzzer_info(seed: int | None = None, **extra: Any) -> dict[str, Any]:
    """The `fuzzer` dict a bundle should carry: which vlfuzz wrote it, from which seed."""
    return {"vlfuzz_version": __version__, "seed": seed, **extra}


def bundle_dirname(signature: str) -> str:
    """Readable and collision-free: a slug of the signature plus 8 hex of its sha256."""
    slug = re.sub(r"[^a-z0-9]+", "-", signature.lower()).strip("-")[:60].rstrip("-")
    digest = hashlib.sha256(signature.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{slug or 'failure'}-{digest}"


_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpg"), (b"GIF8", "gif"),
          (b"BM", "bmp"), (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"))


def media_filename(sha256: str, data: bytes) -> str:
    """`media/<sha256>.<ext>`, the extension sniffed from the bytes (the claimed MIME
    type may be deliberately wrong), so the file opens in the right viewer."""
    ext = "bin"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        ext = "webp"
    else:
        ext = next((e for magic, e in _MAGIC if data.startswith(magic)), ext)
    return f"media/{sha256}.{ext}"


def validate_json(doc: Any) -> None:
    """Raise BundleError unless `doc` matches schemas/bundle.schema.json.

    When the schema file is not installed (non-editable install) only the structural
    checks of `Bundle.from_json` apply."""
    if not SCHEMA_PATH.is_file():
        return
    import jsonschema  # lazy: the pytest plugin imports this module in every run

    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(doc))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise BundleError(f"bundle.json does not match the bundle schema at {where}: "
                          f"{error.message[:300]}")


def _stage(bundle: Bundle, folder: Path) -> None:
    """Write the bundle's files into the new, empty `folder`."""
    from fuzz.issue import render_issue
    from fuzz.repro_template import render_repro

    doc = bundle.to_json()
    validate_json(doc)
    (folder / "media").mkdir(parents=True)
    (folder / BUNDLE_JSON).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    for h, rel in doc["media_files"].items():
        (folder / rel).write_bytes(bundle.scenario.media[h].data)
    (folder / "ISSUE.md").write_text(render_issue(bundle), encoding="utf-8", errors="replace")
    (folder / "repro.py").write_text(render_repro(bundle), encoding="utf-8")


def _tar(folder: Path, archive: Path) -> None:
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder, arcname=folder.name, filter=_anonymise)


def write_bundle(bundle: Bundle, parent_dir: Path) -> Path:
    """Write the bundle folder and its .tar.gz into `parent_dir`; return the folder.

    Built in a temp dir under `parent_dir` and moved into place, replacing any bundle
    with the same signature, so readers never see a half-written bundle."""
    parent_dir = Path(parent_dir)
    parent_dir.mkdir(parents=True, exist_ok=True)
    name = bundle.name
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=parent_dir))
    try:
        stage = tmp / name
        _stage(bundle, stage)
        archive = tmp / (name + ".tar.gz")
        _tar(stage, archive)
        final = parent_dir / name
        if final.exists():
            os.replace(final, tmp / "previous")
        os.replace(stage, final)
        os.replace(archive, parent_dir / (name + ".tar.gz"))
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def pack_bundle(bundle: Bundle, out_dir: Path) -> Path:
    """Write only `<name>.tar.gz` into `out_dir` (ISSUE.md and repro.py rendered by this
    vlfuzz) and return its path: the one file to attach to an upstream issue."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{bundle.name}.", dir=out_dir) as td:
        stage = Path(td) / bundle.name
        _stage(bundle, stage)
        _tar(stage, Path(td) / "packed.tar.gz")
        final = out_dir / (bundle.name + ".tar.gz")
        os.replace(Path(td) / "packed.tar.gz", final)
    return final


def _replace_file(path: Path, data: bytes) -> None:
    """Write `path` atomically: a temp file beside it, then `os.replace`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def refresh_bundle(folder: Path) -> Bundle:
    """Re-render a bundle folder's ISSUE.md and repro.py with this vlfuzz (bundle.json
    and media untouched), and its .tar.gz twin when there is one."""
    from fuzz.issue import render_issue
    from fuzz.repro_template import render_repro

    folder = _editable_folder(folder)
    bundle = load_bundle(folder)
    _replace_file(folder / "ISSUE.md", render_issue(bundle).encode("utf-8", "replace"))
    _replace_file(folder / "repro.py", render_repro(bundle).encode("utf-8"))
    twin = folder.with_name(folder.name + ".tar.gz")
    if twin.is_file():
        with tempfile.TemporaryDirectory(prefix=f".{folder.name}.", dir=folder.parent) as td:
            _tar(folder, Path(td) / "twin.tar.gz")
            os.replace(Path(td) / "twin.tar.gz", twin)
    return bundle


def set_triage(folder: Path, triage: BundleTriage) -> Bundle:
    """Record `triage` in a bundle folder: bundle.json is rewritten atomically (and only
    its `triage` section changes), after validation against the schema; then ISSUE.md,
    repro.py and a .tar.gz twin are refreshed to say so."""
    folder = _editable_folder(folder)
    load_bundle(folder)  # the whole bundle must be sound before it is edited
    doc = json.loads((folder / BUNDLE_JSON).read_text(encoding="utf-8"))
    doc["triage"] = triage.to_json()
    try:
        validate_json(doc)
    except BundleError as e:
        raise BundleError(f"{folder}: {e}") from None
    _replace_file(folder / BUNDLE_JSON, (json.dumps(doc, indent=1) + "\n").encode("utf-8"))
    return refresh_bundle(folder)


def _editable_folder(folder: Path) -> Path:
    folder = Path(folder)
    if not (folder / BUNDLE_JSON).is_file():
        what = "an archive; unpack it first" if is_archive(folder) else "not a bundle folder"
        raise BundleError(f"{folder}: {what} (no {BUNDLE_JSON} to edit)")
    return folder


def _anonymise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if info.isdir() else 0o644
    return info


def is_archive(path: Path) -> bool:
    return path.name.endswith(ARCHIVE_SUFFIXES)


def _archive_stem(path: Path) -> str:
    return next(path.name[:-len(s)] for s in ARCHIVE_SUFFIXES if path.name.endswith(s))


def find_bundles(path: Path) -> list[Path]:
    """Bundles at `path`: itself if it is a bundle folder or .tar.gz, else every bundle
    folder and every .tar.gz without a folder twin below it, sorted."""
    path = Path(path)
    if not path.exists():
        raise BundleError(f"{path}: no such file or directory")
    if path.is_file():
        if not is_archive(path):
            raise BundleError(f"{path}: not a bundle (.tar.gz) file")
        return [path]
    if (path / BUNDLE_JSON).is_file():
        return [path]
    found: list[Path] = []
    for root, dirs, files in os.walk(path):
        here = Path(root)
        bundle_dirs = {d for d in dirs if (here / d / BUNDLE_JSON).is_file()}
        found += [here / d for d in bundle_dirs]
        found += [here / f for f in files
                  if is_archive(here / f) and _archive_stem(here / f) not in bundle_dirs]
        dirs[:] = sorted(d for d in dirs if d not in bundle_dirs and not d.startswith("."))
    return sorted(found)


def load_bundle(path: Path, *, limits: ArchiveLimits = ArchiveLimits(),
                max_json_bytes: int = MAX_JSON_BYTES) -> Bundle:
    """Load a bundle folder or .tar.gz, or raise BundleError saying what is wrong.

    Archives are extracted only into a private temp dir, removed before returning."""
    path = Path(path)
    if path.is_dir():
        return _load_folder(path, path, limits, max_json_bytes)
    # is_dir/is_file swallow OSError, so a missing or unreadable path lands here.
    if not (path.is_file() and is_archive(path)):
        raise BundleError(f"{path}: not a bundle folder or .tar.gz file")
    with tempfile.TemporaryDirectory(prefix="vlfuzz-bundle-") as td:
        try:
            extract_tar_gz(path, Path(td), limits)
        except ArchiveError as e:
            raise BundleError(f"{path}: rejected archive: {e}") from e
        return _load_folder(_archive_root(Path(td), path), path, limits, max_json_bytes)


def _archive_root(extracted: Path, origin: Path) -> Path:
    if (extracted / BUNDLE_JSON).is_file():
        return extracted
    subdirs = [p for p in extracted.iterdir() if p.is_dir()]
    if len(subdirs) == 1 and (subdirs[0] / BUNDLE_JSON).is_file():
        return subdirs[0]
    raise BundleError(f"{origin}: archive holds no bundle.json (at its top or in one folder)")


def _read_capped(file: Path, cap: int, what: str, origin: Path) -> bytes:
    if not file.is_file():
        raise BundleError(f"{origin}: {what} is missing ({file.name})")
    try:
        if file.stat().st_size > cap:
            raise BundleError(f"{origin}: {what} is larger than {cap} bytes")
        return file.read_bytes()
    except OSError as e:
        raise BundleError(f"{origin}: cannot read {what}: {e}") from e


def _load_folder(folder: Path, origin: Path, limits: ArchiveLimits,
                 max_json_bytes: int) -> Bundle:
    raw = _read_capped(folder / BUNDLE_JSON, max_json_bytes, BUNDLE_JSON, origin)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise BundleError(f"{origin}: bundle.json is not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise BundleError(f"{origin}: bundle.json is not a JSON object")
    version = doc.get("format_version")
    if version != BUNDLE_FORMAT_VERSION:
        raise BundleError(f"{origin}: bundle format_version {version!r} is not supported "
                          f"(this vlfuzz {__version__} reads version {BUNDLE_FORMAT_VERSION})")
    try:
        validate_json(doc)
    except BundleError as e:
        raise BundleError(f"{origin}: {e}") from None
    declared = {m["sha256"] for m in doc["scenario"]["media"]}
    if declared != set(doc["media_files"]):
        raise BundleError(f"{origin}: media_files does not list exactly the scenario's media")
    media: dict[str, bytes] = {}
    for h, rel in doc["media_files"].items():
        if not rel.startswith(f"media/{h}."):
            raise BundleError(f"{origin}: media file {rel!r} is not named by its hash {h}")
        data = _read_capped(folder / rel, limits.max_member_bytes, f"media file {rel}", origin)
        if sha256_hex(data) != h:
            raise BundleError(f"{origin}: media file {rel} is corrupt (sha256 mismatch)")
        media[h] = data
    try:
        return Bundle.from_json(doc, media, path=origin)
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"{origin}: inconsistent bundle: {type(e).__name__}: {e}") from e
