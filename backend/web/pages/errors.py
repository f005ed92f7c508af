"""Errors a person meets in the browser, as pages in the app's layout with a way back, not the
API's JSON: a bad filter or date (400), a page that is not theirs (403), one that does not exist
(404). Programs (the API, postbacks, anything not asking for HTML) keep their JSON answers."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException
from litestar.exceptions.responses import create_exception_response
from litestar.response import Template

TITLES = {
    400: "This cannot be shown",
    401: "Please sign in",
    403: "This page is not yours to see",
    404: "This page does not exist",
    405: "This page does not take that request",
}
PROGRAM_PATHS = ("/api/", "/pb/", "/schema")


def error_page(request: Request[Any, Any, Any], error: HTTPException) -> Response[Any]:
    """The error as a page; the request's own path without its query is the way back from a
    bad filter or date."""
    status = error.status_code
    detail = error.detail if status < 500 and error.detail != _default_detail(status) else ""
    context = {
        "title": TITLES.get(status, "Something went wrong"),
        "status": status,
        "detail": detail,
        "retry": request.url.path if request.url.query and status == 400 else None,
    }
    return Template("error.html", context=context, status_code=status)


def error_answer(request: Request[Any, Any, Any], error: HTTPException) -> Response[Any]:
    """A page for a browser; for a program, the JSON Litestar gives by default."""
    accepts_html = MediaType.HTML.value in request.headers.get("accept", "")
    if accepts_html and not request.url.path.startswith(PROGRAM_PATHS):
        return error_page(request, error)
    return create_exception_response(request, error)


def _default_detail(status: int) -> str:
    return HTTPStatus(status).phrase
