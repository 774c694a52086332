"""Tests of `POST /api/v1/models/{model_id}/versions`: the streamed submission of a model version.

Every refusal is checked three ways: the status code, the error body (`error`, `detail`,
`problems`) and that nothing was left behind (no version row, no audit event, no file in the
artifact store or its temporary directory).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import pathlib
import pickle
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlmodel import func, select

from tests.registry.conftest import VendorAccount, auth, make_model

MODEL_NAME = "lesion-detector"
BOUNDARY = "assay-test-boundary-7f3a9c"
API = "/api/v1"


# --- example models --------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    path: Path
    artifact: bytes
    manifest: dict[str, Any]

    def manifest_for(self, name: str = MODEL_NAME, **changes: Any) -> dict[str, Any]:
        """The example's manifest, naming the registry model it is submitted to."""
        return {**json.loads(json.dumps(self.manifest)), "name": name, **changes}


@pytest.fixture(scope="session")
def example(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Example]:
    """Gives the example ONNX model of a variant (each variant has its own digest)."""
    from validators.runtime.example import write_example_model

    cache: dict[int, Example] = {}

    def get(variant: int = 0) -> Example:
        if variant not in cache:
            out = tmp_path_factory.mktemp(f"example-{variant}")
            model_path, manifest_path = write_example_model(out, variant=variant)
            cache[variant] = Example(
                path=Path(model_path),
                artifact=Path(model_path).read_bytes(),
                manifest=json.loads(Path(manifest_path).read_text()),
            )
        return cache[variant]

    return get


# --- requests --------------------------------------------------------------------------------

Part = tuple[str, bytes | None, bytes, str]  # name, filename (raw), content, content type


def manifest_part(manifest: dict[str, Any] | bytes) -> Part:
    content = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    return ("manifest", None, content, "application/json")


def artifact_part(content: bytes, filename: str | bytes = "model.onnx") -> Part:
    raw_name = filename.encode() if isinstance(filename, str) else filename
    return ("artifact", raw_name, content, "application/octet-stream")


def multipart_body(parts: Sequence[Part], *, boundary: str = BOUNDARY) -> bytes:
    """A multipart/form-data body built by hand, so tests control every byte of it."""
    out = bytearray()
    for name, filename, content, content_type in parts:
        out += f"--{boundary}\r\n".encode()
        disposition = f'Content-Disposition: form-data; name="{name}"'.encode()
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
        out += disposition + b"\r\n"
        out += f"Content-Type: {content_type}\r\n\r\n".encode()
        out += content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def multipart_headers(boundary: str = BOUNDARY) -> dict[str, str]:
    return {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def post_parts(
    client: TestClient,
    model_id: str,
    account_headers: dict[str, str],
    parts: Sequence[Part],
    *,
    idempotency_key: str | None = None,
) -> Any:
    headers = {**account_headers, **multipart_headers()}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return client.post(
        f"{API}/models/{model_id}/versions", content=multipart_body(parts), headers=headers
    )


def submit(
    client: TestClient,
    model_id: str,
    account: VendorAccount,
    example: Example,
    *,
    manifest: dict[str, Any] | bytes | None = None,
    filename: str | bytes = "model.onnx",
    idempotency_key: str | None = None,
) -> Any:
    parts = [
        manifest_part(manifest if manifest is not None else example.manifest_for()),
        artifact_part(example.artifact, filename),
    ]
    return post_parts(client, model_id, account.headers, parts, idempotency_key=idempotency_key)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- what a refusal must leave behind: nothing ----------------------------------------------


def _files(root: Path) -> frozenset[Path]:
    return frozenset(p for p in root.rglob("*") if not p.is_dir()) if root.exists() else frozenset()


@dataclass(frozen=True)
class Snapshot:
    versions: int
    audit_events: int
    artifacts: frozenset[Path]
    tmp: frozenset[Path]


def snapshot(settings: Any) -> Snapshot:
    from registry.audit import AuditEvent
    from registry.catalog.models import ModelVersion
    from registry.db import get_engine, new_session

    with new_session(get_engine(settings)) as session:
        versions = session.exec(select(func.count()).select_from(ModelVersion)).one()
        events = session.exec(select(func.count()).select_from(AuditEvent)).one()
    return Snapshot(
        versions=versions,
        audit_events=events,
        artifacts=_files(settings.artifacts_dir),
        tmp=_files(settings.tmp_dir),
    )


def assert_nothing_left(settings: Any, before: Snapshot) -> None:
    after = snapshot(settings)
    assert after.versions == before.versions, "a model_version row was written"
    assert after.audit_events == before.audit_events, "an audit event was appended"
    assert after.artifacts == before.artifacts, "a file was left in the artifact store"
    assert after.tmp == frozenset(), "a temporary upload file was left behind"


def assert_error(
    response: Any,
    status: int,
    *,
    error: str | None = None,
    detail_has: Sequence[str] = (),
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "detail", "problems"}, body
    assert isinstance(body["detail"], str) and len(body["detail"]) > 20, body
    if error is not None:
        assert body["error"] == error, body
    for text in detail_has:
        assert text.lower() in body["detail"].lower(), body["detail"]
    return body


def problem_paths(body: dict[str, Any]) -> list[str]:
    return [problem["path"] for problem in body["problems"]]


class Outside:
    """Every file under the test's temporary root and the state of /etc/passwd, to compare."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = self._scan()
        self.passwd = os.stat("/etc/passwd")

    def _scan(self) -> frozenset[Path]:
        # The database files change with every request; they are not what is being watched.
        return frozenset(p for p in _files(self.root) if not p.name.startswith("assay.db"))

    def new_files(self) -> frozenset[Path]:
        return self._scan() - self.files

    def passwd_untouched(self) -> bool:
        now = os.stat("/etc/passwd")
        return (now.st_mtime_ns, now.st_size, now.st_ino) == (
            self.passwd.st_mtime_ns,
            self.passwd.st_size,
            self.passwd.st_ino,
        )


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture
def model_id(client: TestClient, vendor: VendorAccount) -> str:
    return make_model(client, vendor, name=MODEL_NAME)


@pytest.fixture
def outside(settings: Any) -> Outside:
    return Outside(settings.home_dir.parent)


# --- the happy path --------------------------------------------------------------------------


@dataclass(frozen=True)
class TwoVersions:
    bodies: list[dict[str, Any]]
    examples: list[Example]


@pytest.fixture
def two_versions(
    client: TestClient, vendor: VendorAccount, model_id: str, example: Callable[[int], Example]
) -> TwoVersions:
    bodies = []
    examples = [example(0), example(1)]
    for item in examples:
        response = submit(client, model_id, vendor, item)
        assert response.status_code == 201, response.text
        bodies.append(response.json())
    return TwoVersions(bodies=bodies, examples=examples)


def test_submissions_become_versions_1_then_2(two_versions: TwoVersions, model_id: str) -> None:
    first, second = two_versions.bodies
    expected_keys = {
        "id",
        "model_id",
        "number",
        "version_label",
        "digest",
        "status",
        "format",
        "size_bytes",
        "intake_report",
        "manifest",
        "submitted_by",
        "created_at",
    }
    assert expected_keys <= set(first)
    assert (first["number"], second["number"]) == (1, 2)
    assert first["model_id"] == second["model_id"] == model_id
    assert first["status"] == second["status"] == "submitted"
    assert first["id"] != second["id"]
    for body, item in zip(two_versions.bodies, two_versions.examples, strict=True):
        assert body["version_label"] == item.manifest["version_label"]
        assert body["manifest"]["name"] == MODEL_NAME


def test_digest_is_the_sha256_of_the_uploaded_bytes(two_versions: TwoVersions) -> None:
    for body, item in zip(two_versions.bodies, two_versions.examples, strict=True):
        assert body["digest"] == sha256_digest(item.artifact)
        assert body["size_bytes"] == len(item.artifact)
    assert two_versions.bodies[0]["digest"] != two_versions.bodies[1]["digest"]


def test_artifact_is_stored_under_its_digest_with_identical_bytes(
    two_versions: TwoVersions, settings: Any
) -> None:
    from registry.storage import ArtifactStore

    store = ArtifactStore(settings.artifacts_dir, settings.tmp_dir)
    stored = set()
    for body, item in zip(two_versions.bodies, two_versions.examples, strict=True):
        path = store.path_for(body["digest"])
        assert path.read_bytes() == item.artifact
        stored.add(path)
    assert _files(settings.artifacts_dir) == stored
    assert _files(settings.tmp_dir) == frozenset()


def test_intake_report_names_the_onnx_format_and_its_operators(
    two_versions: TwoVersions,
) -> None:
    for body in two_versions.bodies:
        report = body["intake_report"]
        assert body["format"] == report["format"] == "onnx"
        assert report["operators"], report
        assert all(
            isinstance(name, str) and count >= 1 for name, count in report["operators"].items()
        )
        assert report["size_bytes"] == body["size_bytes"]


def test_submitted_versions_are_readable_by_id_and_in_the_models_list(
    client: TestClient, vendor: VendorAccount, model_id: str, two_versions: TwoVersions
) -> None:
    for body in two_versions.bodies:
        response = client.get(f"{API}/versions/{body['id']}", headers=vendor.headers)
        assert response.status_code == 200, response.text
        assert response.json() == body
    response = client.get(f"{API}/models/{model_id}/versions", headers=vendor.headers)
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["count"] == 2
    assert [v["id"] for v in page["data"]] == [b["id"] for b in two_versions.bodies]
    assert [v["number"] for v in page["data"]] == [1, 2]


def test_each_submission_appends_a_version_submitted_audit_event_with_its_digest(
    client: TestClient, admin_token: str, two_versions: TwoVersions
) -> None:
    response = client.get(f"{API}/audit", params={"limit": 500}, headers=auth(admin_token))
    assert response.status_code == 200, response.text
    submitted = [e for e in response.json()["data"] if e["action"] == "version.submitted"]
    assert [(e["object_id"], e["payload"]["digest"]) for e in submitted] == [
        (b["id"], b["digest"]) for b in two_versions.bodies
    ]


def test_submitted_by_is_the_submitting_principal(
    client: TestClient, vendor: VendorAccount, two_versions: TwoVersions
) -> None:
    me = client.get(f"{API}/me", headers=vendor.headers).json()
    assert [b["submitted_by"] for b in two_versions.bodies] == [me["id"], me["id"]]


# --- the same bytes twice --------------------------------------------------------------------


def test_resubmitting_the_same_bytes_is_refused_naming_the_existing_version(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
) -> None:
    first = submit(client, model_id, vendor, example(0))
    assert first.status_code == 201, first.text
    before = snapshot(settings)
    again = submit(client, model_id, vendor, example(0), manifest=example(0).manifest_for())
    body = assert_error(again, 409, error="already_registered", detail_has=["version 1"])
    assert first.json()["digest"] in body["detail"]
    assert_nothing_left(settings, before)


@pytest.mark.parametrize("label", ["2.0\x1b[2J\x1b[H", "2.0\x07", "2.0\u202e1.1", "2.0\x00"])
def test_a_version_label_with_a_control_or_bidi_character_is_refused_leaving_nothing(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
    label: str,
) -> None:
    before = snapshot(settings)
    manifest = example(0).manifest_for(version_label=label)
    body = assert_error(
        submit(client, model_id, vendor, example(0), manifest=manifest),
        422,
        error="invalid_manifest",
    )
    assert problem_paths(body) == ["version_label"]
    assert "U+" in body["problems"][0]["message"]
    assert_nothing_left(settings, before)


def test_same_bytes_from_another_vendor_are_refused_without_revealing_the_first_version(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    other_vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
) -> None:
    first = submit(client, model_id, vendor, example(0))
    assert first.status_code == 201, first.text
    other_model = make_model(client, other_vendor, name="other-model")
    before = snapshot(settings)
    response = submit(
        client,
        other_model,
        other_vendor,
        example(0),
        manifest=example(0).manifest_for("other-model"),
    )
    body = assert_error(
        response, 409, error="already_registered", detail_has=["already registered"]
    )
    text = json.dumps(body)
    for secret in (first.json()["id"], model_id, MODEL_NAME, vendor.vendor_id, vendor.name):
        assert secret not in text
    assert "version 1" not in body["detail"]
    assert_nothing_left(settings, before)


# --- Idempotency-Key -------------------------------------------------------------------------


def test_same_idempotency_key_and_payload_replays_the_first_response(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
) -> None:
    first = submit(client, model_id, vendor, example(0), idempotency_key="retry-1")
    assert first.status_code == 201, first.text
    before = snapshot(settings)
    again = submit(client, model_id, vendor, example(0), idempotency_key="retry-1")
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    listed = client.get(f"{API}/models/{model_id}/versions", headers=vendor.headers).json()
    assert [v["id"] for v in listed["data"]] == [first.json()["id"]]
    assert_nothing_left(settings, before)


@pytest.mark.parametrize("changed", ["artifact", "manifest"])
def test_same_idempotency_key_with_a_different_payload_is_refused(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
    changed: str,
) -> None:
    first = submit(client, model_id, vendor, example(0), idempotency_key="retry-1")
    assert first.status_code == 201, first.text
    before = snapshot(settings)
    if changed == "artifact":
        response = submit(client, model_id, vendor, example(1), idempotency_key="retry-1")
    else:
        manifest = example(0).manifest_for(version_label="something-else")
        response = submit(
            client, model_id, vendor, example(0), manifest=manifest, idempotency_key="retry-1"
        )
    assert_error(response, 422, error="idempotency_key_reused", detail_has=["retry-1", "new key"])
    assert_nothing_left(settings, before)


# --- formats that run code on load -----------------------------------------------------------


class TouchOnUnpickle:
    """Unpickling this creates the marker file: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def evil_pickle(marker: Path) -> bytes:
    return pickle.dumps(TouchOnUnpickle(marker))


def evil_torch_checkpoint(marker: Path) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hook": TouchOnUnpickle(marker)}, buffer)
    return buffer.getvalue()


def test_the_pickle_payloads_really_run_code_when_loaded(tmp_path: Path) -> None:
    # Guards the tests below: they would prove nothing if loading these payloads were harmless.
    import torch

    plain, checkpoint = tmp_path / "plain", tmp_path / "checkpoint"
    pickle.loads(evil_pickle(plain))
    torch.load(io.BytesIO(evil_torch_checkpoint(checkpoint)), weights_only=False)
    assert plain.exists()
    assert checkpoint.exists()


@pytest.mark.parametrize("filename", ["model.pt", "model.onnx", "model.safetensors"])
def test_pickle_is_refused_unexecuted_whatever_its_file_name(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
    tmp_path: Path,
    filename: str,
) -> None:
    marker = tmp_path / "pwned-by-pickle"
    before = snapshot(settings)
    response = client.post(
        f"{API}/models/{model_id}/versions",
        content=multipart_body(
            [
                manifest_part(example(0).manifest_for()),
                artifact_part(evil_pickle(marker), filename),
            ]
        ),
        headers={**vendor.headers, **multipart_headers()},
    )
    assert_error(
        response, 422, error="unsupported_format", detail_has=["pickle", "ONNX", "safetensors"]
    )
    assert not marker.exists()
    assert_nothing_left(settings, before)


def test_torch_zip_checkpoint_is_refused_unexecuted(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
    tmp_path: Path,
) -> None:
    marker = tmp_path / "pwned-by-torch-load"
    before = snapshot(settings)
    parts = [
        manifest_part(example(0).manifest_for()),
        artifact_part(evil_torch_checkpoint(marker), "model.pt"),
    ]
    response = post_parts(client, model_id, vendor.headers, parts)
    assert_error(
        response, 422, error="unsupported_format", detail_has=["torch", "ONNX", "safetensors"]
    )
    assert not marker.exists()
    assert_nothing_left(settings, before)


# --- path traversal --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filename",
    [
        b"../../etc/passwd",
        b"..\\..\\evil",
        b"%2e%2e%2fevil",
        b"/etc/passwd",
        b"../../../../../../../../tmp/evil.onnx",
        b"evil\x00.onnx",
    ],
    ids=["dotdot", "backslashes", "percent-encoded", "absolute", "deep", "nul"],
)
def test_artifact_file_name_never_decides_where_the_artifact_is_stored(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
    outside: Outside,
    filename: bytes,
) -> None:
    from registry.storage import ArtifactStore

    response = submit(client, model_id, vendor, example(0), filename=filename)
    assert response.status_code == 201, response.text
    digest = response.json()["digest"]
    stored = ArtifactStore(settings.artifacts_dir, settings.tmp_dir).path_for(digest)
    assert stored.read_bytes() == example(0).artifact
    assert outside.new_files() == {stored}
    assert outside.passwd_untouched()
    assert not Path("/tmp/evil.onnx").exists()


@pytest.mark.parametrize(
    "raw_model_id",
    ["..%2F..%2Fvendors", "..%2f..%2f..%2fetc%2fpasswd", "%2e%2e", "not-a-uuid", "..%5C..%5Cx"],
)
def test_model_id_with_traversal_is_not_found_or_invalid(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
    outside: Outside,
    raw_model_id: str,
) -> None:
    before = snapshot(settings)
    response = client.post(
        f"{API}/models/{raw_model_id}/versions",
        content=multipart_body(
            [manifest_part(example(0).manifest_for()), artifact_part(example(0).artifact)]
        ),
        headers={**vendor.headers, **multipart_headers()},
    )
    assert response.status_code in (404, 422), response.text
    assert_error(response, response.status_code)
    assert_nothing_left(settings, before)
    assert outside.new_files() == frozenset()


def onnx_with_external_data(example: Example, location: str) -> bytes:
    """The example model with its largest initializer moved to an external data reference."""
    import onnx

    model = onnx.load_model_from_string(example.artifact)
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data) or len(t.float_data))
    size = len(onnx.numpy_helper.to_array(tensor).tobytes())
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(size))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


@pytest.mark.parametrize("location", ["../../etc/passwd", "/etc/passwd", "weights.bin"])
def test_onnx_with_external_data_is_refused_without_opening_it(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
    outside: Outside,
    location: str,
) -> None:
    before = snapshot(settings)
    parts = [
        manifest_part(example(0).manifest_for()),
        artifact_part(onnx_with_external_data(example(0), location)),
    ]
    response = post_parts(client, model_id, vendor.headers, parts)
    body = assert_error(response, 422, error="invalid_artifact", detail_has=["external data"])
    assert any(location in problem["message"] for problem in body["problems"]), body
    assert_nothing_left(settings, before)
    assert outside.new_files() == frozenset()


def zip_with_member(kind: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        if kind == "traversal":
            archive.writestr("../../evil", b"escaped")
            archive.writestr("../../../../tmp/evil-zip", b"escaped")
        else:
            link = zipfile.ZipInfo("model/link")
            link.external_attr = (0o120777 << 16) | 0x20  # S_IFLNK: a symbolic link
            link.create_system = 3  # unix, so the mode bits are honoured by unzip tools
            archive.writestr(link, "../../../../etc/passwd")
            archive.writestr("model/link/evil", b"written through the link")
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["traversal", "symlink"])
def test_zip_with_traversing_or_symlinked_members_is_refused_unextracted(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
    outside: Outside,
    kind: str,
) -> None:
    before = snapshot(settings)
    parts = [
        manifest_part(example(0).manifest_for()),
        artifact_part(zip_with_member(kind), "model.zip"),
    ]
    response = post_parts(client, model_id, vendor.headers, parts)
    assert_error(response, 422, error="unsupported_format", detail_has=["zip", "ONNX"])
    assert_nothing_left(settings, before)
    assert outside.new_files() == frozenset()
    assert outside.passwd_untouched()
    assert not Path("/tmp/evil-zip").exists()


# --- size limits -----------------------------------------------------------------------------

SMALL_LIMIT = 1000


@pytest.fixture
def small_app(settings: Any) -> Any:
    from registry.app import create_app

    return create_app(settings.model_copy(update={"max_artifact_bytes": SMALL_LIMIT}))


@pytest.fixture
def small_client(small_app: Any) -> Iterator[TestClient]:
    with TestClient(small_app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_upload_declaring_more_than_the_limit_is_refused_with_413(
    small_client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
) -> None:
    before = snapshot(settings)
    parts = [manifest_part(example(0).manifest_for()), artifact_part(os.urandom(2 * 1024 * 1024))]
    response = post_parts(small_client, model_id, vendor.headers, parts)
    assert response.request.headers["content-length"].isdigit()
    assert_error(
        response,
        413,
        error="payload_too_large",
        detail_has=["declares", str(SMALL_LIMIT), "ASSAY_MAX_ARTIFACT_BYTES"],
    )
    assert_nothing_left(settings, before)


def test_streamed_upload_without_length_is_cut_off_at_the_limit(
    small_client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
) -> None:
    body = multipart_body(
        [manifest_part(example(0).manifest_for()), artifact_part(b"\x01" * (SMALL_LIMIT * 5))]
    )

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(body), 512):
            yield body[start : start + 512]

    before = snapshot(settings)
    response = small_client.post(
        f"{API}/models/{model_id}/versions",
        content=chunks(),
        headers={**vendor.headers, **multipart_headers()},
    )
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_error(
        response,
        413,
        error="payload_too_large",
        detail_has=[f"limit of {SMALL_LIMIT} bytes", "nothing was kept"],
    )
    assert_nothing_left(settings, before)


# --- ASGI-level: what the server reads, and when ---------------------------------------------


@dataclass
class AsgiResult:
    status: int
    body: dict[str, Any]
    body_reads: int
    unread_chunks: int


def call_asgi(
    app: Any,
    path: str,
    *,
    headers: dict[str, str],
    chunks: Sequence[bytes] = (b"",),
) -> AsgiResult:
    """Calls the app with a raw ASGI scope; counts how often it asked for the request body."""
    pending = list(chunks)
    reads = 0

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending)}
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        + [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return AsgiResult(
        status=start["status"],
        body=json.loads(payload),
        body_reads=reads,
        unread_chunks=len(pending),
    )


def _assert_error_body(result: AsgiResult, status: int, error: str) -> None:
    assert result.status == status, result.body
    assert set(result.body) == {"error", "detail", "problems"}
    assert result.body["error"] == error, result.body


def test_unauthenticated_upload_is_refused_before_its_body_is_read(
    app: Any, settings: Any, model_id: str
) -> None:
    before = snapshot(settings)
    result = call_asgi(
        app,
        f"{API}/models/{model_id}/versions",
        headers={**multipart_headers(), "Content-Length": "1000000"},
        chunks=[b"x" * 1000] * 1000,
    )
    _assert_error_body(result, 401, "unauthorized")
    assert "token" in result.body["detail"]
    assert result.body_reads == 0
    assert_nothing_left(settings, before)


def test_upload_to_another_vendors_model_is_refused_before_its_body_is_read(
    app: Any, settings: Any, other_vendor: VendorAccount, model_id: str
) -> None:
    before = snapshot(settings)
    result = call_asgi(
        app,
        f"{API}/models/{model_id}/versions",
        headers={**multipart_headers(), **other_vendor.headers, "Content-Length": "1000000"},
        chunks=[b"x" * 1000] * 1000,
    )
    _assert_error_body(result, 404, "not_found")
    assert model_id in result.body["detail"]
    assert result.body_reads == 0
    assert_nothing_left(settings, before)


def test_declared_oversized_upload_is_refused_before_its_body_is_read(
    small_app: Any, settings: Any, vendor: VendorAccount, model_id: str
) -> None:
    before = snapshot(settings)
    result = call_asgi(
        small_app,
        f"{API}/models/{model_id}/versions",
        headers={**multipart_headers(), **vendor.headers, "Content-Length": str(10 * 1024**3)},
        chunks=[b"x" * 1000] * 1000,
    )
    _assert_error_body(result, 413, "payload_too_large")
    assert result.body_reads == 0
    assert_nothing_left(settings, before)


def test_streamed_oversized_upload_stops_being_read_soon_after_the_limit(
    small_app: Any,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
) -> None:
    body = multipart_body(
        [manifest_part(example(0).manifest_for()), artifact_part(b"\x01" * (SMALL_LIMIT * 200))]
    )
    chunks = [body[i : i + 256] for i in range(0, len(body), 256)]
    before = snapshot(settings)
    result = call_asgi(
        small_app,
        f"{API}/models/{model_id}/versions",
        headers={**multipart_headers(), **vendor.headers},
        chunks=chunks,
    )
    _assert_error_body(result, 413, "payload_too_large")
    # Manifest, framing and the limit fit in a handful of 256-byte chunks; the rest is unread.
    assert result.body_reads <= (len(json.dumps(example(0).manifest)) + SMALL_LIMIT) // 256 + 8
    assert result.unread_chunks > len(chunks) // 2
    assert_nothing_left(settings, before)


# --- malformed uploads -----------------------------------------------------------------------


def test_truncated_upload_is_refused(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
) -> None:
    whole = multipart_body(
        [manifest_part(example(0).manifest_for()), artifact_part(example(0).artifact)]
    )
    cut = whole[: len(whole) - 200]  # inside the artifact, before the closing boundary
    before = snapshot(settings)
    response = client.post(
        f"{API}/models/{model_id}/versions",
        content=cut,
        headers={**vendor.headers, **multipart_headers()},
    )
    assert response.request.headers["content-length"] == str(len(cut))
    assert_error(response, 422, detail_has=["truncated"])
    assert_nothing_left(settings, before)


def test_invalid_json_manifest_is_refused_with_its_problem(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
) -> None:
    before = snapshot(settings)
    parts = [manifest_part(b'{"name": "lesion-detector",'), artifact_part(example(0).artifact)]
    response = post_parts(client, model_id, vendor.headers, parts)
    body = assert_error(response, 422, error="invalid_manifest", detail_has=["problem"])
    assert len(body["problems"]) == 1
    assert "JSON" in body["problems"][0]["message"]
    assert_nothing_left(settings, before)


def test_every_manifest_mistake_is_listed_with_its_dotted_path_in_one_response(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
) -> None:
    manifest = example(0).manifest_for()
    manifest["task"] = "trinary"
    manifest["input"] = {**manifest["input"], "channels": 0, "height": "tall"}
    manifest["output"] = {**manifest["output"], "kind": "votes"}
    manifest["colour"] = "blue"
    before = snapshot(settings)
    response = submit(client, model_id, vendor, example(0), manifest=manifest)
    body = assert_error(response, 422, error="invalid_manifest", detail_has=["problem"])
    paths = problem_paths(body)
    for path in ("task", "input.channels", "input.height", "output.kind", "colour"):
        assert path in paths, body["problems"]
    assert all(problem["message"] for problem in body["problems"])
    assert_nothing_left(settings, before)


def test_manifest_whose_channels_disagree_with_the_onnx_model_is_refused(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
) -> None:
    manifest = example(0).manifest_for()
    channels = manifest["input"]["channels"]
    manifest["input"] = {**manifest["input"], "channels": 3 if channels != 3 else 1}
    intensity = manifest["input"]["intensity"]
    if intensity["kind"] == "meanstd":  # keep the manifest valid on its own
        manifest["input"]["intensity"] = {**intensity, "mean": intensity["mean"][:1]}
        manifest["input"]["intensity"]["std"] = intensity["std"][:1]
    before = snapshot(settings)
    response = submit(client, model_id, vendor, example(0), manifest=manifest)
    body = assert_error(response, 422, error="manifest_mismatch", detail_has=["manifest"])
    assert "input.channels" in problem_paths(body), body
    assert_nothing_left(settings, before)


def test_manifest_naming_another_model_is_refused(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
) -> None:
    before = snapshot(settings)
    manifest = example(0).manifest_for("some-other-model")
    response = submit(client, model_id, vendor, example(0), manifest=manifest)
    body = assert_error(
        response, 422, error="invalid_manifest", detail_has=["some-other-model", MODEL_NAME]
    )
    assert problem_paths(body) == ["name"]
    assert_nothing_left(settings, before)


@pytest.mark.parametrize("missing", ["artifact", "manifest"])
def test_submission_missing_a_part_is_refused(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
    missing: str,
) -> None:
    parts = {
        "manifest": manifest_part(example(0).manifest_for()),
        "artifact": artifact_part(example(0).artifact),
    }
    del parts[missing]
    before = snapshot(settings)
    response = post_parts(client, model_id, vendor.headers, list(parts.values()))
    body = assert_error(response, 422, error="invalid", detail_has=[missing])
    assert problem_paths(body) == [missing]
    assert_nothing_left(settings, before)


def test_submission_with_an_unknown_part_is_refused(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
) -> None:
    parts = [
        manifest_part(example(0).manifest_for()),
        artifact_part(example(0).artifact),
        ("weights", b"extra.bin", b"\x00" * 64, "application/octet-stream"),
    ]
    before = snapshot(settings)
    response = post_parts(client, model_id, vendor.headers, parts)
    body = assert_error(response, 422, error="invalid", detail_has=["weights"])
    assert problem_paths(body) == ["weights"]
    assert_nothing_left(settings, before)


def test_submission_with_a_part_sent_twice_is_refused(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
) -> None:
    parts = [
        manifest_part(example(0).manifest_for()),
        artifact_part(example(0).artifact),
        artifact_part(example(1).artifact),
    ]
    before = snapshot(settings)
    response = post_parts(client, model_id, vendor.headers, parts)
    assert_error(response, 422, error="invalid", detail_has=["artifact", "twice"])
    assert_nothing_left(settings, before)


def test_empty_artifact_is_refused(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
) -> None:
    before = snapshot(settings)
    parts = [manifest_part(example(0).manifest_for()), artifact_part(b"")]
    response = post_parts(client, model_id, vendor.headers, parts)
    body = assert_error(response, 422, error="invalid", detail_has=["empty"])
    assert problem_paths(body) == ["artifact"]
    assert_nothing_left(settings, before)


def test_body_that_is_not_multipart_is_refused(
    client: TestClient, settings: Any, vendor: VendorAccount, model_id: str
) -> None:
    before = snapshot(settings)
    response = client.post(
        f"{API}/models/{model_id}/versions",
        json={"manifest": {}, "artifact": "AAAA"},
        headers=vendor.headers,
    )
    assert_error(response, 422, error="invalid", detail_has=["multipart/form-data"])
    assert_nothing_left(settings, before)


def test_submission_to_an_unknown_model_is_not_found(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    example: Callable[[int], Example],
) -> None:
    unknown = str(uuid.uuid4())
    before = snapshot(settings)
    response = submit(client, unknown, vendor, example(0))
    assert_error(response, 404, error="not_found", detail_has=[unknown])
    assert_nothing_left(settings, before)


def test_oversized_manifest_is_refused_with_413(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
) -> None:
    manifest = example(0).manifest_for()
    manifest["card"] = {**manifest["card"], "intended_use": "x" * (settings.max_manifest_bytes + 1)}
    before = snapshot(settings)
    response = submit(client, model_id, vendor, example(0), manifest=manifest)
    assert_error(response, 413, error="payload_too_large", detail_has=["manifest"])
    assert_nothing_left(settings, before)


# --- hostile input: every refusal is a 4xx (or 507), never a 500 ---------------------------


def test_manifest_nested_100000_deep_is_refused_with_422(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
) -> None:
    deep = b'{"name": "lesion-detector", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    before = snapshot(settings)
    response = submit(client, model_id, vendor, example(0), manifest=deep)
    assert_error(response, 422, error="invalid_manifest", detail_has=["problem"])
    assert "nested" in response.json()["problems"][0]["message"]
    assert_nothing_left(settings, before)


def test_manifest_nested_past_the_depth_limit_is_refused_with_422(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
) -> None:
    manifest = example(0).manifest_for()
    nested: Any = 1
    for _ in range(500):
        nested = [nested]
    manifest["card"] = {**manifest["card"], "extra": nested}
    response = submit(client, model_id, vendor, example(0), manifest=manifest)
    body = assert_error(response, 422, error="invalid_manifest")
    assert any("nested more than" in p["message"] for p in body["problems"]), body


@pytest.mark.parametrize(
    "change",
    [
        {"version_label": "1\x00"},
        {"labels": ["lesion\x00"]},
        {"card": {"intended_use": "screening\x00"}},
        {"card": {"intended_use": "\ud800"}},
    ],
    ids=["version_label", "label", "card", "surrogate"],
)
def test_unstorable_text_in_the_manifest_is_refused_with_422_on_every_database(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
    change: dict[str, Any],
) -> None:
    manifest = example(0).manifest_for(**change)
    before = snapshot(settings)
    body = json.dumps(manifest).encode()  # ensure_ascii: NUL and surrogates travel as escapes
    response = submit(client, model_id, vendor, example(0), manifest=body)
    answer = assert_error(response, 422, error="invalid_manifest")
    assert [next(iter(change))] == [p["path"].split(".")[0] for p in answer["problems"]], answer
    assert_nothing_left(settings, before)


def test_multipart_boundary_over_256_characters_is_refused_with_422(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
) -> None:
    boundary = "b" * 300
    parts = [manifest_part(example(0).manifest_for()), artifact_part(example(0).artifact)]
    before = snapshot(settings)
    response = client.post(
        f"{API}/models/{model_id}/versions",
        content=multipart_body(parts, boundary=boundary),
        headers={**vendor.headers, **multipart_headers(boundary)},
    )
    assert_error(response, 422, error="invalid", detail_has=["boundary", "256"])
    assert_nothing_left(settings, before)


@pytest.mark.parametrize("code", ["ENOSPC", "EDQUOT"])
def test_full_disk_while_staging_is_507(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
    monkeypatch: pytest.MonkeyPatch,
    code: str,
) -> None:
    import errno

    from registry.storage import StagedFile

    original = StagedFile.write
    monkeypatch.setattr(
        "registry.storage.StagedFile.write",
        lambda self, chunk: _raise_when_full(self, chunk, original, getattr(errno, code)),
    )
    before = snapshot(settings)
    response = submit(client, model_id, vendor, example(0))
    assert_error(response, 507, error="insufficient_storage", detail_has=["full"])
    assert_nothing_left(settings, before)


def _raise_when_full(staged: Any, chunk: bytes, original: Any, code: int) -> None:
    """StagedFile.write on a disk that fills up after 100 bytes: the real file gets ENOSPC."""
    if staged.size + len(chunk) > 100:

        class FullFile:
            def write(self, _chunk: bytes) -> int:
                raise OSError(code, os.strerror(code))

        real = staged._file
        staged._file = FullFile()
        try:
            original(staged, chunk)
        finally:
            staged._file = real
        return
    original(staged, chunk)


def test_full_disk_while_storing_is_507_and_leaves_nothing(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import errno

    def full(_source: Any, _target: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("registry.storage.os.replace", full)
    before = snapshot(settings)
    response = submit(client, model_id, vendor, example(0))
    assert_error(response, 507, error="insufficient_storage")
    assert_nothing_left(settings, before)


def test_other_os_errors_while_staging_are_a_500_not_a_bad_body(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import errno

    from registry.storage import StagedFile

    original = StagedFile.write
    monkeypatch.setattr(
        "registry.storage.StagedFile.write",
        lambda self, chunk: _raise_when_full(self, chunk, original, errno.EIO),
    )
    before = snapshot(settings)
    response = submit(client, model_id, vendor, example(0))
    assert_error(response, 500, error="internal_error")
    assert response.headers["connection"] == "close"
    assert_nothing_left(settings, before)


def test_onnx_with_nul_in_its_names_is_refused_with_422_on_every_database(
    client: TestClient,
    settings: Any,
    vendor: VendorAccount,
    model_id: str,
    example: Callable[[int], Example],
) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load_from_string(example(0).artifact)
    model.producer_name = "vendor\x00tool"
    artifact = model.SerializeToString()
    before = snapshot(settings)
    response = post_parts(
        client,
        model_id,
        vendor.headers,
        [manifest_part(example(0).manifest_for()), artifact_part(artifact)],
    )
    assert_error(response, 422, error="invalid_artifact")
    assert_nothing_left(settings, before)
