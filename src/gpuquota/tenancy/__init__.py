"""Namespace → tenant → jurisdiction: the tenants file and the admin-set Namespace labels."""

from gpuquota.tenancy.countries import country_codes, is_country, validate_country
from gpuquota.tenancy.directory import (
    JURISDICTION_LABEL,
    TENANT_LABEL,
    TenancyError,
    TenantDirectory,
    load_tenants,
    parse_tenants,
)

__all__ = [
    "JURISDICTION_LABEL",
    "TENANT_LABEL",
    "TenancyError",
    "TenantDirectory",
    "country_codes",
    "is_country",
    "load_tenants",
    "parse_tenants",
    "validate_country",
]
