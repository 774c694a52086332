"""Settings from ASSAY_* environment variables; unsafe production settings are refused."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from registry.storage import private_dir

GIB = 1024**3


class Settings(BaseSettings):
    """Everything the service reads from the environment, with safe local defaults."""

    model_config = SettingsConfigDict(env_prefix="ASSAY_", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    home: Path = Path("./.assay")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default: SQLite file inside ASSAY_HOME.",
    )
    max_artifact_bytes: int = Field(default=2 * GIB, gt=0)
    max_manifest_bytes: int = Field(default=1024 * 1024, gt=0)
    max_json_bytes: int = Field(
        default=64 * 1024,
        gt=0,
        description="Largest JSON request body; a route that needs more declares its own limit.",
    )
    inspection_memory_bytes: int = Field(default=8 * GIB, gt=0)
    inspection_timeout_s: float = Field(default=600.0, gt=0)
    max_concurrent_intakes: int = Field(
        default=2,
        ge=1,
        description="Submissions inspected and recorded at once; the others wait in order.",
    )
    # Under the client's 300 s read timeout for a submission, so a waiting client gets a clear 503.
    intake_wait_s: float = Field(
        default=120.0,
        ge=0,
        description="How long a received submission waits for an intake slot before 503.",
    )
    allow_sqlite_in_production: bool = False
    sandbox_allow_weaker: bool = Field(
        default=False,
        description="Run vendor models even where a sandbox measure (new namespaces, the switch "
        "to `nobody`) cannot be set up; every result records which measures applied.",
    )
    audit_key_path: Path | None = Field(
        default=None,
        description="Ed25519 private key that signs audit checkpoints; default: "
        "ASSAY_HOME/keys/audit-checkpoint.pem, created (0600) on first need.",
    )
    checkpoint_interval_s: float = Field(
        default=300.0,
        gt=0,
        description="How often the server signs a checkpoint of the audit chain (if it moved).",
    )
    max_header_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        description="Largest request head (request line and headers) the server reads; larger "
        "gets 431 and the connection is closed.",
    )
    header_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="Seconds a connection may take to send a complete request head (counted from "
        "when it opens, or from the previous response); then it is closed (408 if a head began).",
    )

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if (
            self.environment == "production"
            and self.database_url is None
            and not self.allow_sqlite_in_production
        ):
            raise ValueError(
                "ASSAY_ENVIRONMENT=production needs ASSAY_DATABASE_URL (PostgreSQL); "
                "set ASSAY_ALLOW_SQLITE_IN_PRODUCTION=true to run one machine on SQLite."
            )
        return self

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home_dir / 'assay.db'}"

    @property
    def artifacts_dir(self) -> Path:
        return self.home_dir / "artifacts"

    @property
    def audit_key_file(self) -> Path:
        if self.audit_key_path is not None:
            return self.audit_key_path.expanduser().resolve()
        return self.home_dir / "keys" / "audit-checkpoint.pem"

    @property
    def tmp_dir(self) -> Path:
        return self.home_dir / "tmp"

    @property
    def quarantine_dir(self) -> Path:
        """Where artifacts that no version references are moved (see `assay doctor`)."""
        return self.home_dir / "quarantine"

    def sandbox_hidden_paths(self) -> list[Path]:
        """Gives back the folders no sandboxed child may see: ASSAY_HOME, the SQLite database's
        and the audit key's (dataset roots are added by whoever runs a model on a dataset)."""
        from sqlalchemy.engine import make_url

        paths = [self.home_dir, self.audit_key_file.parent]
        url = make_url(self.sqlalchemy_url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            paths.append(Path(url.database).expanduser().resolve().parent)
        # A folder inside another one is hidden with it.
        return sorted(p for p in set(paths) if not any(o in p.parents for o in paths))

    def ensure_dirs(self) -> None:
        """Create ASSAY_HOME and its folders, owner-only (0700), tightening existing ones."""
        for path in (self.home_dir, self.artifacts_dir, self.tmp_dir):
            private_dir(path)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
