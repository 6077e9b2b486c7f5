"""Page-number pagination with `page` and `page_size`, as the contract documents it."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from rest_framework import pagination
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from mindo.query_params import positive_int_parse


def _query_int(request: Request, name: str) -> int | None:
    """The positive whole number in `?name=`, None when absent or empty, 400 naming it if bad."""
    text = request.query_params.get(name)
    if not text:
        return None
    try:
        return positive_int_parse(text)
    except ValueError as error:
        raise ValidationError({name: [str(error)]}) from None


class PageNumberPagination(pagination.PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = settings.API_PAGE_SIZE_MAX

    # DRF falls back to the default for a page size it cannot read and hands any page string to
    # the paginator; both are refused here instead, with a 400 naming the parameter.
    def get_page_size(self, request: Request) -> int:
        asked = _query_int(request, self.page_size_query_param)
        if asked is None:
            return self.page_size
        # Asking for more than the maximum gets the maximum, as the README documents.
        return min(asked, self.max_page_size)

    def get_page_number(self, request: Request, paginator: Paginator) -> int:
        if request.query_params.get(self.page_query_param) in self.last_page_strings:
            return paginator.num_pages
        return _query_int(request, self.page_query_param) or 1


class PageByKeysPaginator(Paginator):
    """Reads a page of an ordered queryset in two steps, in one statement: the page's primary keys,
    then the rows with those keys.

    With OFFSET, PostgreSQL reads every row it skips. Asked for keys only, it skips entries of an
    index that holds the filter and the order (an index-only scan), and reads just the page's rows
    from the table. A page past the middle is counted from the end, in reverse order: the last
    page of 100,000 rows skips nothing.
    """

    def page(self, number: int | str) -> Page:
        page = super().page(number)
        # The bounds Paginator.page has just sliced (the last page may be short, or take orphans).
        bottom = (page.number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        rows = self.page_rows(bottom, top)
        if rows is not None:
            page.object_list = rows
        return page

    def page_rows(self, bottom: int, top: int) -> Any:
        """The rows from `bottom` to `top` (None: Paginator's own slice, for what is not a
        queryset)."""
        rows = self.object_list
        if not isinstance(rows, QuerySet):
            return None
        return rows_by_keys(rows, bottom, top, self.count)


def rows_by_keys(rows: QuerySet[Any], bottom: int, top: int, count: int) -> QuerySet[Any]:
    """`rows[bottom:top]` (of `count`) as PageByKeysPaginator reads them: their keys first, from
    the end in reverse past the middle. `rows` is filtered and ordered already: the page keeps
    its filters, its order and its select_related."""
    return rows_of_keys_slice(rows, keys_slice(bottom, top, count))


def keys_slice(bottom: int, top: int, count: int) -> tuple[bool, int, int]:
    """Where the keys of `rows[bottom:top]` (of `count`) are read: (from the end, start, stop)."""
    if bottom > count - top:
        return True, count - top, count - bottom
    return False, bottom, top


def rows_of_keys_slice(rows: QuerySet[Any], where: tuple[bool, int, int]) -> QuerySet[Any]:
    from_end, start, stop = where
    keys = (rows.reverse() if from_end else rows)[start:stop].values("pk")
    return rows.filter(pk__in=keys)
