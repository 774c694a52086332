"""The application's shared resources (settings, engine, artifact store) and their dependencies.

`create_app` installs them once; routes receive them as Annotated dependencies (`SettingsDep`,
`EngineDep`, `StoreDep`), which tests can replace through `app.dependency_overrides`; code that
cannot use `Depends` (middleware, the lifespan, the authentication that RequestGuard runs) reads
them through `app_resources`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from starlette.applications import Starlette

from registry.settings import Settings
from registry.storage import ArtifactStore


@dataclass(frozen=True)
class AppResources:
    """What one application instance serves from: its settings, database engine and store."""

    settings: Settings
    engine: Engine
    store: ArtifactStore


def install_resources(app: Starlette, resources: AppResources) -> None:
    """Puts the resources on the app's state; gives back nothing."""
    state = app.state
    state.settings = resources.settings
    state.engine = resources.engine
    state.store = resources.store


def app_resources(app: Starlette) -> AppResources:
    """Gives back the resources `install_resources` put on the app (the one typed reader)."""
    state = app.state
    return AppResources(settings=state.settings, engine=state.engine, store=state.store)


# async: a plain function would be sent to the thread pool on every request that uses it.
async def app_settings(request: Request) -> Settings:
    """Gives back the settings the application was built with."""
    return app_resources(request.app).settings


async def app_engine(request: Request) -> Engine:
    """Gives back the application's database engine."""
    return app_resources(request.app).engine


async def app_store(request: Request) -> ArtifactStore:
    """Gives back the application's artifact store."""
    return app_resources(request.app).store


SettingsDep = Annotated[Settings, Depends(app_settings)]
EngineDep = Annotated[Engine, Depends(app_engine)]
StoreDep = Annotated[ArtifactStore, Depends(app_store)]
