"""Benchmarks 6 and 7: decoding DICOM into the decode cache, and generating phantoms.

`decode-cache`: 512x512 DICOM phantoms (400 by default; 16-bit, as a DX detector stores them)
preprocessed to a 1 x 224 x 224 float32 input (DICOM window, area-averaging resize):

- Assay cold: `open_cache` on an empty cache directory: the process pool on every core this
  process may use, each worker writing its rows into the memory-mapped temporary file and
  hashing them, then the fsync and the renames. Wall time, pool start included.
- reference: the loop a user would write: `pydicom.dcmread`, the modality rescale, then the
  same `preprocess` as Assay (so both do the same work per image), into one in-memory array,
  in one process.
- Assay warm: `open_cache` again, which verifies every block's checksum and maps the file, then
  one pass over every tensor (what an evaluation reads).

The runs alternate (reference, cold, warm) so a change in the machine's load affects all alike;
each is repeated and the medians are compared. Images are written once, before timing, so both
sides read them from the page cache.

`phantoms`: the phantom generator, images per second: in memory at 256 and 512 pixels, and
written as DICOM and as PNG files at 512 pixels. There is no peer tool to compare against.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import median, progress, ratio

NAME = "decode-cache"
PHANTOMS_NAME = "phantoms"
SIZE = 512
INPUT = {
    "channels": 1,
    "height": 224,
    "width": 224,
    "intensity": {"kind": "dicom_window", "center": 2048.0, "width": 4096.0},
}


def _pydicom_loop(dataset: Any, spec: Any) -> np.ndarray:
    """The reference: a plain pydicom loop with the same preprocessing, into one array."""
    import pydicom
    from pydicom.pixels import apply_modality_lut

    from validators.data.preprocess import preprocess
    from validators.data.readers import DecodedImage

    out = np.empty((dataset.n_cases, spec.channels, spec.height, spec.width), dtype=np.float32)
    for row, case in enumerate(dataset.cases):
        ds = pydicom.dcmread(dataset.root / case.path)
        pixels = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
        out[row] = preprocess(DecodedImage(pixels=pixels), spec)
    return out


def run(*, workdir: Path, images: int, repeats: int) -> dict[str, Any]:
    """Times the reference loop, a cold cache build and a warm cache read; gives the medians."""
    from validators.data.cache import default_workers, open_cache
    from validators.data.datasets import load_dataset
    from validators.data.phantoms import write_phantom_dataset
    from validators.manifest import InputSpec

    root = workdir / "decode-cache-dicom"
    progress(f"writing {images} DICOM phantoms of {SIZE}x{SIZE}")
    write_phantom_dataset(root, format="dicom", cases=images, size=SIZE, seed=0)
    dataset = load_dataset(root)
    spec = InputSpec.model_validate(INPUT)
    workers = default_workers()

    reference_s: list[float] = []
    cold_s: list[float] = []
    warm_open_s: list[float] = []
    warm_read_s: list[float] = []
    for attempt in range(repeats):
        started = time.perf_counter()
        expected = _pydicom_loop(dataset, spec)
        reference_s.append(time.perf_counter() - started)

        cache_dir = workdir / f"decode-cache-{attempt}"
        started = time.perf_counter()
        cold = open_cache(dataset, spec, cache_dir, workers=workers)
        cold_s.append(time.perf_counter() - started)
        if cold.decoded != images or not np.array_equal(cold.tensors, expected):
            raise AssertionError("the cache does not hold what the reference loop decoded")
        del cold

        started = time.perf_counter()
        warm = open_cache(dataset, spec, cache_dir, workers=workers)
        warm_open_s.append(time.perf_counter() - started)
        total = float(np.asarray(warm.tensors).sum(dtype=np.float64))
        warm_read_s.append(time.perf_counter() - started)
        if warm.decoded != 0 or not np.isfinite(total):
            raise AssertionError("the warm open decoded again")
        del warm
        shutil.rmtree(cache_dir)
        progress(
            f"decode run {attempt + 1}/{repeats}: pydicom loop {reference_s[-1]:.2f} s, "
            f"cache cold {cold_s[-1]:.2f} s, warm {warm_read_s[-1]:.3f} s"
        )
    reference, cold_m, warm_m = median(reference_s), median(cold_s), median(warm_read_s)
    # The minimum too: on a shared machine the median carries the other work's load, and the
    # reference (BLAS threads that spin while waiting for a core) suffers from it the most.
    reference_best, cold_best, warm_best = min(reference_s), min(cold_s), min(warm_read_s)
    return {
        "images": images,
        "size": SIZE,
        "input": INPUT,
        "workers": workers,
        "repeats": repeats,
        "reference": {
            "wall_s_median": reference,
            "images_per_s": images / reference,
            "wall_s": [round(v, 4) for v in reference_s],
        },
        "cold": {
            "wall_s_median": cold_m,
            "images_per_s": images / cold_m,
            "wall_s": [round(v, 4) for v in cold_s],
        },
        "warm": {
            "open_s_median": median(warm_open_s),
            "read_s_median": warm_m,
            "images_per_s": images / warm_m,
            "read_s": [round(v, 4) for v in warm_read_s],
        },
        "cache_bytes": images * 224 * 224 * 4,
        "best_s": {"reference": reference_best, "cold": cold_best, "warm_read": warm_best},
        "ratios": {
            "cold_speedup_over_pydicom_loop": ratio(reference, cold_m),
            "warm_speedup_over_cold": ratio(cold_m, warm_m),
            "cold_speedup_over_pydicom_loop_best": ratio(reference_best, cold_best),
            "warm_speedup_over_cold_best": ratio(cold_best, warm_best),
        },
    }


def run_phantoms(*, workdir: Path, images: int, repeats: int) -> dict[str, Any]:
    """Times the phantom generator in memory and written to files; gives images per second."""
    from validators.data.phantoms import generate_phantoms, write_phantom_dataset

    measured: dict[str, list[float]] = {
        "memory_256": [],
        "memory_512": [],
        "dicom_512": [],
        "png_512": [],
    }
    for attempt in range(repeats):
        for key in measured:
            kind, size = key.split("_")
            started = time.perf_counter()
            if kind == "memory":
                generate_phantoms(cases=images, size=int(size), seed=attempt)
            else:
                out = workdir / f"phantoms-{key}"
                write_phantom_dataset(
                    out,
                    format=kind,
                    cases=images,
                    size=int(size),
                    seed=attempt,  # type: ignore[arg-type]
                )
                shutil.rmtree(out)
            measured[key].append(time.perf_counter() - started)
        progress(
            f"phantom run {attempt + 1}/{repeats}: "
            + ", ".join(f"{k} {images / v[-1]:.0f} images/s" for k, v in measured.items())
        )
    return {
        "images": images,
        "repeats": repeats,
        "images_per_s": {key: images / median(values) for key, values in measured.items()},
        "wall_s": {key: [round(v, 4) for v in values] for key, values in measured.items()},
    }


# --- the page ----------------------------------------------------------------------------------


def summary_rows(benchmarks: dict[str, Any]) -> list[str]:
    """Gives back the summary table's rows for these benchmarks (none when not measured)."""
    rows = []
    entry = benchmarks.get(NAME)
    if entry:
        cold, ref, warm = entry["cold"], entry["reference"], entry["warm"]
        speedup = entry["ratios"]["cold_speedup_over_pydicom_loop"]
        rows.append(
            f"| decode {entry['images']} DICOM {entry['size']}x{entry['size']} into the cache "
            f"({entry['workers']} workers): wall time, images/s (reference: a pydicom loop, "
            f"same preprocessing) | {cold['wall_s_median']:.2f} s, {cold['images_per_s']:.0f}/s "
            f"| {ref['wall_s_median']:.2f} s, {ref['images_per_s']:.0f}/s | "
            f"{_x(None if not speedup else 1 / speedup)} | |"
        )
        rows.append(
            f"| warm cache read (checksums verified, every tensor read) against a cold decode: "
            f"wall time | {warm['read_s_median']:.3f} s | {cold['wall_s_median']:.2f} s | "
            f"{_x(warm['read_s_median'] / cold['wall_s_median'])} | |"
        )
    phantoms = benchmarks.get(PHANTOMS_NAME)
    if phantoms:
        rates = phantoms["images_per_s"]
        rows.append(
            f"| phantom generation, 512x512: images/s (in memory; written as DICOM) | "
            f"{rates['memory_512']:.0f}; {rates['dicom_512']:.0f} | — | | |"
        )
    return rows


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def section(entry: dict[str, Any]) -> list[str]:
    """Gives back the decode-cache section of docs/benchmarks.md."""
    cold, ref, warm = entry["cold"], entry["reference"], entry["warm"]
    ratios, best = entry["ratios"], entry["best_s"]
    return [
        "## Decode cache: DICOM into preprocessed tensors",
        "",
        f"{entry['images']} synthetic DICOM radiographs of {entry['size']}x{entry['size']} "
        "(16-bit, `assay example-dataset`), preprocessed to 1 x 224 x 224 float32 (DICOM window, "
        "area-averaging resize). The reference is the loop a user would write: `pydicom.dcmread`, "
        "the modality rescale and the same `preprocess`, in one process. Assay cold is "
        f"`open_cache` on an empty directory with {entry['workers']} worker processes (pool start, "
        "writing into the memory-mapped file, checksums and renames included); warm is "
        "`open_cache` again (every block's checksum verified) plus one pass over every tensor. "
        f"Median of {entry['repeats']} alternating runs.",
        "",
        "| run | wall time (median) | images/s (median) | wall time (best) |",
        "| --- | --- | --- | --- |",
        f"| pydicom loop (reference) | {ref['wall_s_median']:.2f} s | "
        f"{ref['images_per_s']:.0f} | {best['reference']:.2f} s |",
        f"| Assay, cold cache | {cold['wall_s_median']:.2f} s | {cold['images_per_s']:.0f} | "
        f"{best['cold']:.2f} s |",
        f"| Assay, warm cache (open {warm['open_s_median'] * 1000:.0f} ms) | "
        f"{warm['read_s_median']:.3f} s | {warm['images_per_s']:,.0f} | "
        f"{best['warm_read']:.3f} s |",
        "",
        f"Cold cache over the pydicom loop: {_x(ratios['cold_speedup_over_pydicom_loop'])} "
        f"faster in the median, {_x(ratios['cold_speedup_over_pydicom_loop_best'])} best "
        f"against best; warm over cold: {_x(ratios['warm_speedup_over_cold'])} faster. The "
        "cold decode gains with the cores (a block of rows per worker at a time, BLAS kept to "
        "one thread per worker); the reference's resize already uses BLAS threads, so on an "
        "idle machine with few cores the two are close, and a wide median gap is mostly the "
        "reference suffering more from other work on the machine (see the load average). "
        f"{_provenance(entry)}",
        "",
    ]


def phantoms_section(entry: dict[str, Any]) -> list[str]:
    """Gives back the phantom-generation section of docs/benchmarks.md."""
    rates = entry["images_per_s"]
    return [
        "## Phantom generation",
        "",
        f"`validators.data.phantoms`, {entry['images']} images per run, one process, median of "
        f"{entry['repeats']}. No peer tool: the figure is there to size `assay example-dataset`.",
        "",
        "| what | images/s |",
        "| --- | --- |",
        f"| in memory, 256x256 | {rates['memory_256']:.0f} |",
        f"| in memory, 512x512 | {rates['memory_512']:.0f} |",
        f"| written as DICOM, 512x512 | {rates['dicom_512']:.0f} |",
        f"| written as 16-bit PNG, 512x512 | {rates['png_512']:.0f} |",
        "",
        _provenance(entry),
        "",
    ]


def _provenance(entry: dict[str, Any]) -> str:
    load = entry.get("load_average_1min")
    shown = f" Load average (1 min) {load['before']} before, {load['after']} after." if load else ""
    return f"Measured {entry['measured_at']} with `{entry['command']}`.{shown}"
