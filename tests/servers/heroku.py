"""A stand-in for Heroku's Platform API and id service, held to the official schema.

Every Platform API request is matched to its link in ``reference/heroku/platform-api-schema.json``
and its body validated against that link's schema (``strictProperties`` enforced, so a misspelt
field fails). Answers are built from the schema's own examples and validated against the link's
target schema before they are sent. Validation failures are answered with 422 and kept in
``problems``, which tests assert to be empty.

With ``partner_only`` set, its tokens are what an add-on's are: good for the subset of the
Platform API that Dev Center's "Platform API for Partners" documents for add-ons (the add-on's own
info, actions, attachments, config and webhooks, its app's info and collaborators, its log
drains), and answered 403 everywhere else, dynos among them.

Fixture: ``heroku`` (function) a running stand-in: ``api_url``, ``id_url``, ``grant(...)``,
``add_addon(...)``, ``answer_first(...)``, ``partner_only``, ``requests``, ``problems``, ``dynos``,
and two ways to misbehave on a dyno create: ``held`` (answer only once it is set) and
``lose_answers`` (create the dyno, then close the connection without answering).
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import json
import re
import secrets
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import pytest
import referencing
import referencing.jsonschema

from tests.servers.util import serving

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "reference" / "heroku" / "platform-api-schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text())
BASE_URI = SCHEMA["id"].rstrip("#")
ACCEPT = "application/vnd.heroku+json; version=3"


def _strict(node):
    """A copy where objects with listed properties take no others (hyper-schema's ``strictProperties``).

    Applied to request bodies too, so that a misspelt field (``time_to_life``) fails here.
    """
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _strict(value) for key, value in node.items()}
    if "properties" in node and "additionalProperties" not in node:
        out["additionalProperties"] = False
    return out


_REGISTRY = referencing.Registry().with_resource(
    BASE_URI, referencing.Resource.from_contents(_strict(SCHEMA), default_specification=referencing.jsonschema.DRAFT4))


def _links() -> list[tuple[str, re.Pattern, str]]:
    """(method, path pattern, JSON pointer of the link) for every link in the schema."""
    found = []
    for name, definition in SCHEMA["definitions"].items():
        for index, link in enumerate(definition.get("links", [])):
            pattern = re.sub(r"\\\{\\\(.*?\\\)\\\}", "[^/]+", re.escape(link["href"]))
            found.append((link["method"], re.compile(pattern + r"\Z"), f"#/definitions/{name}/links/{index}"))
    return found


LINKS = _links()
# (definition, link title) of the Platform API for Partners: what an add-on's token may call
PARTNER_SUBSET = {
    ("add-on", "Info"), ("add-on-action", "Provision"), ("add-on-action", "Deprovision"),
    ("add-on-attachment", "List by Add-on"), ("add-on-attachment", "Info"),
    ("add-on-config", "List"), ("add-on-config", "Update"),
    *(("add-on-webhook", title) for title in ("Create", "Delete", "Info", "List", "Update")),
    ("add-on-webhook-delivery", "Info"), ("add-on-webhook-delivery", "List"),
    ("add-on-webhook-event", "Info"), ("add-on-webhook-event", "List"),
    ("app", "Info"), ("collaborator", "List"), ("log-drain", "List By Add-on"), ("log-drain", "Update"),
}
PARTNER_LINKS = {f"#/definitions/{name}/links/{index}" for name, definition in SCHEMA["definitions"].items()
                 for index, link in enumerate(definition.get("links", [])) if (name, link["title"]) in PARTNER_SUBSET}


def _resolve(node: dict) -> dict:
    while "$ref" in node:
        node = _REGISTRY.resolver(BASE_URI).lookup(BASE_URI + node["$ref"]).contents
    return node


def example(node: dict):
    """A value shaped by ``node`` from the schema's own examples."""
    node = _resolve(node)
    if "example" in node:
        return copy.deepcopy(node["example"])
    if "properties" in node:
        return {key: example(value) for key, value in node["properties"].items()}
    for combined in ("anyOf", "oneOf"):
        if combined in node:
            return example(node[combined][0])
    types = node.get("type", [])
    if "array" in types:
        return [example(node["items"])] if "items" in node else []
    return None


def validate(instance, pointer: str) -> list[str]:
    """Every way ``instance`` breaks the schema at ``pointer`` (a link's schema or targetSchema)."""
    validator = jsonschema.Draft4Validator(
        {"$ref": BASE_URI + pointer}, registry=_REGISTRY, format_checker=jsonschema.FormatChecker())
    return [f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}" for e in validator.iter_errors(instance)]


class HerokuStandIn:
    """State and scripted answers of the stand-in; the handler below serves them."""

    def __init__(self, url: str):
        self.api_url = self.id_url = url
        self.requests: list[dict] = []  # {"method", "path", "headers", "body"}
        self.problems: list[str] = []  # schema violations, in requests and in our own answers
        self.dynos: dict[str, dict] = {}
        self.addons: dict[str, str] = {}  # add-on id → app name
        self.app_ids: dict[str, str] = {}  # app name → its id
        self.grants: dict[str, str] = {}  # authorization code → client secret it needs
        self.access_tokens: set[str] = set()
        self.refresh_tokens: dict[str, str] = {}  # refresh token → client secret it needs
        self.expires_in = 28800
        self.refresh_keeps_refresh_token = False  # answer a refresh without a refresh_token, as RFC 6749 allows
        self.on_dyno: Callable[[dict, dict], None] | None = None  # starts a created dyno, given it and the request
        self.held = threading.Event()  # dyno creates wait until it is set
        self.held.set()
        self.holding = threading.Event()  # set while a dyno create waits
        self.lose_answers = 0  # dyno creates whose answer is lost (the dyno is created all the same)
        self.partner_only = False  # tokens good only for the Platform API for Partners, as an add-on's are
        self._scripted: list[tuple[int, dict]] = []
        self.lock = threading.Lock()

    def answer_first(self, *answers: tuple[int, dict]) -> None:
        """Answer the next Platform API requests with these (status, headers) before serving them."""
        self._scripted.extend(answers)

    def grant(self, client_secret: str) -> dict:
        """A new OAuth grant, as Heroku puts in a provision request."""
        code = secrets.token_hex(16)
        self.grants[code] = client_secret
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=5)
        return {"code": code, "type": "authorization_code", "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def add_addon(self, addon_id: str, app: str) -> None:
        self.addons[addon_id] = app

    def app_identity(self, identity: str) -> dict:
        """{"id", "name"} of an app named by its name or its id."""
        name = next((n for n, i in self.app_ids.items() if i == identity), identity)
        return {"id": self.app_ids.setdefault(name, str(uuid.uuid4())), "name": name}

    def platform_requests(self) -> list[dict]:
        return [r for r in self.requests if r["path"] != "/oauth/token"]

    def scripted(self) -> tuple[int, dict] | None:
        with self.lock:
            return self._scripted.pop(0) if self._scripted else None

    def issue_tokens(self, client_secret: str) -> dict:
        access, refresh = "HRKU-" + secrets.token_hex(16), secrets.token_hex(16)
        self.access_tokens.add(access)
        self.refresh_tokens[refresh] = client_secret
        return {"access_token": access, "refresh_token": refresh, "expires_in": self.expires_in,
                "token_type": "Bearer", "user_id": str(uuid.uuid4()), "session_nonce": None}

    def new_dyno(self, app: str, body: dict) -> dict:
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        dyno = example(SCHEMA["definitions"]["dyno"]) | {
            "id": str(uuid.uuid4()), "command": body["command"], "type": body.get("type", "run"),
            "name": f"run.{len(self.dynos) + 1}", "state": "starting", "attach_url": None,
            "created_at": now, "updated_at": now, "app": self.app_identity(app),
        }
        self.dynos[dyno["id"]] = dyno
        if self.on_dyno is not None:
            self.on_dyno(dyno, body)
        return dyno

    def addon_info(self, addon_id: str) -> dict:
        # the schema's own examples disagree with it on these two fields
        return example(SCHEMA["definitions"]["add-on"]) | {
            "id": addon_id, "actions": [], "provision_message": "",
            "app": self.app_identity(self.addons[addon_id]),
        }


class _Handler(BaseHTTPRequestHandler):
    standin: HerokuStandIn

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _serve(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        path = urllib.parse.urlsplit(self.path).path
        record = {"method": self.command, "path": path, "headers": dict(self.headers), "body": raw.decode()}
        self.standin.requests.append(record)
        if path == "/oauth/token":
            return self._send(*_id_service(self.standin, urllib.parse.parse_qs(raw.decode())))
        try:
            return self._send(*_platform(self.standin, self.command, path, self.headers, raw))
        except _AnswerLost:
            self.close_connection = True  # no answer at all: the client sees the connection close

    def _send(self, status: int, body, headers: dict | None = None):
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _id_service(standin: HerokuStandIn, form: dict) -> tuple[int, dict]:
    """Heroku's id service: authorization_code and refresh_token grants, checked against the secret."""
    field = {key: values[0] for key, values in form.items()}
    kind, secret = field.get("grant_type"), field.get("client_secret")
    if kind == "authorization_code" and standin.grants.get(field.get("code")) == secret:
        del standin.grants[field["code"]]  # a grant is good once
        return 200, standin.issue_tokens(secret)
    if kind == "refresh_token" and standin.refresh_tokens.get(field.get("refresh_token")) == secret:
        answer = standin.issue_tokens(secret) | {"refresh_token": field["refresh_token"]}
        if standin.refresh_keeps_refresh_token:
            del answer["refresh_token"]
        return 200, answer
    return 401, {"id": "unauthorized", "message": "Invalid OAuth grant."}


def _platform(standin: HerokuStandIn, method: str, path: str, headers, raw: bytes) -> tuple[int, dict, dict]:
    """The Platform API: every request matched to its schema link and checked before it is served."""
    link = next((pointer for m, pattern, pointer in LINKS if m == method and pattern.match(path)), None)
    problems = [] if link else [f"{method} {path} is no Platform API link"]
    if headers.get("Accept") != ACCEPT:
        problems.append(f"Accept is {headers.get('Accept')!r}, not {ACCEPT!r}")
    if problems:
        standin.problems += problems
        return 422, {"id": "invalid_params", "message": "; ".join(problems)}, {}
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme != "Bearer" or token not in standin.access_tokens:
        return 401, {"id": "unauthorized", "message": "Invalid credentials provided."}, {}
    if standin.partner_only and link not in PARTNER_LINKS:
        return 403, {"id": "forbidden", "message": "You do not have access to this resource."}, {}
    body = json.loads(raw) if raw else None
    if method != "GET" and _has_schema(link) and (problems := validate(body, link + "/schema")):
        standin.problems += problems
        return 422, {"id": "invalid_params", "message": "; ".join(problems)}, {}
    if (scripted := standin.scripted()) is not None:
        status, extra = scripted
        return status, {"id": "scripted", "message": f"scripted {status}"}, extra
    status, answer = _serve_link(standin, method, path, body)
    if status < 300:
        standin.problems += validate(answer, link + "/targetSchema")
    return status, answer, {"RateLimit-Remaining": "4500"}


class _AnswerLost(Exception):
    """The dyno was created; its answer is to be lost."""


def _has_schema(pointer: str) -> bool:
    """Whether the link takes a body (a schema of its own)."""
    _, _, name, _, index = pointer.split("/")
    return "schema" in SCHEMA["definitions"][name]["links"][int(index)]


def _serve_link(standin: HerokuStandIn, method: str, path: str, body) -> tuple[int, dict]:
    parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
    if method == "POST" and parts[0] == "apps" and parts[2:] == ["dynos"]:
        standin.holding.set()
        standin.held.wait(timeout=60)
        standin.holding.clear()
        dyno = standin.new_dyno(parts[1], body)
        with standin.lock:
            lose, standin.lose_answers = standin.lose_answers > 0, max(0, standin.lose_answers - 1)
        if lose:
            raise _AnswerLost
        return 201, dyno
    if method == "GET" and parts[0] == "apps" and len(parts) == 4 and parts[2] == "dynos":
        dyno = standin.dynos.get(parts[3])
        if dyno is None or parts[1] not in dyno["app"].values():
            return 404, {"id": "not_found", "message": "Couldn't find that process."}
        return 200, dyno
    if method == "GET" and parts[0] == "addons" and len(parts) == 2 and parts[1] in standin.addons:
        return 200, standin.addon_info(parts[1])
    return 404, {"id": "not_found", "message": "Couldn't find that resource."}


@contextlib.contextmanager
def running_standin() -> Iterator[HerokuStandIn]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Handler,), {}))
    standin = HerokuStandIn(f"http://127.0.0.1:{server.server_port}")
    server.RequestHandlerClass.standin = standin
    with serving(server):
        yield standin


@pytest.fixture
def heroku() -> Iterator[HerokuStandIn]:
    """A fresh Platform API and id service stand-in on a free loopback port."""
    with running_standin() as standin:
        yield standin
