"""The phantoms' image model: anatomy, detector profiles and acquisition (vectorized numpy).

Internal to `validators.data.phantoms` (which re-exports the public names): one patient's
anatomy is drawn from its own random stream, then each acquisition renders it in attenuation
units (`attenuation`), passes it through a detector (`acquire`), and stores it as the
detector's integers (`store`). `docs/datasets.md` tabulates what every attribute and every
detector profile changes; the table mirrors `MANUFACTURERS` here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "FULL_SCALE",
    "MANUFACTURERS",
    "REFERENCE_FOV_MM",
    "SITES",
    "DetectorProfile",
    "PatientAnatomy",
    "acquire",
    "attenuation",
    "draw_patient",
    "random_stream",
    "store",
    "window",
]

# The rescaled (modality) values span 0..FULL_SCALE whatever the detector, as a DX image's do
# after rescale; what differs between detectors is how they are stored.
FULL_SCALE = 4095.0
# Physical width of the reference field of view, in millimetres (a 43 cm detector).
REFERENCE_FOV_MM = 430.0


@dataclass(frozen=True)
class DetectorProfile:
    """How one (made-up) scanner profile turns attenuation into stored pixel values."""

    manufacturer: str
    model: str
    bits_stored: int
    rescale_slope: float
    rescale_intercept: float
    contrast: float  # gain applied to the attenuation image before gamma
    gamma: float  # detector response curve: >1 flattens the dark (lung) range
    noise: float  # standard deviation of the quantum noise at mid-grey, in 0..1 units
    fov_mm: float  # field of view: a wider one shows the anatomy smaller
    kvp: float
    exposure_mas: float
    protocol: str


MANUFACTURERS: tuple[DetectorProfile, ...] = (
    DetectorProfile(
        manufacturer="Siemens",
        model="Phantom DX-S1",
        bits_stored=12,
        rescale_slope=1.0,
        rescale_intercept=0.0,
        contrast=1.0,
        gamma=1.0,
        noise=0.012,
        fov_mm=430.0,
        kvp=125.0,
        exposure_mas=2.0,
        protocol="Chest PA/AP standard",
    ),
    DetectorProfile(
        manufacturer="GE",
        model="Phantom DX-G2",
        bits_stored=14,
        rescale_slope=0.25,
        rescale_intercept=0.0,
        contrast=0.92,
        gamma=0.85,
        noise=0.018,
        fov_mm=400.0,
        kvp=120.0,
        exposure_mas=2.5,
        protocol="THORAX ROUTINE",
    ),
    DetectorProfile(
        manufacturer="Philips",
        model="Phantom DX-P3",
        bits_stored=12,
        rescale_slope=2.0,
        rescale_intercept=-1024.0,
        contrast=0.62,
        gamma=1.35,
        noise=0.04,
        fov_mm=460.0,
        kvp=110.0,
        exposure_mas=3.2,
        protocol="Chest",
    ),
)


# Each site has its own scanner mix (so site and manufacturer are correlated, as in a hospital
# network), and its own exposure habit (a brightness offset in 0..1 units).
SITES: dict[str, tuple[tuple[float, float, float], float]] = {
    "north": ((0.7, 0.2, 0.1), 0.0),
    "south": ((0.2, 0.6, 0.2), 0.02),
    "east": ((0.15, 0.15, 0.7), -0.02),
}


@dataclass(frozen=True)
class PatientAnatomy:
    index: int
    patient_id: str
    sex: Literal["F", "M"]
    age: int
    site: str
    positive: bool
    # Anatomy, in normalized coordinates (the image spans -1..1 at the reference field of view).
    body_width: float
    lung_width: float
    lung_height: float
    lung_gap: float
    heart_width: float
    rib_spacing: float
    bone_density: float
    lesion_side: float  # -1 or +1
    lesion_u: float  # position inside the lung, as a fraction of its half-axes
    lesion_v: float
    lesion_radius: float
    lesion_strength: float


def random_stream(seed: int, purpose: int, index: int) -> np.random.Generator:
    """Gives back the random stream of one (purpose, index), independent of every other."""
    return np.random.default_rng(np.random.SeedSequence([seed, purpose, index]))


def draw_patient(index: int, positive: bool, seed: int) -> PatientAnatomy:
    rng = random_stream(seed, 1, index)
    sex: Literal["F", "M"] = "F" if rng.random() < 0.5 else "M"
    age = int(np.clip(rng.normal(58.0, 16.0), 18, 95))
    site = str(rng.choice(list(SITES), p=[0.45, 0.35, 0.2]))
    scale = 0.94 if sex == "F" else 1.0
    return PatientAnatomy(
        index=index,
        patient_id=f"phantom-patient-{index + 1:05d}",
        sex=sex,
        age=age,
        site=site,
        positive=positive,
        body_width=float(rng.uniform(0.84, 0.95) * scale),
        lung_width=float(rng.uniform(0.25, 0.30) * scale),
        lung_height=float(rng.uniform(0.58, 0.68) * scale),
        lung_gap=float(rng.uniform(0.32, 0.37) * scale),
        heart_width=float(rng.uniform(0.22, 0.30)),
        rib_spacing=float(rng.uniform(0.16, 0.19) * scale),
        # Bone density falls after 50: older patients' ribs show less.
        bone_density=float(np.clip(1.0 - 0.008 * max(age - 50, 0) + rng.normal(0, 0.05), 0.5, 1.1)),
        lesion_side=float(rng.choice([-1.0, 1.0])),
        lesion_u=float(rng.uniform(-0.45, 0.45)),
        lesion_v=float(rng.uniform(-0.4, 0.5)),
        lesion_radius=float(rng.uniform(0.04, 0.08)),
        lesion_strength=float(rng.uniform(0.12, 0.24)),
    )


def _smooth_mask(
    x: NDArray[np.floating[Any]],
    y: NDArray[np.floating[Any]],
    cx: float,
    cy: float,
    rx: float,
    ry: float,
    edge: float = 0.08,
) -> NDArray[np.float32]:
    """Gives back an ellipse's mask, 1 inside and 0 outside, with a soft edge of width `edge`."""
    r = np.sqrt(np.square((x - cx) / rx) + np.square((y - cy) / ry))
    t = np.clip((1.0 - r) / edge, 0.0, 1.0)
    out: NDArray[np.float32] = (t * t * (3.0 - 2.0 * t)).astype(np.float32)
    return out


def attenuation(
    patient: PatientAnatomy, view: str, size: int, fov_scale: float, rng: np.random.Generator
) -> NDArray[np.float32]:
    """Gives back the patient's attenuation image (H, W) in 0..1 for one acquisition."""
    # Positioning differs a little between images: shift and a small rotation.
    # Python floats (not numpy float64 scalars) keep the float32 arithmetic in float32.
    shift_x, shift_y = (float(value) for value in rng.normal(0.0, 0.025, size=2))
    angle = float(rng.normal(0.0, 0.03))
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    gx, gy = np.meshgrid(axis * fov_scale, axis * fov_scale)
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    x = cos * (gx - shift_x) - sin * (gy - shift_y)
    y = sin * (gx - shift_x) + cos * (gy - shift_y)
    # AP (portable, beam from the front) magnifies the heart, which lies far from the detector.
    heart_scale = 1.18 if view == "AP" else 1.0

    # The torso is a superellipse (square shoulders), wider than it is deep on the image.
    # (Squares of squares: numpy's `** 4` on float32 takes a slow general power path.)
    across, down = np.square(x / patient.body_width), np.square((y - 0.25) / 1.25)
    torso = np.clip(1.0 - (np.square(across) + np.square(down)), 0.0, None)
    body = np.clip(torso / 0.25, 0.0, 1.0)
    thorax = _smooth_mask(x, y, 0.0, -0.1, patient.lung_gap + patient.lung_width + 0.08, 0.78)
    # Lungs narrow towards the apex: scale x by the height within the lung.
    lung_y = -0.1
    taper = 1.0 + 0.35 * np.clip((lung_y - y) / patient.lung_height, 0.0, 1.0)
    lungs = np.maximum(
        _smooth_mask(
            (x + patient.lung_gap) * taper,
            y,
            0.0,
            lung_y,
            patient.lung_width,
            patient.lung_height,
        ),
        _smooth_mask(
            (x - patient.lung_gap) * taper,
            y,
            0.0,
            lung_y,
            patient.lung_width,
            patient.lung_height,
        ),
    )
    # On a PA image the heart lies on the image's right (the patient's left).
    heart = _smooth_mask(
        x, y, 0.08, 0.22, patient.heart_width * heart_scale, 0.2 * heart_scale, edge=0.25
    )
    mediastinum = _smooth_mask(x, y, 0.0, -0.2, 0.12, 0.6, edge=0.3)
    spine = np.clip(1.0 - np.abs(x) / 0.06, 0.0, 1.0) * body
    # Posterior ribs: arcs that fall laterally, a smooth bump once per rib spacing.
    phase = (y - 0.5 * x * x) / patient.rib_spacing
    ribs = np.exp(-np.square((phase - np.floor(phase)) - 0.5) / 0.015) * thorax * (y < 0.5)

    soft = np.maximum(heart, mediastinum)
    attenuation = 0.03 + 0.45 * body
    attenuation -= 0.34 * lungs * (1.0 - soft)
    attenuation += 0.12 * soft * body
    attenuation += 0.10 * patient.bone_density * (ribs + 0.4 * spine)
    if patient.sex == "F":
        # Breast soft tissue over the lower lateral lung fields.
        attenuation += 0.06 * _smooth_mask(np.abs(x), y, 0.45, 0.35, 0.3, 0.25, edge=0.4)
    # Drawn whatever the label, so that the rest of the image's stream (its noise) does not
    # depend on the label: a positive image and its lesion-free twin differ by the lesion alone.
    jitter_x, jitter_y = (float(value) for value in rng.normal(0.0, 0.01, size=2))
    if patient.positive:
        cx = patient.lesion_side * (patient.lung_gap + patient.lesion_u * patient.lung_width)
        cy = -0.1 + patient.lesion_v * patient.lung_height
        cx, cy = cx + jitter_x, cy + jitter_y
        radius = patient.lesion_radius
        nodule = np.exp(-(np.square(x - cx) + np.square(y - cy)) / (2.0 * radius * radius))
        attenuation += patient.lesion_strength * nodule
    out: NDArray[np.float32] = np.clip(attenuation, 0.0, 1.0).astype(np.float32)
    return out


def acquire(
    attenuation: NDArray[np.float32],
    profile: DetectorProfile,
    *,
    view: str,
    site_offset: float,
    rng: np.random.Generator,
) -> NDArray[np.float32]:
    """Gives back the detector's image in 0..1: contrast, gamma, background, noise."""
    size = attenuation.shape[0]
    # Portable AP images: lower contrast and more scatter noise.
    contrast = profile.contrast * (0.9 if view == "AP" else 1.0)
    noise = profile.noise * (1.3 if view == "AP" else 1.0)
    image = contrast * np.power(attenuation, np.float32(profile.gamma)) + site_offset
    # Heel effect: a smooth gradient across the field, of a random direction and strength.
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    tilt = rng.normal(0.0, 0.03, size=2).astype(np.float32)
    image = image + tilt[0] * axis[None, :] + tilt[1] * axis[:, None] + np.float32(0.08)
    # Quantum noise grows with the signal's square root.
    image += (
        np.float32(noise)
        * np.sqrt(np.clip(image, 0.0, None) + np.float32(0.05))
        * (rng.standard_normal((size, size), dtype=np.float32))
    )
    out: NDArray[np.float32] = np.clip(image, 0.0, 1.0)
    return out


def store(image: NDArray[np.float32], profile: DetectorProfile) -> NDArray[np.uint16]:
    """Gives back the stored values whose rescale gives image x FULL_SCALE."""
    stored = (image * np.float32(FULL_SCALE) - np.float32(profile.rescale_intercept)) / np.float32(
        profile.rescale_slope
    )
    top = (1 << profile.bits_stored) - 1
    out: NDArray[np.uint16] = np.clip(np.rint(stored), 0, top).astype(np.uint16)
    return out


def window(rescaled: NDArray[np.float32]) -> tuple[float, float]:
    """Gives back the (center, width) a modality would store: the 1st to 99th percentile."""
    # A strided sample is enough for percentiles, and keeps this cheap at 2048 pixels square.
    sample = rescaled[::4, ::4]
    low, high = np.percentile(sample, [1.0, 99.0])
    width = max(float(high - low), 1.0)
    return round(float(low) + width / 2.0, 1), round(width, 1)
