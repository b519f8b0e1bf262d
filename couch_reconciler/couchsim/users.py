"""The `_users` database: password hashing on write (couch_users_db:before_doc_update/3), who may read
which user doc (after_doc_read/2), and the `_design/_auth` validation function
(couch_js_functions.hrl ?AUTH_DB_DOC_VALIDATE_FUNCTION), whose JavaScript couchsim runs as Python."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import TYPE_CHECKING

from .errors import CouchError, forbidden, not_found
from .security import UserCtx, is_db_admin

if TYPE_CHECKING:
    from .database import Database

USER_PREFIX = "org.couchdb.user:"

# What CouchDB 3.4 stores as `_users/_design/_auth`; design.py maps this exact source to
# validate_user_doc below, so readers see CouchDB's function and writes get its verdicts.
AUTH_VALIDATE_SOURCE = """function(newDoc, oldDoc, userCtx, secObj) {
    if (newDoc._deleted === true) {
        // allow deletes by admins and matching users
        // without checking the other fields
        if ((userCtx.roles.indexOf('_admin') !== -1) ||
            (userCtx.name == oldDoc.name)) {
            return;
        } else {
            throw({forbidden: 'Only admins may delete other user docs.'});
        }
    }

    if (newDoc.type !== 'user') {
        throw({forbidden : 'doc.type must be user'});
    } // we only allow user docs for now

    if (!newDoc.name) {
        throw({forbidden: 'doc.name is required'});
    }

    if (!newDoc.roles) {
        throw({forbidden: 'doc.roles must exist'});
    }

    if (!isArray(newDoc.roles)) {
        throw({forbidden: 'doc.roles must be an array'});
    }

    for (var idx = 0; idx < newDoc.roles.length; idx++) {
        if (typeof newDoc.roles[idx] !== 'string') {
            throw({forbidden: 'doc.roles can only contain strings'});
        }
    }

    if (newDoc._id !== ('org.couchdb.user:' + newDoc.name)) {
        throw({
            forbidden: 'Doc ID must be of the form org.couchdb.user:name'
        });
    }

    if (oldDoc) { // validate all updates
        if (oldDoc.name !== newDoc.name) {
            throw({forbidden: 'Usernames can not be changed.'});
        }
    }

    if (newDoc.password_sha && !newDoc.salt) {
        throw({
            forbidden: 'Users with password_sha must have a salt.' +
                'See /_utils/script/couch.js for example code.'
        });
    }

    var available_schemes = ["simple", "pbkdf2", "bcrypt"];
    if (newDoc.password_scheme
            && available_schemes.indexOf(newDoc.password_scheme) == -1) {
        throw({
            forbidden: 'Password scheme `' + newDoc.password_scheme
                + '` not supported.'
        });
    }

    if (newDoc.password_scheme === "pbkdf2") {
        if (typeof(newDoc.iterations) !== "number") {
           throw({forbidden: "iterations must be a number."});
        }
        if (typeof(newDoc.derived_key) !== "string") {
           throw({forbidden: "derived_key must be a string."});
        }
    }

    var is_server_or_database_admin = function(userCtx, secObj) {
        // see if the user is a server admin
        if(userCtx.roles.indexOf('_admin') !== -1) {
            return true; // a server admin
        }

        // see if the user a database admin specified by name
        if(secObj && secObj.admins && secObj.admins.names) {
            if(secObj.admins.names.indexOf(userCtx.name) !== -1) {
                return true; // database admin
            }
        }

        // see if the user a database admin specified by role
        if(secObj && secObj.admins && secObj.admins.roles) {
            var db_roles = secObj.admins.roles;
            for(var idx = 0; idx < userCtx.roles.length; idx++) {
                var user_role = userCtx.roles[idx];
                if(db_roles.indexOf(user_role) !== -1) {
                    return true; // role matches!
                }
            }
        }

        return false; // default to no admin
    }

    if (!is_server_or_database_admin(userCtx, secObj)) {
        if (oldDoc) { // validate non-admin updates
            if (userCtx.name !== newDoc.name) {
                throw({forbidden: 'You may only update your own user document.'});
            }
            // validate role updates
            var oldRoles = (oldDoc.roles || []).sort();
            var newRoles = newDoc.roles.sort();

            if (oldRoles.length !== newRoles.length) {
                throw({forbidden: 'Only _admin may edit roles'});
            }

            for (var i = 0; i < oldRoles.length; i++) {
                if (oldRoles[i] !== newRoles[i]) {
                    throw({forbidden: 'Only _admin may edit roles'});
                }
            }
        } else if (newDoc.roles.length > 0) {
            throw({forbidden: 'Only _admin may set roles'});
        }
    }

    // no system roles in users db
    for (var i = 0; i < newDoc.roles.length; i++) {
        if (newDoc.roles[i][0] === '_') {
            throw({
                forbidden:
                'No system roles (starting with underscore) in users db.'
            });
        }
    }

    // no system names as names
    if (newDoc.name[0] === '_') {
        throw({forbidden: 'Username may not start with underscore.'});
    }

    var badUserNameChars = [':'];

    for (var i = 0; i < badUserNameChars.length; i++) {
        if (newDoc.name.indexOf(badUserNameChars[i]) >= 0) {
            throw({forbidden: 'Character `' + badUserNameChars[i] +
                    '` is not allowed in usernames.'});
        }
    }
}
"""

AUTH_DDOC = {"_id": "_design/_auth", "language": "javascript", "validate_doc_update": AUTH_VALIDATE_SOURCE}


def js_falsy(value) -> bool:
    """JavaScript's `!value` for JSON values: arrays and objects, even empty, are true."""
    return value is None or value is False or value == "" or (
        isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0)


def validate_user_doc(new: dict, old: dict | None, ctx: UserCtx, security: dict) -> None:
    """AUTH_VALIDATE_SOURCE, line by line."""
    if new.get("_deleted") is True:
        if ctx.is_server_admin or ctx.name == (old or {}).get("name"):
            return
        raise forbidden("Only admins may delete other user docs.")
    if new.get("type") != "user":
        raise forbidden("doc.type must be user")
    name = new.get("name")
    if js_falsy(name):
        raise forbidden("doc.name is required")
    roles = new.get("roles")
    if js_falsy(roles):
        raise forbidden("doc.roles must exist")
    if not isinstance(roles, list):
        raise forbidden("doc.roles must be an array")
    if not all(isinstance(role, str) for role in roles):
        raise forbidden("doc.roles can only contain strings")
    if not isinstance(name, str) or new["_id"] != USER_PREFIX + name:
        raise forbidden("Doc ID must be of the form org.couchdb.user:name")
    if old and old.get("name") != name:
        raise forbidden("Usernames can not be changed.")
    if new.get("password_sha") and not new.get("salt"):
        raise forbidden("Users with password_sha must have a salt.See /_utils/script/couch.js for example code.")
    scheme = new.get("password_scheme")
    if not js_falsy(scheme) and scheme not in ("simple", "pbkdf2", "bcrypt"):
        raise forbidden(f"Password scheme `{scheme}` not supported.")
    if new.get("password_scheme") == "pbkdf2":
        if not isinstance(new.get("iterations"), (int, float)) or isinstance(new.get("iterations"), bool):
            raise forbidden("iterations must be a number.")
        if not isinstance(new.get("derived_key"), str):
            raise forbidden("derived_key must be a string.")
    if not is_db_admin(ctx, security):
        if old:
            if ctx.name != name:
                raise forbidden("You may only update your own user document.")
            if sorted(old.get("roles") or []) != sorted(roles):
                raise forbidden("Only _admin may edit roles")
        elif roles:
            raise forbidden("Only _admin may set roles")
    if any(role.startswith("_") for role in roles):
        raise forbidden("No system roles (starting with underscore) in users db.")
    if name.startswith("_"):
        raise forbidden("Username may not start with underscore.")
    if ":" in name:
        raise forbidden("Character `:` is not allowed in usernames.")


def pbkdf2_hex(prf: str, password: str, salt: str, iterations: int) -> str:
    """couch_passwords:pbkdf2/4: the salt is used as its (hex) string, not decoded."""
    return hashlib.pbkdf2_hmac(prf, password.encode("utf-8"), salt.encode("utf-8"), iterations).hex()


async def pbkdf2_hex_async(prf: str, password: str, salt: str, iterations: int) -> str:
    # hashlib releases the GIL: a 600,000-round hash in a worker thread leaves the event loop serving.
    return await asyncio.get_running_loop().run_in_executor(None, pbkdf2_hex, prf, password, salt, iterations)


class UsersDbBehaviour:
    """couch_users_db's before_doc_update/after_doc_read for the authentication database."""

    async def before_doc_update(self, db: Database, doc: dict, ctx: UserCtx) -> dict:
        if doc["_id"].startswith("_design/"):
            return doc
        doc_name = doc["_id"][len(USER_PREFIX):] if doc["_id"].startswith(USER_PREFIX) else None
        if not is_db_admin(ctx, db.security) and ctx.name is not None and ctx.name != doc_name:
            raise not_found("missing")
        password = doc.get("password")
        if password is None:
            return doc
        config = db.cluster.config
        prf = config.get("chttpd_auth", "pbkdf2_prf")
        iterations = config.get_int("chttpd_auth", "iterations")
        salt = uuid.uuid4().hex
        derived = await pbkdf2_hex_async(prf, str(password), salt, iterations)
        hashed = {k: v for k, v in doc.items() if k != "password"}
        hashed.update(password_scheme="pbkdf2", pbkdf2_prf=prf, derived_key=derived, salt=salt,
                      iterations=iterations)
        return hashed

    def after_doc_read(self, db: Database, doc: dict, ctx: UserCtx) -> dict:
        if is_db_admin(ctx, db.security):
            return doc
        if doc["_id"].startswith("_design/"):
            raise CouchError(403, "forbidden", "Only administrators can view design docs in the users database.")
        if doc["_id"] != USER_PREFIX + str(ctx.name):
            raise not_found("missing")
        return doc
