"""Page-number pagination with `page` and `page_size`, as the contract documents it."""

from __future__ import annotations

from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from rest_framework import pagination


class PageNumberPagination(pagination.PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = settings.API_PAGE_SIZE_MAX


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
        rows = self.object_list
        if not (isinstance(page.object_list, QuerySet) and isinstance(rows, QuerySet)):
            return page
        # The bounds Paginator.page has just sliced (the last page may be short, or take orphans).
        bottom = (page.number - 1) * self.per_page
        top = bottom + self.per_page
        if top + self.orphans >= self.count:
            top = self.count
        if bottom > self.count - top:
            keys = rows.reverse()[self.count - top : self.count - bottom].values("pk")
        else:
            keys = rows[bottom:top].values("pk")
        # `rows` is filtered and ordered already: the page keeps its filters, its order and its
        # select_related.
        page.object_list = rows.filter(pk__in=keys)
        return page
