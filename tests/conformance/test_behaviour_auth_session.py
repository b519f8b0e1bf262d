"""Authentication: basic auth, cookie sessions (POST/GET/DELETE /_session) and CouchDB's 401 bodies.

Source: src/couch/src/couch_httpd_auth.erl (default_authentication_handler, cookie_authentication_handler,
handle_session_req); recorded exchanges "session as carl" and "session anon".
"""

from behaviour_fixtures import Client, answer, db_url

WRONG = {"error": "unauthorized", "reason": "Name or password is incorrect."}


def test_basic_auth_with_a_wrong_password_is_401(server, new_user):
    """couch_httpd_auth:default_authentication_handler: authenticate() false -> {unauthorized, "Name or password is incorrect."}."""
    user = new_user()
    client = Client(server.url, (user.name, "not-" + user.password))
    response = client.get("/")
    assert answer(response) == (401, WRONG)
    client.close()


def test_basic_auth_for_an_unknown_user_is_401(server, new_name):
    """couch_httpd_auth:default_authentication_handler: get_user_creds -> nil -> the same 401 body (no user enumeration)."""
    client = Client(server.url, (new_name("ghost"), "whatever"))
    response = client.get("/_session")
    assert answer(response) == (401, WRONG)
    client.close()


def test_basic_auth_session_reports_default_handler(server, new_user):
    """couch_httpd_auth:handle_session_req GET: userCtx with the user's roles, authenticated "default"
    (recorded exchange "session as carl")."""
    user = new_user(roles=["app-user"])
    response = user.client.get("/_session")
    assert response.status_code == 200
    assert response.json() == {
        "ok": True,
        "userCtx": {"name": user.name, "roles": ["app-user"]},
        "info": {"authentication_handlers": ["cookie", "default"], "authenticated": "default"},
    }


def test_server_admin_session_has_the_admin_role(server):
    """couch_httpd_auth:default_authentication_handler with an [admins] credential -> roles ["_admin"]."""
    body = server.admin.get("/_session").json()
    assert body["userCtx"] == {"name": server.admin_name, "roles": ["_admin"]}


def test_login_with_json_sets_an_httponly_session_cookie(server, new_user):
    """couch_httpd_auth:handle_session_req POST (application/json): 200 {"ok":true,"name":..,"roles":[..]} and
    Set-Cookie AuthSession with Path=/ and HttpOnly (cookie_attributes)."""
    user = new_user(roles=["reader"])
    response = server.anon.http.post(server.url + "/_session", json={"name": user.name, "password": user.password})
    assert answer(response) == (200, {"ok": True, "name": user.name, "roles": ["reader"]})
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("AuthSession=")
    assert "Path=/" in cookie and "HttpOnly" in cookie
    timeout = server.admin.get("/_node/_local/_config/chttpd_auth/timeout")
    # max_age(): [chttpd_auth] allow_persistent_cookies defaults to true, Max-Age = timeout (default 600 s)
    assert f"Max-Age={timeout.json() if timeout.status_code == 200 else 600}" in cookie


def test_login_with_a_form_works_too(server, new_user):
    """couch_httpd_auth:handle_session_req accepts application/x-www-form-urlencoded (mochiweb_util:parse_qs)."""
    user = new_user()
    response = server.anon.http.post(server.url + "/_session", data={"name": user.name, "password": user.password})
    assert (response.status_code, response.json()["name"]) == (200, user.name)
    assert "AuthSession" in response.cookies


def test_cookie_authenticates_later_requests(server, new_user):
    """couch_httpd_auth:cookie_authentication_handler: a valid AuthSession cookie sets the userCtx;
    GET /_session then reports authenticated "cookie"."""
    user = new_user(roles=["r1"])
    browser = Client(server.url)
    assert browser.post("/_session", json={"name": user.name, "password": user.password}).status_code == 200
    body = browser.get("/_session").json()
    assert body["userCtx"] == {"name": user.name, "roles": ["r1"]}
    assert body["info"]["authenticated"] == "cookie"
    browser.close()


def test_cookie_grants_what_the_user_may_do(server, new_user, new_db):
    """The cookie carries the same identity as basic auth: a member (by name) reads the db (couch_db:check_is_member)."""
    user = new_user()
    db = new_db(security={"members": {"names": [user.name]}})
    browser = Client(server.url)
    browser.post("/_session", json={"name": user.name, "password": user.password})
    assert browser.get(db_url(db)).status_code == 200
    browser.close()


def test_wrong_password_login_is_401(server, new_user):
    """couch_httpd_auth:handle_session_req POST, authenticate false: 401 "Name or password is incorrect."."""
    user = new_user()
    response = server.anon.http.post(server.url + "/_session", json={"name": user.name, "password": "wrong"})
    assert answer(response) == (401, WRONG)


def test_wrong_password_login_clears_the_cookie(server, new_user):
    """couch_httpd_auth:handle_session_req POST, authenticate false: Cookie = clear_auth_cookie(Req) is sent with the 401."""
    user = new_user()
    response = server.anon.http.post(server.url + "/_session", json={"name": user.name, "password": "wrong"})
    assert response.headers.get("Set-Cookie", "").startswith("AuthSession=;")


def test_login_without_a_name_is_400(server):
    """couch_httpd_auth:extract_username: neither name nor username -> {bad_request, "request body must contain a username"}."""
    response = server.anon.post("/_session", json={"password": "x"})
    assert answer(response) == (400, {"error": "bad_request", "reason": "request body must contain a username"})


def test_logout_clears_the_cookie_and_the_session(server, new_user):
    """couch_httpd_auth:handle_session_req DELETE: 200 {"ok":true} and an emptied AuthSession cookie; afterwards anonymous."""
    user = new_user()
    browser = Client(server.url)
    browser.post("/_session", json={"name": user.name, "password": user.password})
    response = browser.delete("/_session")
    assert answer(response) == (200, {"ok": True})
    assert response.headers["Set-Cookie"].startswith("AuthSession=;")
    assert browser.get("/_session").json()["userCtx"] == {"name": None, "roles": []}
    browser.close()


def test_anonymous_session(server):
    """couch_httpd_auth:handle_session_req GET with no credentials: name null, no "authenticated" (recorded exchange "session anon")."""
    response = server.anon.get("/_session")
    assert response.json() == {"ok": True, "userCtx": {"name": None, "roles": []},
                               "info": {"authentication_handlers": ["cookie", "default"]}}


def test_session_with_basic_true_demands_a_login(server):
    """couch_httpd_auth:handle_session_req GET ?basic=true with no user -> {unauthorized, "Please login."}."""
    response = server.anon.get("/_session", params={"basic": "true"})
    assert answer(response) == (401, {"error": "unauthorized", "reason": "Please login."})


def test_garbage_cookie_is_400(server):
    """couch_httpd_auth:cookie_authentication_handler: undecodable AuthSession -> 400
    "Malformed AuthSession cookie. Please clear your cookies."."""
    response = server.anon.get("/_session", headers={"Cookie": "AuthSession=%%%not-base64"})
    assert answer(response) == (
        400, {"error": "bad_request", "reason": "Malformed AuthSession cookie. Please clear your cookies."})


def test_session_refuses_other_methods(server):
    """couch_httpd_auth:handle_session_req: send_method_not_allowed(Req, "GET,HEAD,POST,DELETE")."""
    response = server.admin.put("/_session", json={})
    assert answer(response) == (
        405, {"error": "method_not_allowed", "reason": "Only GET,HEAD,POST,DELETE allowed"})


def test_password_change_invalidates_session_cookies(server, new_user, poll):
    """couch_httpd_auth:cookie_authentication_handler signs the cookie with secret + the user's salt; a password
    change writes a new salt (couch_users_db:save_doc), so older cookies stop authenticating."""
    user = new_user(password="before")
    browser = Client(server.url)
    assert browser.post("/_session", json={"name": user.name, "password": "before"}).status_code == 200
    doc = server.admin.get(f"/_users/org.couchdb.user:{user.name}").json()
    assert server.admin.put(f"/_users/org.couchdb.user:{user.name}", json={**doc, "password": "after"}).status_code == 201
    poll(lambda: browser.get("/_session").json()["userCtx"]["name"] is None, what="old cookie rejected")
    browser.close()


def test_server_admin_can_log_in_with_a_cookie(server):
    """couch_httpd_auth:handle_session_req POST with an [admins] credential: roles ["_admin"]."""
    browser = Client(server.url)
    response = browser.post("/_session", json={"name": server.admin_name, "password": server.admin_password})
    assert answer(response) == (200, {"ok": True, "name": server.admin_name, "roles": ["_admin"]})
    assert browser.get("/_session").json()["userCtx"]["roles"] == ["_admin"]
    browser.close()
