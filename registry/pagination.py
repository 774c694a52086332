"""Paginated list responses: `{data, count}` with `limit` and `offset` query parameters."""

from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    """One page of a list: the items and the total count of the unpaged list."""

    data: list[T]
    count: int


MAX_LIMIT = 500
MAX_OFFSET = 2**31 - 1
"""Bounds that keep `LIMIT`/`OFFSET` inside every database's integer range (2^63 overflows)."""


class PageParams(BaseModel):
    limit: int
    offset: int


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


PageDep = Annotated[PageParams, Depends(page_params)]
