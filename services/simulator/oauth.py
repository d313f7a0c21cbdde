"""The OAuth install on the simulator's own host (the `NUVEMSHOP_AUTH_URL`). Visiting
`/apps/{app_id}/authorize?state=...` stands for the merchant logging in and approving: it answers
302 to the configured redirect URL with `?code=...&state=...`. The approving store is the
`store_id` query parameter if given (a simulator extension), else the state's `install_store_id`,
else a brand-new store. `POST /apps/authorize/token` trades the single-use, five-minute code for
an access token (JSON or form body); the answer's `user_id` alternates between string and integer
(first exchange a string) because both have been seen. Errors answer 400 `{"error", "error_description"}`.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web
from yarl import URL

from services.simulator.state import InvalidGrantError
from services.simulator.webutil import STATE_KEY, ApiError, json_response, not_found, read_json


async def authorize(request: web.Request) -> web.Response:
    """`GET /apps/{app_id}/authorize` → 302 to the redirect URL with a code."""
    state = request.app[STATE_KEY]
    if request.match_info["app_id"] != state.app_id:
        return json_response(not_found(f"App {request.match_info['app_id']} not found").body, 404)
    raw_store = request.query.get("store_id")
    try:
        wanted = int(raw_store) if raw_store else None
    except ValueError:
        return json_response({"error": "store_id must be an integer"}, 400)
    code, _ = state.issue_code(wanted)
    query = {"code": code}
    if "state" in request.query:
        query["state"] = request.query["state"]
    location = URL(state.redirect_url).update_query(query)
    raise web.HTTPFound(location)


async def _form(request: web.Request) -> Mapping[str, object]:
    if request.content_type == "application/json":
        return await read_json(request)
    if request.content_type == "application/x-www-form-urlencoded":
        return dict(await request.post())
    raise ApiError(415, {"error": "Content-Type must be application/json"})


async def token(request: web.Request) -> web.Response:
    """`POST /apps/authorize/token` → the access token."""
    state = request.app[STATE_KEY]
    try:
        form = await _form(request)
    except ApiError as exc:
        return json_response(exc.body, exc.status)
    fields = {key: form.get(key) for key in ("client_id", "client_secret", "grant_type", "code")}
    missing = [key for key, value in fields.items() if not isinstance(value, str) or not value]
    if missing:
        return json_response(
            {"error": "invalid_request", "error_description": f"missing {', '.join(missing)}"},
            400,
        )
    if fields["grant_type"] != "authorization_code":
        return json_response(
            {"error": "unsupported_grant_type", "error_description": "use authorization_code"},
            400,
        )
    try:
        answer = state.exchange_code(
            str(fields["client_id"]), str(fields["client_secret"]), str(fields["code"])
        )
    except InvalidGrantError as exc:
        return json_response({"error": "invalid_grant", "error_description": str(exc)}, 400)
    return json_response(answer)


def add_routes(app: web.Application) -> None:
    """Register the OAuth routes."""
    app.router.add_get("/apps/{app_id}/authorize", authorize, name="oauth-authorize")
    app.router.add_post("/apps/authorize/token", token, name="oauth-token")
