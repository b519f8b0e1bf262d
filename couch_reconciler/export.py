"""`reconcile export`: manifests describing a live server, so an existing deployment can adopt the tool.

What it writes is chosen so that `reconcile plan` on the exported folder shows no change:
databases with their `_security` exactly as held (`public: true` for those with no member); users with their roles and extra
fields but no `password` (a User without one leaves the password unmanaged); a Role
for every role named, since validate wants roles declared; node config keys whose
value differs from CouchDB 3.x's defaults. Never exported: passwords and hashes,
server admins (their values are hashes), secrets in the config, and install-specific
settings (paths, ports, the server's uuid).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import yaml

from . import nodes
from .client import CouchSession
from .export_documents import DESIGN_FOLDER, Documents, Secrets, documents, manifest
from .export_template import TemplateExport, user_template
from .databases import all_database_infos
from .errors import ReconcileError
from .kinds.checks import user_name_problem
from .kinds.security import read_securities
from .kinds.user import all_user_docs, user_body
from .replicator import replicator_docs
from .model import DATABASE_MANIFEST, NODE_CONFIG_MANIFEST, ROLE_MANIFEST, USER_MANIFEST
from .ownership import MARKER_SECTION

# CouchDB 3.x's defaults (rel/overlay/etc/default.ini and the defaults its code falls back to) for the
# keys a server commonly reports. A key set to its default says nothing about the deployment; a key
# missing here is exported, which is harmless: the manifest then holds the value the server has.
DEFAULTS: Mapping[str, Mapping[str, str]] = {
    "couchdb": {"max_dbs_open": "500", "os_process_timeout": "5000", "file_compression": "snappy",
                "attachment_stream_buffer_size": "4096", "default_security": "admin_only",
                "changes_doc_ids_optimization_threshold": "100", "max_document_size": "8000000",
                "default_engine": "couch", "users_db_security_editable": "false", "single_node": "false"},
    "couchdb_engines": {"couch": "couch_bt_engine"},
    "cluster": {"q": "2", "n": "3"},
    "chttpd": {"backlog": "512", "socket_options": "[{sndbuf, 262144}, {nodelay, true}]",
               "server_options": "[{recbuf, undefined}]", "require_valid_user": "false",
               "max_db_number_for_dbs_info_req": "100", "admin_only_all_dbs": "true", "enable_cors": "false",
               "prefer_minimal": "Cache-Control, Content-Length, Content-Range, Content-Type, ETag, Server, "
                                 "Transfer-Encoding, Vary"},
    "chttpd_auth": {"authentication_db": "_users", "iterations": "600000", "pbkdf2_prf": "sha256",
                    "password_scheme": "pbkdf2", "timeout": "600", "allow_persistent_cookies": "true",
                    "auth_cache_size": "50", "require_valid_user": "false",
                    "authentication_redirect": "/_utils/session.html"},
    "couch_httpd_auth": {"authentication_db": "_users", "authentication_redirect": "/_utils/session.html",
                         "require_valid_user": "false", "timeout": "600", "auth_cache_size": "50",
                         "allow_persistent_cookies": "true", "iterations": "10"},
    "couch_peruser": {"enable": "false", "delete_dbs": "false", "database_prefix": "userdb-"},
    "httpd": {"secure_rewrites": "true", "allow_jsonp": "false", "enable_cors": "false",
              "enable_xframe_options": "false", "socket_options": "[{sndbuf, 262144}]",
              "max_http_request_size": "4294967296",
              "authentication_handlers": "{couch_httpd_auth, cookie_authentication_handler}, "
                                         "{couch_httpd_auth, default_authentication_handler}"},
    "cors": {"credentials": "false"},
    "csp": {"enable": "true", "utils_enable": "true", "attachments_enable": "true", "showlist_enable": "true"},
    "uuids": {"algorithm": "sequential", "utc_id_suffix": "", "max_count": "1000"},
    "attachments": {"compression_level": "8",
                    "compressible_types": "text/*, application/javascript, application/json, application/xml"},
    "replicator": {"max_jobs": "500", "interval": "60000", "max_churn": "20", "startup_jitter": "5000",
                   "worker_processes": "4", "worker_batch_size": "500", "http_connections": "20",
                   "connection_timeout": "30000", "retries_per_request": "5", "verify_ssl_certificates": "false",
                   "ssl_certificate_max_depth": "3", "socket_options": "[{keepalive, true}, {nodelay, false}]"},
    "query_server_config": {"reduce_limit": "true", "os_process_limit": "100"},
    "indexers": {"couch_mrview": "true"},
    "ioq": {"concurrency": "10", "ratio": "0.01"},
    "log": {"level": "info", "writer": "stderr"},
    "smoosh.ratio_dbs": {"min_priority": "2.0"},
    "smoosh.ratio_views": {"min_priority": "2.0"},
}

# Server admins and this tool's record of those it created, secrets, what only a restart or a file may change (couch_util:check_config_blacklist),
# and what belongs to one installation rather than to the deployment's design.
SKIPPED_SECTIONS = frozenset({
    "admins", MARKER_SECTION, "vendor", "ssl", "jwt_keys", "daemons", "external", "httpd_design_handlers", "httpd_db_handlers",
    "httpd_global_handlers", "native_query_servers", "os_daemons", "query_servers", "feature_flags",
})
SKIPPED_KEYS = frozenset({
    ("couchdb", "uuid"), ("couchdb", "database_dir"), ("couchdb", "view_index_dir"), ("couchdb", "util_driver_dir"),
    ("couchdb", "plugin_dir"), ("couchdb", "uri_file"), ("chttpd", "port"), ("chttpd", "bind_address"),
    ("chttpd", "docroot"), ("httpd", "port"), ("httpd", "bind_address"), ("log", "file"),
})
SECRET_WORDS = ("secret", "password", "key_file")
SHOWN = 5  # uses of a secret the README names before "and N more"


FILES = ("databases.yaml", "users.yaml", "roles.yaml", "config.yaml", "replications.yaml",
         "design-documents.yaml", "user-databases.yaml", "README.md", DESIGN_FOLDER)


@dataclass
class Export:
    """What was found, so the command can say it and the README can list it."""

    databases: list[dict] = field(default_factory=list)
    users: list[dict] = field(default_factory=list)
    roles: list[dict] = field(default_factory=list)
    config: list[dict] = field(default_factory=list)
    documents: Documents = field(default_factory=Documents)
    template: TemplateExport | None = None
    secrets: Secrets = field(default_factory=Secrets)
    server_admins: list[str] = field(default_factory=list)
    public_databases: list[str] = field(default_factory=list)
    skipped_user_databases: int = 0
    unexportable_config: list[str] = field(default_factory=list)  # "section/key" a manifest cannot name
    unexportable_users: list[str] = field(default_factory=list)  # names a User manifest may not hold


def export(session: CouchSession, directory: str) -> Export:
    """Read the server and write its manifests into `directory` (created if needed; existing files are kept)."""
    existing = [path for name in FILES if os.path.lexists(path := os.path.join(directory, name))]
    if existing:
        raise ReconcileError(f"{existing[0]} already exists; export into an empty folder "
                             "(it never overwrites manifests)")
    result = read(session)
    os.makedirs(directory, exist_ok=True)
    template = result.template
    for name, documents in (("databases.yaml", result.databases), ("users.yaml", result.users),
                            ("roles.yaml", result.roles), ("config.yaml", result.config),
                            ("replications.yaml", result.documents.replications),
                            ("design-documents.yaml", result.documents.design_documents
                             + (template.design_documents if template else [])),
                            ("user-databases.yaml", [template.manifest] if template else [])):
        if documents:
            with open(os.path.join(directory, name), "w", encoding="utf-8") as handle:
                yaml.safe_dump_all(documents, handle, sort_keys=False, allow_unicode=True)
    folders = {**result.documents.folders, **(template.folders if template else {})}
    for folder, files in folders.items():
        for name, content in files.items():
            path = os.path.join(directory, folder, *name.split("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as handle:
                handle.write(content)
    with open(os.path.join(directory, "README.md"), "w", encoding="utf-8") as handle:
        handle.write(readme(result))
    return result


def read(session: CouchSession) -> Export:
    cluster = nodes.cluster(session)
    result = Export()
    prefix = _user_database_prefix(cluster)
    infos, user_databases, system = {}, set(), []
    for name, info in all_database_infos(session).items():
        if prefix and name.startswith(prefix):
            user_databases.add(name)  # couch_peruser's: a UserDatabases template describes them
        elif name.startswith("_"):
            system.append(name)  # CouchDB owns them, but not the design documents put in them (a `_users` view)
        else:
            infos[name] = info
    result.skipped_user_databases = len(user_databases)
    roles: set[str] = set()
    for name, security in sorted(read_securities(session, sorted(infos)).items()):
        spec: dict[str, Any] = {"partitioned": True} if infos[name].get("props", {}).get("partitioned") else {}
        principals: dict[str, Any] = {part: {kind: list(security[part][kind]) for kind in ("names", "roles")
                             if security[part].get(kind)}
                      for part in ("members", "admins") if security.get(part)}
        if not principals.get("members"):
            # No member makes a database public; a manifest listing no member would mean admin-only (as on a
            # new database), so a public one says so explicitly, and the README lists them for review.
            principals = {"public": True, **principals}
            principals.pop("members", None)
            result.public_databases.append(name)
        spec["security"] = principals
        roles.update(role for part in principals.values() if isinstance(part, dict) for role in part.get("roles", []))
        result.databases.append(manifest(DATABASE_MANIFEST, name, spec))
    result.server_admins = sorted({name for node in cluster.nodes
                                   for name in cluster.config[node].get("admins", {})})
    users = list(all_user_docs(session))
    replications = list(replicator_docs(session))
    if prefix:
        result.template = user_template(session, prefix, users, set(result.server_admins), user_databases,
                                        replications, result.secrets)
        roles.update(result.template.manifest["spec"].get("grantRoles", []))
    covered = result.template.covered if result.template else set()
    for doc in users:
        if doc["name"] in covered:
            continue
        if user_name_problem(doc["name"]):  # a manifest could not declare it: validate would refuse the folder
            result.unexportable_users.append(doc["name"])
            continue
        body = user_body(doc)
        spec = {"roles": sorted(body.pop("roles"))}
        if body:
            spec["fields"] = body
        roles.update(spec["roles"])
        result.users.append(manifest(USER_MANIFEST, doc["name"], spec))
    result.roles = [manifest(ROLE_MANIFEST, role, {"description": "exported from the live server"})
                    for role in sorted(roles) if not role.startswith("_")]
    result.config = list(_config_manifests(cluster, result.unexportable_config))
    taken = result.template.replication_ids if result.template else set()
    result.documents = documents(session, sorted(infos), sorted([*infos, *system]),
                                 [doc for doc in replications if doc["_id"] not in taken], result.secrets)
    return result


def readme(result: Export) -> str:
    template = result.template
    lines = [
        "# Manifests exported from a live CouchDB",
        "",
        "Written by `reconcile export`; `reconcile plan` on this folder shows no change.",
        "",
        f"- {len(result.databases)} databases with their `_security` (databases.yaml)",
        f"- {len(result.users)} users (users.yaml) and {len(result.roles)} roles (roles.yaml)",
        f"- {len(result.config)} node-config sections that differ from CouchDB's defaults (config.yaml)",
        f"- {len(result.documents.replications)} replications (replications.yaml)",
        f"- {len(result.documents.design_documents) + len(template.design_documents if template else [])} design "
        f"documents (design-documents.yaml, their files under {DESIGN_FOLDER}/)",
        *([f"- the UserDatabases template `{template.manifest['metadata']['name']}` (user-databases.yaml)"]
          if template else []),
        "",
        "## Passwords are not managed yet",
        "",
        "No password or hash was exported. A User without `password` leaves the password as it is on the",
        "server. To manage one, add a reference and set the variable from your secret store:",
        "",
        "```yaml",
        "spec:",
        "  password: env:COUCHDB_USER_ALICE_PASSWORD",
        "```",
        "",
        "Run `reconcile plan` afterwards: it shows `password: (sensitive, will change)` only for users whose",
        "stored hash does not match the secret.",
    ]
    lines += _named_list("Server admins (not exported)", result.server_admins,
                         "Their passwords exist only as hashes. To manage them, write a `ServerAdmin` manifest with a",
                         "`password` reference for each:")
    lines += _named_list("Public databases", result.public_databases,
                         "Their `_security` names no member, so anyone, even without logging in, may read and write",
                         "them. They were exported with `security: {public: true}`; check that this is intended, and",
                         "replace it with `members` to make one private:")
    lines += _named_list("Users not exported", result.unexportable_users,
                         "Their names are ones a User manifest may not hold (`reconcile validate` says why); they are",
                         "left as they are:")
    lines += _named_list("Config not exported", result.unexportable_config,
                         "These keys (or their sections) hold `/`, which a NodeConfig cannot name; manage them by hand:")
    lines += _named_list("Secrets to set", [f"`{name}`: {', '.join(uses[:SHOWN])}"
                                            + (f" and {len(uses) - SHOWN} more" if len(uses) > SHOWN else "")
                                            for name, uses in sorted(result.secrets.uses.items())],
                         "The replications' passwords were not exported: each is referenced as an environment",
                         "variable (one per user name and password). Set them from your secret store before",
                         "`reconcile plan` (or plan with `--without-secrets`, which leaves them uncompared):",
                         quoted=False)
    lines += _named_list("Not exported", result.documents.unexportable,
                         "No manifest can say exactly what these hold, so they are left as they are on the server",
                         "(a plan on this folder neither changes nor deletes them):", quoted=False)
    if template:
        name = template.manifest["metadata"]["name"]
        lines += ["", "## Per-user databases", "",
                  f"couch_peruser is on: the UserDatabases template `{name}` stands for the "
                  f"{result.skipped_user_databases} user database(s) and their users (what every one of them has:",
                  "granted roles, `_security` roles, design documents, replications). users.yaml lists only the "
                  f"users it does not account for; {_users(len(template.covered))} left to it, their other fields "
                  "(an email given at sign-up) unmanaged, as for any user no manifest lists."]
        lines += _named_list("What most user databases have, but not all", template.notes,
                             "Not in the template, which holds only what every user has, so that a plan changes "
                             "nothing:", quoted=False)
    return "\n".join(lines) + "\n"


def _users(count: int) -> str:
    return f"{count} user is" if count == 1 else f"{count} users are"


def _named_list(title: str, names: Sequence[str], *explanation: str, quoted: bool = True) -> list[str]:
    """A README section listing `names` (or sentences) under what the reader should do about them; nothing
    when none."""
    if not names:
        return []
    return ["", f"## {title}", "", *explanation, "", *(f"- `{name}`" if quoted else f"- {name}" for name in names)]


def _config_manifests(cluster: nodes.Cluster, unexportable: list[str]) -> Iterable[dict]:
    """One NodeConfig per section for the keys all nodes agree on, one per node for the others."""
    for section in sorted({section for node in cluster.nodes for section in cluster.config[node]}):
        if section in SKIPPED_SECTIONS:
            continue
        shared: dict[str, str | None] = {}
        per_node: dict[str, dict[str, str]] = {}
        keys = sorted({key for node in cluster.nodes for key in cluster.config[node].get(section, {})})
        for key in keys:
            if (section, key) in SKIPPED_KEYS or any(word in key for word in SECRET_WORDS):
                continue
            if "/" in section or "/" in key:  # `section/key` names a config object: neither may hold `/`
                unexportable.append(f"[{section}] {key}")
                continue
            values = {node: cluster.value(node, section, key) for node in cluster.nodes}
            default = DEFAULTS.get(section, {}).get(key)
            if all(value == default for value in values.values() if value is not None):
                continue
            if len(set(values.values())) == 1:
                shared[key] = values[cluster.nodes[0]]
            else:
                for node, value in values.items():
                    if value is not None and value != default:
                        per_node.setdefault(node, {})[key] = value
        if shared:
            yield manifest(NODE_CONFIG_MANIFEST, section, {"section": section, "values": shared})
        for node, own in per_node.items():
            yield manifest(NODE_CONFIG_MANIFEST, f"{section}@{node}", {"section": section, "values": own,
                                                                  "nodes": [node]})


def _user_database_prefix(cluster: nodes.Cluster) -> str | None:
    if not any(cluster.value(node, "couch_peruser", "enable") == "true" for node in cluster.nodes):
        return None
    return cluster.value(cluster.nodes[0], "couch_peruser", "database_prefix") or "userdb-"

