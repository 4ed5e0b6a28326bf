"""The request seam now lives below api/ and security/, in healthtwin/request.py; this name re-exports it."""
from ..request import PURPOSE_CODE, Caller, OpenPolicy, Policy, RequestContext

__all__ = ["PURPOSE_CODE", "Caller", "OpenPolicy", "Policy", "RequestContext"]
