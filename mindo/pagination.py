"""Page-number pagination with `page` and `page_size`, as the contract documents it."""

from __future__ import annotations

from django.conf import settings
from rest_framework import pagination


class PageNumberPagination(pagination.PageNumberPagination):
    page_size = 20
    page_size_query_param = "page_size"
    max_page_size = settings.API_PAGE_SIZE_MAX
