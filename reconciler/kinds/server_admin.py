"""ServerAdmin: a server admin in the [admins] config section of every node."""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence

from ..expand import Desired
from ..load import Manifest
from ..secrets import SecretRef
from ..validate import Diagnostic


class ServerAdminManifest:
    kind = "ServerAdmin"
    schema = "server_admin.schema.json"

    def check(self, manifests: Sequence[Manifest], every: Sequence[Manifest]) -> Iterator[Diagnostic]:
        users = {m.name: m for m in every if m.kind == "User"}
        for manifest in manifests:
            if ":" in manifest.name:
                yield Diagnostic.at(manifest, ("metadata", "name"), "an admin name cannot hold `:`",
                                    "HTTP basic auth splits the name at `:`: choose another name")
            if manifest.name in users:
                yield Diagnostic.at(manifest, ("metadata", "name"),
                                    f"also declared as a User (at {users[manifest.name].where('metadata', 'name')}); "
                                    "the server admin shadows the user at login",
                                    "use different names for users and server admins", severity="warning")

    def expand(self, manifest: Manifest) -> Iterable[Desired]:
        yield Desired("server_admin", manifest.name, body={}, source=manifest.where("metadata", "name"),
                      secrets={"password": SecretRef.parse(manifest.spec["password"], manifest.base_dir)},
                      options={"nodes": manifest.spec.get("nodes", "all")})


MANIFEST = ServerAdminManifest()
