"""`/_session` (couch_httpd_auth:handle_session_req/2): cookie sign-in and sign-out."""

from __future__ import annotations

from aiohttp import web

from ..auth import session_info, unauthorized_login
from ..errors import CouchError, bad_request
from .base import Request, allow, json_response


async def session(req: Request) -> web.Response:
    auth = req.cluster.auth
    if req.method in ("GET", "HEAD"):
        if req.ctx.name is None and req.query.get("basic") == "true":
            raise CouchError(401, "unauthorized", "Please login.")
        return json_response(session_info(req.ctx))
    if req.method == "DELETE":
        return json_response({"ok": True}, headers={"Set-Cookie": auth.set_cookie_header("", expire=True)})
    allow(req, "GET", "HEAD", "POST", "DELETE")
    ctype = req.http.content_type
    if ctype.startswith("application/x-www-form-urlencoded"):
        form = await req.http.post()
        name, password = form.get("name"), form.get("password")
    elif ctype.startswith("application/json"):
        body = await req.json_object()
        name, password = body.get("name"), body.get("password")
    else:
        raise CouchError(415, "bad_content_type",
                         "Content-Type must be application/x-www-form-urlencoded or application/json")
    if not isinstance(name, str):
        raise bad_request("request body must contain a username")
    ctx = await auth.verify(name, password) if isinstance(password, str) else None
    if ctx is None:
        # couch_httpd_auth:handle_session_req/2 clears the cookie along with the 401
        error = unauthorized_login()
        error.headers["Set-Cookie"] = auth.set_cookie_header("", expire=True)
        raise error
    headers = {"Set-Cookie": auth.set_cookie_header(auth.make_cookie(name))}
    next_url = req.query.get("next")
    if next_url:
        return json_response({"ok": True, "name": ctx.name, "roles": ctx.roles}, 302, {**headers, "Location": next_url})
    return json_response({"ok": True, "name": ctx.name, "roles": ctx.roles}, headers=headers)
