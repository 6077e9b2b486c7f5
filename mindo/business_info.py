"""`GET /api/v1/business-info/`: the profile of the organization that owns the API key."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mindo.models import ApiKeyScope, CompanySize, CompanyType, Organization
from mindo.tenancy import request_organization


class BusinessInfoSerializer(serializers.Serializer[Organization]):
    """The contract's fields, in its camelCase. Empty text fields are `""`; only the size and its
    label are `null` when the size is unset, as the contract has it."""

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(read_only=True)
    email = serializers.CharField(read_only=True)
    phone = serializers.CharField(read_only=True)
    website = serializers.CharField(read_only=True)
    address = serializers.CharField(read_only=True)
    description = serializers.CharField(read_only=True)
    timezone = serializers.CharField(read_only=True)
    companySize = serializers.ChoiceField(
        choices=CompanySize.choices, source="company_size", allow_null=True, read_only=True
    )
    # Django's `get_<field>_display` reads the Spanish label of CompanySize, None when unset.
    companySizeDisplay = serializers.CharField(
        source="get_company_size_display", allow_null=True, read_only=True
    )
    companyTypes = serializers.ListField(
        child=serializers.ChoiceField(choices=CompanyType.choices),
        source="company_types",
        read_only=True,
    )
    categories = serializers.ListField(child=serializers.CharField(), read_only=True)


class BusinessInfoView(APIView):
    required_scope = ApiKeyScope.ACCOUNT

    @extend_schema(operation_id="business_info", responses={200: BusinessInfoSerializer})
    def get(self, request: Request) -> Response:
        # Read afresh: the key's organization may come from the key cache, up to
        # API_KEY_CACHE_SECONDS old, and an edit in the admin should show at once.
        organization = Organization.objects.get(pk=request_organization(request).pk)
        return Response(BusinessInfoSerializer(organization).data)
