"""Per-node configuration store, like CouchDB's `config` app: string values set at run time over the
defaults compiled into CouchDB. Reading an unset key over HTTP is a 404 even when a built-in default
exists (verified on 3.4.3); code inside the server reads through `get`, which falls back to the defaults."""

from __future__ import annotations

from typing import Callable

# Built-in defaults CouchDB 3.4 falls back to when a key is unset (config:get(Section, Key, Default) calls).
DEFAULTS: dict[tuple[str, str], str] = {
    ("couchdb", "default_security"): "admin_only",
    ("couchdb", "users_db_security_editable"): "false",
    ("couchdb", "max_document_size"): "8000000",
    ("chttpd", "max_db_number_for_dbs_info_req"): "100",
    ("chttpd", "admin_only_all_dbs"): "true",
    ("chttpd", "require_valid_user"): "false",
    ("chttpd_auth", "authentication_db"): "_users",
    ("chttpd_auth", "iterations"): "600000",
    ("chttpd_auth", "pbkdf2_prf"): "sha256",
    ("chttpd_auth", "timeout"): "600",
    ("chttpd_auth", "allow_persistent_cookies"): "true",
    ("cluster", "q"): "2",
    ("couchdb", "max_dbs_open"): "500",
    ("global_changes", "max_write_delay"): "500",
    ("couch_peruser", "enable"): "false",
    ("couch_peruser", "delete_dbs"): "false",
    ("couch_peruser", "database_prefix"): "userdb-",
    ("couch_peruser", "q"): "1",
    ("couch_peruser", "cluster_start_period"): "5",
    ("uuids", "max_count"): "1000",
    ("attachments", "compressible_types"): "text/*, application/javascript, application/json, application/xml",
    ("attachments", "compression_level"): "8",
    ("replicator", "max_jobs"): "500",
    ("replicator", "interval"): "60000",
    ("replicator", "max_churn"): "20",
}

# couch_util:check_config_blacklist/1: sections that may not be changed over HTTP.
BLACKLISTED_SECTIONS = frozenset({
    "daemons", "external", "httpd_design_handlers", "httpd_db_handlers", "httpd_global_handlers",
    "native_query_servers", "os_daemons", "query_servers", "feature_flags",
})

ConfigListener = Callable[["Config", str, str, "str | None", "str | None"], None]


class Config:
    """One node's settings. Listeners hear every change as (config, section, key, old, new)."""

    def __init__(self, node: str, values: dict[str, dict[str, str]] | None = None):
        self.node = node
        self.sections: dict[str, dict[str, str]] = {s: dict(kv) for s, kv in (values or {}).items()}
        self.listeners: list[ConfigListener] = []

    def get(self, section: str, key: str, default: str | None = None) -> str | None:
        value = self.sections.get(section, {}).get(key)
        if value is not None:
            return value
        return DEFAULTS.get((section, key), default)

    def get_int(self, section: str, key: str) -> int:
        return int(self.get(section, key))

    def get_bool(self, section: str, key: str) -> bool:
        return self.get(section, key, "false") == "true"

    def get_set(self, section: str, key: str) -> str | None:
        """The value as set, without built-in defaults: what HTTP shows."""
        return self.sections.get(section, {}).get(key)

    def section(self, section: str) -> dict[str, str]:
        return dict(self.sections.get(section, {}))

    def set(self, section: str, key: str, value: str) -> str | None:
        old = self.get_set(section, key)
        self.sections.setdefault(section, {})[key] = value
        for listener in list(self.listeners):
            listener(self, section, key, old, value)
        return old

    def delete(self, section: str, key: str) -> str | None:
        values = self.sections.get(section, {})
        old = values.pop(key, None)
        if not values:
            self.sections.pop(section, None)
        if old is not None:
            for listener in list(self.listeners):
                listener(self, section, key, old, None)
        return old
