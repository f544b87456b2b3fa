"""Model checkpoints from the Hugging Face Hub: one resolver for every ``-c/--checkpoint``.

:func:`resolve_checkpoint` turns what a user writes into a local safetensors file:

- a known name (``HUB_MODELS``): ``sv4d2`` or ``sv4d2_8views``, the official files of
  ``stabilityai/sv4d2.0``;
- ``hf://OWNER/REPO/path/in/repo.safetensors`` or ``hf://OWNER/REPO@REVISION/path...``
  (a revision holding ``/`` is written URL-encoded, ``refs%2Fpr%2F1``);
- anything else: a local file.

Hub files are fetched with ``huggingface_hub.hf_hub_download`` into the standard Hub cache, so
a file is downloaded once and shared with every other Hub tool. ``huggingface_hub`` reads some
environment variables once, when it is imported; this module reads ``HF_HUB_CACHE`` /
``HF_HOME`` and ``HF_HUB_OFFLINE`` again at every call and passes them explicitly, so they
count whenever they are set. ``HF_TOKEN`` is read by ``huggingface_hub`` at every call.
Every failure is one :class:`~sv4d.errors.Sv4dError` saying what to do.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from ..errors import Sv4dError
from .safetensors import check_safetensors_file

#: the official SV4D 2.0 weights: name -> (Hub repository, file in it)
HUB_MODELS: dict[str, tuple[str, str]] = {
    "sv4d2": ("stabilityai/sv4d2.0", "sv4d2.safetensors"),
    "sv4d2_8views": ("stabilityai/sv4d2.0", "sv4d2_8views.safetensors"),
}
DEFAULT_MODEL = "sv4d2"
HF_SCHEME = "hf://"
HUB_URL = "https://huggingface.co"

_TRUE = {"1", "ON", "YES", "TRUE"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # one part of a repository id (owner or name)
LOGIN_HINT = "log in with `hf auth login` (or set HF_TOKEN to an access token of that account)"


@dataclass(frozen=True)
class HubFile:
    """One file of a Hub model repository, at ``revision`` (None: the default branch)."""

    repo_id: str
    filename: str
    revision: str | None = None

    @property
    def uri(self) -> str:
        """The ``hf://`` spelling of this file."""
        rev = "" if self.revision is None else "@" + self.revision.replace("/", "%2F")
        return f"{HF_SCHEME}{self.repo_id}{rev}/{self.filename}"

    @property
    def url(self) -> str:
        """The repository's page on the Hub (where a gated licence is accepted)."""
        return f"{HUB_URL}/{self.repo_id}"


def is_repo_id(text: str) -> bool:
    """True for an ``OWNER/NAME`` Hub repository id (both parts letters, digits, ``. _ -``)."""
    parts = text.split("/")
    return len(parts) == 2 and all(_NAME.match(p) and ".." not in p and "--" not in p for p in parts)


def parse_hf_uri(uri: str) -> HubFile:
    """``hf://OWNER/REPO[@REVISION]/path/in/repo.safetensors`` -> :class:`HubFile`.

    Raises Sv4dError naming what is wrong with a malformed one.
    """
    if not uri.startswith(HF_SCHEME):
        raise Sv4dError(f"not an hf:// address: {uri!r}")
    form = "hf://OWNER/REPO/path/in/repo.safetensors or hf://OWNER/REPO@REVISION/path/in/repo.safetensors"
    parts = uri[len(HF_SCHEME) :].split("/")
    if len(parts) < 3 or not all(parts):
        raise Sv4dError(f"bad Hub address {uri!r}: expected {form}")
    owner, name, path = parts[0], parts[1], parts[2:]
    revision = None
    if "@" in name:
        name, revision = name.split("@", 1)
        revision = unquote(revision)
        if not revision or "@" in revision:
            raise Sv4dError(f"bad Hub address {uri!r}: empty or bad revision after '@' (expected {form})")
    repo_id = f"{owner}/{name}"
    if not is_repo_id(repo_id):
        raise Sv4dError(
            f"bad Hub address {uri!r}: {repo_id!r} is not a repository id "
            "(OWNER/NAME of letters, digits, '.', '_', '-')"
        )
    if any(p in (".", "..") or "\\" in p for p in path):
        raise Sv4dError(f"bad Hub address {uri!r}: the file path may not hold '.', '..' or '\\'")
    filename = "/".join(path)
    if not filename.endswith(".safetensors"):
        raise Sv4dError(f"bad Hub address {uri!r}: sv4d loads only .safetensors files (they cannot run code on load)")
    return HubFile(repo_id, filename, revision)


def hub_file(spec: str | os.PathLike) -> HubFile | None:
    """The Hub file a checkpoint spec names (a ``HUB_MODELS`` name or an ``hf://`` address),
    None for a local path. An existing local file or folder of that name wins over a known name."""
    if isinstance(spec, os.PathLike):
        return None
    text = str(spec)
    if text.startswith(HF_SCHEME):
        return parse_hf_uri(text)
    if text in HUB_MODELS and not Path(text).exists():
        return HubFile(*HUB_MODELS[text])
    return None


def hub_cache_dir() -> Path:
    """The Hub cache as the environment says now: ``HF_HUB_CACHE`` (or the older
    ``HUGGINGFACE_HUB_CACHE``), else ``HF_HOME/hub``, else ``XDG_CACHE_HOME/huggingface/hub``,
    else ``~/.cache/huggingface/hub``."""
    env = os.environ
    direct = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if direct:
        return Path(os.path.expandvars(direct)).expanduser()
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set to 1/ON/YES/TRUE now."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in _TRUE


def known_names() -> str:
    return ", ".join(HUB_MODELS)


def _not_found(spec: str) -> Sv4dError:
    msg = f"checkpoint not found: {spec}"
    name = Path(spec).name
    stem = name[: -len(".safetensors")] if name.endswith(".safetensors") else name
    if stem in HUB_MODELS:
        msg += f" (give -c {stem} to download the official file from the Hugging Face Hub, or a path to it)"
    elif difflib.get_close_matches(stem.lower(), list(HUB_MODELS), n=1, cutoff=0.6):
        msg += f"; known names: {known_names()} (downloaded from the Hugging Face Hub), or hf://OWNER/REPO/FILE"
    return Sv4dError(msg)


@contextlib.contextmanager
def _progress_bars(show: bool) -> Iterator[None]:
    """Hide huggingface_hub's download bars for the duration when ``show`` is False."""
    if show:
        yield
        return
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _status(e: BaseException) -> int | None:
    return getattr(getattr(e, "response", None), "status_code", None)


def _hub_error(e: Exception, f: HubFile, cache: Path, offline: bool) -> Sv4dError:
    """One clear message for a failed ``hf_hub_download`` (see the huggingface_hub.errors classes)."""
    from huggingface_hub import errors as he

    what = f"{f.filename} of {f.repo_id}" + ("" if f.revision is None else f" at revision {f.revision}")

    def cls(name: str) -> tuple[type, ...]:
        c = getattr(he, name, None)
        return (c,) if isinstance(c, type) else ()

    offline_cls = cls("OfflineModeIsEnabled")
    if isinstance(e, cls("LocalEntryNotFoundError") + offline_cls):
        cause = e.__cause__ or e.__context__
        if offline or isinstance(e, offline_cls) or isinstance(cause, offline_cls):
            why = (
                "HF_HUB_OFFLINE is set: unset it to download the file once, or copy a Hub cache holding it "
                "there (or point HF_HOME / HF_HUB_CACHE at one), or pass the path of a local copy instead"
            )
        else:
            reason = f" ({_first_line(cause)})" if cause is not None else ""
            why = (
                f"the Hugging Face Hub could not be reached{reason}: check the network connection or proxy "
                "(HF_ENDPOINT for a mirror), or pass the path of a local copy instead"
            )
        return Sv4dError(f"{what} is not in the local cache ({cache}) and offline; {why}")
    if isinstance(e, cls("GatedRepoError")):
        return Sv4dError(
            f"{f.repo_id} is a gated repository: accept its licence at {f.url} (logged in to the account you "
            f"download with), then {LOGIN_HINT}"
        )
    if isinstance(e, cls("RepositoryNotFoundError")):
        return Sv4dError(
            f"repository {f.repo_id} was not found on the Hugging Face Hub (check the name; if it is private, "
            f"{LOGIN_HINT})"
        )
    if isinstance(e, cls("RevisionNotFoundError")):
        return Sv4dError(f"revision {f.revision or 'main'} was not found in {f.repo_id} on the Hugging Face Hub")
    if isinstance(e, cls("EntryNotFoundError")):
        known = sorted({fn for repo, fn in HUB_MODELS.values() if repo == f.repo_id})
        hint = f" (it holds {', '.join(known)})" if known and f.filename not in known else ""
        return Sv4dError(f"file {f.filename} was not found in {f.repo_id} on the Hugging Face Hub{hint}")
    status = _status(e)
    if status in (401, 403):
        return Sv4dError(
            f"not authorised to download {what} (HTTP {status}): {LOGIN_HINT}; for a gated repository also "
            f"accept its licence at {f.url}"
        )
    if isinstance(e, cls("HFValidationError")):
        return Sv4dError(f"bad Hub repository or file name {f.uri}: {_first_line(e)}")
    return Sv4dError(f"could not download {what} from the Hugging Face Hub: {_first_line(e)}")


def download(f: HubFile, *, progress: bool = True) -> Path:
    """Fetch one Hub file into the Hub cache (or find it there) and return its local path.

    The path is the cache's ``snapshots/COMMIT/FILENAME`` entry, so its name is the file's own.
    """
    try:
        import huggingface_hub
        from huggingface_hub import errors as he
    except ImportError:  # a core dependency, but say so clearly if it went missing
        raise Sv4dError(
            f"{f.uri} needs the huggingface_hub package: pip install huggingface_hub (or give a local file)"
        ) from None
    cache = hub_cache_dir()
    offline = hub_offline()
    # what a failed download raises: OSError / HTTPError kinds, ValueError (a bad name), and in
    # huggingface_hub >= 1.0 EntryNotFoundError, which is neither
    names = ("HTTPError", "HfHubHTTPError", "EntryNotFoundError", "RevisionNotFoundError", "OfflineModeIsEnabled")
    network = tuple(c for c in (getattr(he, n, None) for n in names) if isinstance(c, type))
    try:
        with _progress_bars(progress):
            path = huggingface_hub.hf_hub_download(
                f.repo_id, f.filename, revision=f.revision, cache_dir=str(cache), local_files_only=offline
            )
    except (OSError, ValueError, *network) as e:
        raise _hub_error(e, f, cache, offline) from None
    return Path(path)


def resolve_checkpoint(spec: str | os.PathLike, *, progress: bool = True) -> Path:
    """A checkpoint spec -> a checked local safetensors file.

    ``spec`` is a ``HUB_MODELS`` name (``sv4d2``, ``sv4d2_8views``), an ``hf://`` address or a
    local path. Hub files are downloaded into (or found in) the Hub cache; ``progress`` shows
    the download bars. Every file is checked to be safetensors before it is returned.
    """
    f = hub_file(spec)
    if f is not None:
        return check_safetensors_file(download(f, progress=progress))
    p = Path(spec).expanduser()
    if not p.exists():
        raise _not_found(str(spec))
    return check_safetensors_file(p)
