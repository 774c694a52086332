"""Recognise a model file from its bytes, and refuse every format that can run code on load.

Only two formats are accepted: ONNX (a protobuf, parsed, never executed as code) and safetensors
(a JSON header and raw tensor bytes). Everything else is refused with a reason that names what the
file looks like, so a vendor knows what to change. The file name is never consulted: a pickle
renamed to `model.onnx` is still a pickle.

This module reads bytes and, for zip archives, the central directory (member names only). It
never extracts a member, never follows a member path, never imports torch, and never unpickles.
"""

from __future__ import annotations

import re
import struct
import zipfile
from pathlib import Path
from typing import BinaryIO, Literal

__all__ = [
    "ACCEPTED_FORMATS",
    "SAFETENSORS_MAX_HEADER_BYTES",
    "ArtifactFormat",
    "IntakeRefused",
    "RefusalCode",
    "detect_format",
    "unsupported",
]

ArtifactFormat = Literal["onnx", "safetensors"]
RefusalCode = Literal["unsupported_format", "invalid_artifact", "manifest_mismatch"]

ACCEPTED_FORMATS = (
    "ONNX (.onnx, standard operator domains, no external data) or safetensors weights for an "
    "allowlisted MONAI architecture named in the manifest"
)

SAFETENSORS_MAX_HEADER_BYTES = 100 * 1024 * 1024
"""Largest safetensors JSON header accepted; real headers are kilobytes to a few megabytes."""

_SNIFF_BYTES = 4096


class IntakeRefused(Exception):
    """The artifact was refused at intake; nothing in it was executed.

    `code` is "unsupported_format", "invalid_artifact" or "manifest_mismatch"; `detail` is one
    sentence for the vendor; `problems` lists located findings as {"path", "message"} dicts.
    """

    def __init__(
        self,
        code: RefusalCode,
        detail: str,
        problems: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(detail)
        self.code: RefusalCode = code
        self.detail = detail
        self.problems: list[dict[str, str]] = list(problems or [])

    def __repr__(self) -> str:
        return f"IntakeRefused(code={self.code!r}, detail={self.detail!r})"


def unsupported(what: str) -> IntakeRefused:
    """Return the refusal for a file that is not one of the accepted formats."""
    return IntakeRefused(
        "unsupported_format",
        f"The file is {what}; Assay accepts only {ACCEPTED_FORMATS}, because other formats can "
        "run code when loaded or cannot be checked without running them, so export the model to "
        "one of these and resubmit.",
    )


def detect_format(path: Path) -> ArtifactFormat:
    """Return "onnx" or "safetensors" from the file's bytes, or raise IntakeRefused."""
    size = path.stat().st_size
    with path.open("rb") as stream:
        head = stream.read(_SNIFF_BYTES)
        if size == 0:
            raise unsupported("empty (0 bytes)")
        # A safetensors header length can begin with the byte 0x80 that also opens a pickle, so
        # safetensors is recognised first; its header is then parsed strictly, never unpickled.
        if _looks_like_safetensors(head, size):
            return "safetensors"
        refused_as = _known_unsafe_or_foreign(head, path, stream, size)
        if refused_as is not None:
            raise unsupported(refused_as)
        if _looks_like_onnx(stream, size):
            return "onnx"
    if _looks_like_text_pickle(head, path, size):
        raise unsupported("a pickle (protocol 0 or 1)")
    raise unsupported("not a format Assay recognises (neither an ONNX protobuf nor safetensors)")


def _known_unsafe_or_foreign(head: bytes, path: Path, stream: BinaryIO, size: int) -> str | None:
    """Name the format when the leading bytes identify one Assay refuses, else None."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return f"a Python pickle (protocol {head[1]})"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return _describe_zip(path)
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy array file"
    if _is_hdf5(head, stream, size):
        return "an HDF5 file (Keras .h5 or similar)"
    for magic, name in _MAGICS:
        if head.startswith(magic):
            return name
    if head[4:8] == b"TFL3":
        return "a TensorFlow Lite model"
    return None


_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip-compressed data (perhaps a compressed pickle or joblib file)"),
    (b"BZh", "bzip2-compressed data (perhaps a compressed pickle or joblib file)"),
    (b"\xfd7zXZ\x00", "xz-compressed data (perhaps a compressed pickle or joblib file)"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data (perhaps a compressed pickle or joblib file)"),
    (b"\x04\x22\x4d\x18", "lz4-compressed data (perhaps a compressed pickle or joblib file)"),
    (b"ZF\x00\x00", "a joblib zlib file (pickle inside)"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"GGUF", "a GGUF model file"),
    (b"\x7fELF", "an executable (ELF)"),
    (b"MZ", "a Windows executable"),
    (b"#!", "a script"),
    (b"%PDF", "a PDF document"),
)


def _is_hdf5(head: bytes, stream: BinaryIO, size: int) -> bool:
    signature = b"\x89HDF\r\n\x1a\n"
    if head.startswith(signature):
        return True
    # The HDF5 superblock may sit after a user block of 512, 1024, 2048... bytes.
    offset = 512
    while offset + len(signature) <= min(size, 1 << 20):
        stream.seek(offset)
        if stream.read(len(signature)) == signature:
            return True
        offset *= 2
    return False


def _describe_zip(path: Path) -> str:
    """Name what kind of zip archive this is from its member names, without extracting."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return "a zip archive (its directory could not be read)"
    # Member paths are only compared as strings; none is opened or resolved.
    tails = {name.rsplit("/", 1)[-1] for name in names}
    if any("/code/" in name or name.startswith("code/") for name in names) or (
        "constants.pkl" in tails
    ):
        return "a TorchScript archive (torch.jit.save; it runs TorchScript code and pickle on load)"
    if "archive_format" in tails or any("/models/" in name for name in names):
        return "a torch.export .pt2 archive (it contains pickled objects)"
    if "data.pkl" in tails:
        return "a PyTorch zip checkpoint (torch.save; pickle inside)"
    if any(tail.endswith(".pkl") or tail.endswith(".pickle") for tail in tails):
        return "a zip archive with pickle files inside"
    if names and all(name.endswith(".npy") for name in names):
        return "a NumPy .npz archive"
    if "config.json" in tails and any(tail.endswith(".weights.h5") for tail in tails):
        return "a Keras .keras archive"
    if "MAR-INF/MANIFEST.json" in names:
        return "a TorchServe .mar archive"
    return "a zip archive"


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    """Tell whether the file starts like safetensors: u64 header length, then a JSON object."""
    if len(head) < 9:
        return False
    (header_length,) = struct.unpack("<Q", head[:8])
    if not 2 <= header_length <= SAFETENSORS_MAX_HEADER_BYTES or 8 + header_length > size:
        return False
    return head[8:9] == b"{"


# ModelProto field numbers and their protobuf wire types (0 varint, 2 length-delimited).
_MODEL_PROTO_FIELDS = {
    1: 0,  # ir_version
    2: 2,  # producer_name
    3: 2,  # producer_version
    4: 2,  # domain
    5: 0,  # model_version
    6: 2,  # doc_string
    7: 2,  # graph
    8: 2,  # opset_import
    14: 2,  # metadata_props
    20: 2,  # training_info
    25: 2,  # functions
    26: 2,  # configuration
}
_MAX_TOP_LEVEL_FIELDS = 100_000


def _read_varint(stream: BinaryIO) -> int | None:
    result = 0
    for shift in range(0, 70, 7):
        byte = stream.read(1)
        if not byte:
            return None
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
    return None


def _looks_like_onnx(stream: BinaryIO, size: int) -> bool:
    """Walk the top-level protobuf fields: all must be ModelProto fields, ending at EOF.

    Length-delimited fields are skipped with a seek, so this costs a few reads even for a large
    model. The full parse happens later, in the ONNX check.
    """
    stream.seek(0)
    seen: set[int] = set()
    for _ in range(_MAX_TOP_LEVEL_FIELDS):
        if stream.tell() == size:
            return 1 in seen and 7 in seen
        tag = _read_varint(stream)
        if tag is None:
            return False
        field, wire_type = tag >> 3, tag & 7
        if _MODEL_PROTO_FIELDS.get(field) != wire_type:
            return False
        seen.add(field)
        value = _read_varint(stream)
        if value is None:
            return False
        if wire_type == 2:
            end = stream.tell() + value
            if end > size:
                return False
            stream.seek(end)
    return False


_TEXT_PICKLE_START = re.compile(rb"^(?:\(|c[\w.]+\n[\w.]+\n|[\]}]|[NIFSVLdl])")


def _looks_like_text_pickle(head: bytes, path: Path, size: int) -> bool:
    """Tell whether the file looks like a protocol 0/1 pickle: a pickle opcode start, '.' end."""
    if not _TEXT_PICKLE_START.match(head):
        return False
    with path.open("rb") as stream:
        stream.seek(max(0, size - 1))
        return stream.read(1) == b"."
