"""Streams a multipart submission straight to a hashed temporary file, enforcing size limits.

FastAPI's form parsing spools the whole body before the handler runs; this reads the request
stream itself, so memory stays flat whatever the artifact's size and an oversized upload is cut
off as soon as it crosses the limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from registry.errors import AssayError, Invalid, PayloadTooLarge
from registry.storage import ArtifactStore, StagedFile

ALLOWED_PARTS = ("manifest", "artifact")
# RFC 2046 allows 70 characters; the parser refuses more than 256, before any part is read.
MAX_BOUNDARY_LENGTH = 256
# Room for the multipart framing and part headers around the two parts.
_FRAMING_ALLOWANCE = 64 * 1024


@dataclass
class Submission:
    """A fully received submission: the manifest bytes and the finished, hashed artifact file."""

    manifest: bytes
    artifact: StagedFile
    digest: str


@dataclass
class _State:
    max_artifact: int
    max_manifest: int
    store: ArtifactStore
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    headers: dict[str, bytes] = field(default_factory=dict)
    part: str | None = None
    seen: set[str] = field(default_factory=set)
    manifest: bytearray = field(default_factory=bytearray)
    artifact: StagedFile | None = None
    complete: bool = False

    def on_part_begin(self) -> None:
        self.headers = {}
        self.part = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def on_header_end(self) -> None:
        self.headers[self.header_field.decode("latin-1").lower()] = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        disposition = self.headers.get("content-disposition")
        if disposition is None:
            raise Invalid("Each multipart part needs a Content-Disposition header with its name.")
        _, options = parse_options_header(disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name not in ALLOWED_PARTS:
            raise Invalid(
                f"Unexpected form field {name!r}: a submission has exactly two parts, "
                "`manifest` (JSON) and `artifact` (the model file).",
                problems=[{"path": name or "(unnamed)", "message": "unexpected form field"}],
            )
        if name in self.seen:
            raise Invalid(f"The form field {name!r} was sent twice; send it once.")
        self.seen.add(name)
        self.part = name
        if name == "artifact":
            self.artifact = self.store.stage()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.part == "manifest":
            self.manifest += data[start:end]
            if len(self.manifest) > self.max_manifest:
                raise PayloadTooLarge(
                    f"The manifest is larger than {self.max_manifest} bytes; a manifest is a "
                    "small JSON document."
                )
        elif self.part == "artifact":
            assert self.artifact is not None
            if self.artifact.size + (end - start) > self.max_artifact:
                raise PayloadTooLarge(
                    f"The artifact is larger than the limit of {self.max_artifact} bytes "
                    "(ASSAY_MAX_ARTIFACT_BYTES); nothing was kept."
                )
            self.artifact.write(data[start:end])

    def on_end(self) -> None:
        self.complete = True


def _boundary(request: Request) -> bytes:
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise Invalid(
            "A submission is sent as multipart/form-data with the parts `manifest` and "
            "`artifact` (e.g. curl -F manifest=@manifest.json -F artifact=@model.onnx)."
        )
    if len(boundary) > MAX_BOUNDARY_LENGTH:
        raise Invalid(
            f"The multipart boundary is {len(boundary)} characters long; it may have at most "
            f"{MAX_BOUNDARY_LENGTH} (RFC 2046 recommends 70 or fewer).",
            problems=[{"path": "content-type", "message": "multipart boundary too long"}],
        )
    return boundary


async def receive_submission(
    request: Request, *, store: ArtifactStore, max_artifact: int, max_manifest: int
) -> Submission:
    """Reads the request body as it arrives; on any error nothing is left on disk."""
    boundary = _boundary(request)
    declared = request.headers.get("content-length")
    limit = max_artifact + max_manifest + _FRAMING_ALLOWANCE
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            f"The upload declares {declared} bytes, more than the artifact limit of "
            f"{max_artifact} bytes (ASSAY_MAX_ARTIFACT_BYTES); nothing was read."
        )
    state = _State(max_artifact=max_artifact, max_manifest=max_manifest, store=store)
    try:
        try:
            parser = MultipartParser(
                boundary,
                callbacks={
                    "on_part_begin": state.on_part_begin,
                    "on_header_field": state.on_header_field,
                    "on_header_value": state.on_header_value,
                    "on_header_end": state.on_header_end,
                    "on_headers_finished": state.on_headers_finished,
                    "on_part_data": state.on_part_data,
                    "on_end": state.on_end,
                },
            )
            async for chunk in request.stream():
                if chunk:
                    parser.write(chunk)
            parser.finalize()
        except ClientDisconnect as exc:
            raise Invalid("The upload ended before it was complete; send it again.") from exc
        except (AssayError, OSError):
            raise  # an OSError is the server's disk, not the client's body (ENOSPC is 507)
        except Exception as exc:  # the multipart parser's own errors
            raise Invalid(f"The multipart body could not be parsed: {exc}.") from exc
        if not state.complete:
            raise Invalid(
                "The upload ended before its closing multipart boundary (truncated); send it again."
            )
        missing = [p for p in ALLOWED_PARTS if p not in state.seen]
        if missing:
            raise Invalid(
                "A submission needs both `manifest` and `artifact` parts; missing: "
                + ", ".join(missing)
                + ".",
                problems=[{"path": p, "message": "missing"} for p in missing],
            )
        assert state.artifact is not None
        if state.artifact.size == 0:
            raise Invalid(
                "The artifact is empty.", problems=[{"path": "artifact", "message": "empty file"}]
            )
        digest = state.artifact.finish()
        return Submission(manifest=bytes(state.manifest), artifact=state.artifact, digest=digest)
    except BaseException:
        if state.artifact is not None:
            state.artifact.discard()
        raise
