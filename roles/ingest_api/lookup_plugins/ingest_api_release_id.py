"""Content-addressed id of an ingest_api release, computed on the controller."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: ingest_api_release_id
author: dw-platform
short_description: Content hash naming a release of the ingestion API
description:
  - Hashes every regular file under the given subdirectories of the source directory (each file's
    path relative to the source directory and its content, in sorted path order, skipping
    C(__pycache__) directories and C(*.pyc) files) together with the content of the requirements
    file, and returns the first O(length) hex digits of the SHA-256.
  - The same inputs always give the same id; a change to any file's content or path, an added or
    removed file, or a change of the requirements gives a new one. File modes and times do not count.
  - Runs on the controller, like every lookup.
options:
  _terms:
    description: The source directory on the controller (the repository's C(app/)).
    type: path
    required: true
  subdirs:
    description: Subdirectories of the source directory whose files make up the release.
    type: list
    elements: str
    default: [dw_ingest, sql]
  requirements:
    description: The pinned requirements file installed into the release's virtualenv.
    type: path
    required: true
  length:
    description: How many hex digits of the SHA-256 to return (1 to 64).
    type: int
    default: 12
  files:
    description:
      - Return the absolute paths of the files the id is computed over instead of the id, so the
        release's archive packs exactly what names it.
    type: bool
    default: false
notes:
  - Relative paths are taken from the playbook's directory.
"""

EXAMPLES = r"""
- name: Name the release built from the controller's app/
  ansible.builtin.set_fact:
    _ingest_api_release_id: >-
      {{ lookup('ingest_api_release_id', ingest_api_source_dir,
                subdirs=['dw_ingest', 'sql'], requirements=ingest_api_requirements_file) }}

- name: Pack exactly the files that id is computed over
  community.general.archive:
    path: >-
      {{ query('ingest_api_release_id', ingest_api_source_dir, subdirs=['dw_ingest', 'sql'],
               requirements=ingest_api_requirements_file, files=true) }}
    dest: /tmp/release.tar.gz
"""

RETURN = r"""
_raw:
  description: The release id, O(length) lowercase hex digits; with O(files), the files' absolute paths.
  type: list
  elements: str
  sample: [3f2a9c0d41be]
"""

_CHUNK = 1 << 20


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def release_files(source_dir: Path, subdirs: Iterable[str]) -> list[str]:
    """Paths (relative to source_dir, '/'-separated, sorted) of the files that make up a release."""
    found: list[str] = []
    for subdir in subdirs:
        top = source_dir / subdir
        if not top.is_dir():
            raise FileNotFoundError(f"{top} is not a directory")
        found.extend(_walk(source_dir, top))
    return sorted(set(found))


def _walk(source_dir: Path, top: Path) -> Iterator[str]:
    def fail(error: OSError) -> None:
        raise error

    for dirpath, dirnames, filenames in os.walk(top, onerror=fail):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for filename in filenames:
            path = Path(dirpath, filename)
            if filename.endswith(".pyc") or not path.is_file():
                continue
            yield path.relative_to(source_dir).as_posix()


def release_id(
    source_dir: str | os.PathLike[str], subdirs: Iterable[str], requirements: str | os.PathLike[str], length: int = 12
) -> str:
    """The first `length` hex digits of the SHA-256 over the release's files and requirements."""
    if not 1 <= length <= 64:
        raise ValueError(f"length must be between 1 and 64, not {length}")
    source = Path(source_dir)
    digest = hashlib.sha256(b"ingest_api release v1\n")
    for relative in release_files(source, subdirs):
        # NUL cannot occur in a path, so no name/content pair can be confused with another.
        digest.update(b"file\0" + relative.encode("utf-8", "surrogateescape") + b"\0")
        digest.update(_file_digest(source / relative).encode("ascii") + b"\n")
    digest.update(b"requirements\0" + _file_digest(Path(requirements)).encode("ascii") + b"\n")
    return digest.hexdigest()[:length]


class LookupModule(LookupBase):
    def run(self, terms: list[Any], variables: dict[str, Any] | None = None, **kwargs: Any) -> list[str]:
        self.set_options(var_options=variables, direct=kwargs)
        if len(terms) != 1:
            raise AnsibleLookupError(f"ingest_api_release_id takes exactly one source directory, got {len(terms)}")
        source_dir = self._absolute(str(terms[0]), variables)
        requirements = self._absolute(str(self.get_option("requirements")), variables)
        subdirs = [str(s) for s in self.get_option("subdirs")]
        try:
            if self.get_option("files"):
                return [os.path.join(source_dir, relative) for relative in release_files(Path(source_dir), subdirs)]
            return [release_id(source_dir, subdirs, requirements, int(self.get_option("length")))]
        except (OSError, ValueError) as error:
            raise AnsibleLookupError(f"cannot compute the release id of {source_dir}: {error}") from error

    def _absolute(self, path: str, variables: dict[str, Any] | None) -> str:
        path = os.path.expanduser(path)
        if os.path.isabs(path):
            return path
        return os.path.join(self.get_basedir(variables or {}), path)
