// PouchDB, the reference architecture's offline-first client, against a server with manifests/ applied.
//
// tests/pouchdb/test_pouchdb.py deploys the manifests, signs the user up as the app's back end does and
// runs this file with node's test runner; the environment names the server and both accounts:
//   COUCHDB_URL, COUCHDB_USER, COUCHDB_PASSWORD   the server and a server admin (the back end, the panel)
//   POUCHDB_USER, POUCHDB_PASSWORD                 the user (a non-ASCII name) her devices sign in as
//   ANALYTICS_WAIT                                 seconds a document may take to reach analytics
//
// Relied on: CouchDB's /_session answers a JSON sign-in with an AuthSession cookie
// (docs.couchdb.org, api/server/authn.html#cookie-authentication); couch_peruser names her database
// userdb-<hex of the UTF-8 name> (apache/couchdb src/couch_peruser/src/couch_peruser.erl user_db_name/1);
// replication keeps every conflicting leaf and picks the same winner everywhere
// (docs.couchdb.org, replication/conflicts.html); views index only the winning revision; a write a
// validate_doc_update refuses is a 403 `forbidden` row of `_bulk_docs`, which PouchDB's replication reports
// as `denied` and counts in `doc_write_failures` (docs.couchdb.org, ddocs/ddocs.html#validate-document-update-functions).
import { test } from "node:test";
import assert from "node:assert/strict";
import PouchDB from "pouchdb-core";
import MemoryAdapter from "pouchdb-adapter-memory";
import HttpAdapter from "pouchdb-adapter-http";
import Replication from "pouchdb-replication";

PouchDB.plugin(MemoryAdapter).plugin(HttpAdapter).plugin(Replication);

const env = (name) => {
  const value = process.env[name];
  assert.ok(value, `${name} is not set: run this through tests/pouchdb/test_pouchdb.py`);
  return value;
};
const SERVER = env("COUCHDB_URL").replace(/\/+$/, "");
const ADMIN = "Basic " + Buffer.from(`${env("COUCHDB_USER")}:${env("COUCHDB_PASSWORD")}`, "utf8").toString("base64");
const NAME = env("POUCHDB_USER");
const PASSWORD = env("POUCHDB_PASSWORD");
const WAIT_MS = Number(process.env.ANALYTICS_WAIT || "30") * 1000;

const PRIVATE = "userdb-" + Buffer.from(NAME, "utf8").toString("hex");
const SHARED = "main-entities";
const DAY = "2026-11-26T09:30:00Z";

async function admin(method, path, body) {
  const response = await fetch(`${SERVER}/${path}`, {
    method,
    headers: { Authorization: ADMIN, "Content-Type": "application/json", Accept: "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

// Signs in as the web client does: the password goes to /_session once, the cookie does the rest.
async function signIn(name, password) {
  const response = await fetch(`${SERVER}/_session`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ name, password }),
  });
  const answer = await response.json();
  assert.equal(response.status, 200, `POST /_session as ${name}: ${JSON.stringify(answer)}`);
  assert.equal(answer.name, name);
  const cookie = response.headers.getSetCookie().find((line) => line.startsWith("AuthSession="));
  assert.ok(cookie, "/_session set no AuthSession cookie");
  return cookie.split(";")[0];
}

function remote(database, cookie) {
  return new PouchDB(`${SERVER}/${encodeURIComponent(database)}`, {
    skip_setup: true,
    fetch: (url, options) => {
      options.headers.set("Cookie", cookie);
      return PouchDB.fetch(url, options);
    },
  });
}

// One device: a local database per remote one, as a browser holds them in IndexedDB.
function device(label) {
  return {
    private: new PouchDB(`${label}-private`, { adapter: "memory" }),
    shared: new PouchDB(`${label}-shared`, { adapter: "memory" }),
  };
}

async function until(what, check) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) assert.fail(`gave up after ${WAIT_MS / 1000}s waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

test(`${NAME} syncs her database and ${SHARED} from two devices, keeps a conflict, and analytics counts her documents`, async (t) => {
  const cookie = await signIn(NAME, PASSWORD);
  const server = { private: remote(PRIVATE, cookie), shared: remote(SHARED, cookie) };
  const phone = device("phone");
  const laptop = device("laptop");
  const written = { private: [], shared: [] };

  await t.test("her first device writes offline, then syncs both databases both ways", async () => {
    for (const [where, type, count] of [["private", "journal-entry", 3], ["shared", "shared-task", 2]]) {
      for (let i = 0; i < count; i++) {
        // The app's document shape: an id in her namespace and her name as the owner (the provenance validation).
        const doc = { _id: `${NAME}:${type}-${i}`, type, owner: NAME, created_at: DAY, text: `${type} ${i} ✓` };
        await phone[where].put(doc);
        written[where].push(doc._id);
      }
    }
    // Meanwhile the server gets a document in each database from someone else (the back end, as admin).
    const fromServer = {};
    for (const where of ["private", "shared"]) {
      const database = where === "private" ? PRIVATE : SHARED;
      const answer = await admin("POST", encodeURIComponent(database),
        { type: "announcement", owner: "back-end", created_at: DAY, for: NAME });
      assert.equal(answer.status, 201, JSON.stringify(answer.body));
      fromServer[where] = answer.body.id;
    }
    for (const where of ["private", "shared"]) {
      const result = await phone[where].sync(server[where]);
      assert.equal(result.push.ok, true, `push of ${where}`);
      assert.equal(result.pull.ok, true, `pull of ${where}`);
      assert.equal(result.push.docs_written, written[where].length, `${where}: her documents reached the server`);
      await phone[where].get(fromServer[where]); // the server's document reached the device
      for (const id of written[where]) {
        assert.equal((await server[where].get(id)).owner, NAME);
      }
    }
  });

  await t.test("a second device pulls what the first wrote", async () => {
    for (const where of ["private", "shared"]) {
      const result = await laptop[where].replicate.from(server[where]);
      assert.equal(result.ok, true);
      const onPhone = await phone[where].allDocs({ include_docs: true });
      const onLaptop = await laptop[where].allDocs({ include_docs: true });
      const ids = (all) => all.rows.map((row) => row.id).filter((id) => written[where].includes(id));
      assert.deepEqual(ids(onLaptop), ids(onPhone));
      assert.deepEqual(ids(onLaptop).length, written[where].length);
    }
  });

  await t.test("both devices edit the same document offline: the conflict survives, on every copy", async () => {
    const id = written.private[0];
    const base = await phone.private.get(id);
    const fromPhone = await phone.private.put({ ...base, text: "edited on the phone" });
    const fromLaptop = await laptop.private.put({ ...(await laptop.private.get(id)), text: "edited on the laptop" });
    await phone.private.sync(server.private);
    await laptop.private.sync(server.private);
    await phone.private.sync(server.private);

    const leaves = new Set([fromPhone.rev, fromLaptop.rev]);
    for (const [where, db] of [["server", server.private], ["phone", phone.private], ["laptop", laptop.private]]) {
      const doc = await db.get(id, { conflicts: true });
      assert.deepEqual(new Set([doc._rev, ...(doc._conflicts || [])]), leaves, `${where} holds both edits`);
      const texts = new Set();
      for (const rev of leaves) texts.add((await db.get(id, { rev })).text);
      assert.deepEqual(texts, new Set(["edited on the phone", "edited on the laptop"]), `${where}: no edit lost`);
    }
    // The same winner everywhere: CouchDB's deterministic choice, not the order the devices synced in.
    const winners = await Promise.all([server.private, phone.private, laptop.private].map((db) => db.get(id)));
    assert.equal(new Set(winners.map((doc) => doc._rev)).size, 1);
  });

  await t.test("documents claiming another owner or another user's ids are denied when she syncs", async () => {
    const other = "someone-else";
    const forged = [
      { _id: `${NAME}:forged-owner`, type: "journal-entry", owner: other, created_at: DAY },
      { _id: `${other}:planted`, type: "journal-entry", owner: other, created_at: DAY },
    ];
    for (const where of ["private", "shared"]) {
      const tablet = new PouchDB(`tablet-${where}`, { adapter: "memory" });
      for (const doc of forged) await tablet.put(doc);
      const denied = [];
      const result = await tablet.replicate.to(server[where]).on("denied", (error) => denied.push(error.id));
      assert.equal(result.doc_write_failures, forged.length, `${where}: ${JSON.stringify(result.errors)}`);
      assert.deepEqual(denied.sort(), forged.map((doc) => doc._id).sort(), `${where}: each forgery denied`);
      for (const doc of forged) {
        await assert.rejects(server[where].get(doc._id), { status: 404 }, `${where}: ${doc._id} is not on the server`);
      }
    }
  });

  await t.test("the analytics panel's per-user view counts every document she wrote, once", async () => {
    const expected = written.private.length + written.shared.length; // the conflicted one counts once
    const path = `analytics/_design/dashboard/_view/by_user?group=true&key=${encodeURIComponent(JSON.stringify(NAME))}`;
    const counted = await until(`${expected} documents of ${NAME} in analytics`, async () => {
      const answer = await admin("GET", path);
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      const value = answer.body.rows.length ? answer.body.rows[0].value : 0;
      return value === expected ? value : null;
    });
    assert.equal(counted, expected);
  });
});
