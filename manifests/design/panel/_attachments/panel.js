/* The analytics panel: signs in with CouchDB's /_session (the cookie is CouchDB's, HttpOnly; the page keeps
 * no password), reads the analytics dashboard views, the sign-ups view in _users and the replication
 * scheduler, and draws them. CouchDB decides who may read: a 403 on analytics means "not authorised".
 * The last figures read are kept in localStorage, so a reload while the server is unreachable shows them
 * under a banner that says so (sw.js keeps the page itself); signing out forgets them. */
(function () {
  "use strict";

  const { bars, days, number } = window.PanelCharts;
  const settings = document.body.dataset;
  // The page is <root>/<database>/_design/<name>/index.html: the server's root, behind a proxy's prefix too.
  const ROOT = new URL("../../../", window.location.href);
  const STORED = "analytics-panel:last-figures";
  const TOP_TYPES = 12;
  const TOP_USERS = 10;
  const MOST_DAYS = 90;
  const FEWEST_DAYS = 14;
  const SCHEDULER_PAGE = 1000;
  const REFRESH_EVERY = 60000;
  const RETRY_EVERY = 10000;
  const DAY = 86400000;

  const $ = (selector) => document.querySelector(selector);
  const screens = ["#loading", "#signin", "#refused", "#dashboard", "#unreachable"];
  let timer = null;
  let shown = null; // [name, figures] on screen, drawn again when the window's width changes

  class Unreachable extends Error {}

  class Refused extends Error {
    constructor(status, reason) {
      super(reason);
      this.status = status;
    }
  }

  async function request(path, options = {}) {
    let response;
    try {
      response = await fetch(new URL(path, ROOT), { credentials: "same-origin", cache: "no-store", ...options,
        headers: { Accept: "application/json", ...(options.headers || {}) } });
    } catch (error) {
      throw new Unreachable(error.message);
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Refused(response.status, body.reason || response.statusText);
    return body;
  }

  function view(database, design, name, query) {
    const path = [database, "_design", design, "_view", name].map(encodeURIComponent).join("/");
    return request(`${path}?${new URLSearchParams(query)}`);
  }

  async function schedulerDocs() {
    const docs = [];
    for (;;) {
      const page = await request(`_scheduler/docs/_replicator?limit=${SCHEDULER_PAGE}&skip=${docs.length}`);
      docs.push(...(page.docs || []));
      if (!page.docs || page.docs.length < SCHEDULER_PAGE || docs.length >= page.total_rows) return docs;
    }
  }

  // The scheduler reports endpoints as URLs (credentials removed): the database is the last path segment.
  function databaseOf(endpoint) {
    try {
      const url = typeof endpoint === "string" ? endpoint : endpoint.url;
      return decodeURIComponent(new URL(url).pathname.split("/").filter(Boolean).pop() || "");
    } catch (error) {
      return "";
    }
  }

  function fanIn(docs, now) {
    const into = docs.filter((doc) => databaseOf(doc.target) === settings.analytics);
    const states = {};
    for (const doc of into) states[doc.state] = (states[doc.state] || 0) + 1;
    const covered = new Set(into.filter((doc) => doc.state !== "failed").map((doc) => databaseOf(doc.source))
      .filter((database) => database.startsWith(settings.userPrefix)));
    // A pending, crashing or failed job delivers nothing; a running one delivers what it reports pending.
    const waiting = into.filter((doc) => ["pending", "crashing", "error", "failed"].includes(doc.state)
      || (doc.state === "running" && doc.info && doc.info.changes_pending > 0));
    const since = waiting.map((doc) => ({ id: doc.doc_id, at: Date.parse(doc.last_updated) }))
      .filter((entry) => !Number.isNaN(entry.at)).sort((a, b) => a.at - b.at)[0];
    return { total: into.length, states, covered: covered.size,
      oldest: since ? { id: since.id, seconds: Math.max(0, Math.round((now - since.at) / 1000)) } : null };
  }

  async function readFigures() {
    const analytics = settings.analytics;
    const [types, authors, perDay] = await Promise.all([
      view(analytics, "dashboard", "by_type", { group: "true" }),
      view(analytics, "dashboard", "by_user", { group: "true" }),
      view(analytics, "dashboard", "by_day", { group_level: "3" }),
    ]);
    // Neither is needed to read analytics: a reader allowed analytics but not _users or the scheduler
    // still gets the rest, and the card says what it could not read.
    const optional = (promise) => promise.then((value) => ({ value }),
      (error) => { if (error instanceof Unreachable) throw error; return { error: error.message, status: error.status }; });
    const [signUps, scheduler] = await Promise.all([
      optional(view(settings.users, "sign-ups", "by_day", { group_level: "3" })),
      optional(schedulerDocs()),
    ]);
    const now = Date.now();
    return {
      readAt: new Date(now).toISOString(),
      types: types.rows,
      authors: authors.rows,
      perDay: perDay.rows,
      signUps: signUps.error ? { error: signUps.error } : { rows: signUps.value.rows },
      fanIn: scheduler.error ? { error: scheduler.error } : fanIn(scheduler.value, now),
    };
  }

  const sum = (rows) => rows.reduce((total, row) => total + row.value, 0);
  const byCount = (a, b) => b.value - a.value || String(a.key).localeCompare(String(b.key));

  function top(rows, count, what) {
    const sorted = rows.map((row) => ({ key: String(row.key), value: row.value })).sort(byCount);
    if (sorted.length <= count) return sorted;
    const rest = sorted.slice(count);
    return sorted.slice(0, count).concat({ key: "(others)", label: `${rest.length} other ${what}`,
      value: sum(rest), muted: true });
  }

  // Rows keyed [year, month, day] -> consecutive days up to today (at most MOST_DAYS), and what is left out.
  function daySeries(rows, today) {
    const counts = new Map();
    let undated = 0;
    for (const row of rows) {
      const day = Array.isArray(row.key) ? row.key.join("-") : "";
      if (/^\d{4}-\d{2}-\d{2}$/.test(day) && !Number.isNaN(Date.parse(day))) counts.set(day, row.value);
      else undated += row.value;
    }
    const known = [...counts.keys()].sort();
    const last = Math.max(today, known.length ? Date.parse(known[known.length - 1]) : today);
    const first = known.length ? Date.parse(known[0]) : last;
    const start = Math.min(last - (FEWEST_DAYS - 1) * DAY, Math.max(first, last - (MOST_DAYS - 1) * DAY));
    const series = [];
    for (let at = start; at <= last; at += DAY) {
      const day = new Date(at).toISOString().slice(0, 10);
      series.push({ day, value: counts.get(day) || 0 });
    }
    const earlier = known.filter((day) => Date.parse(day) < start).reduce((total, day) => total + counts.get(day), 0);
    return { series, undated, earlier };
  }

  function ago(seconds) {
    if (seconds < 90) return `${seconds} s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
    if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
    return `${Math.round(seconds / 86400)} days`;
  }

  function setText(selector, content) {
    $(selector).textContent = content;
  }

  function note(selector, parts) {
    setText(selector, parts.filter(Boolean).join(" · "));
  }

  function render(name, figures) {
    shown = [name, figures];
    show("#dashboard"); // first: the charts take the width the layout gives them
    const today = Date.parse(new Date().toISOString().slice(0, 10));
    const documents = sum(figures.types);
    setText("#who-name", name);
    setText("#read-at", new Date(figures.readAt).toLocaleString("en-GB",
      { dateStyle: "medium", timeStyle: "short" }));
    setText("[data-kpi=documents] .kpi-value", number.format(documents));
    setText("[data-kpi=authors] .kpi-value", number.format(figures.authors.length));

    bars($("[data-chart=types] .plot"), top(figures.types, TOP_TYPES, "types"), "Documents per type");
    note("[data-chart=types] .note", [`${number.format(documents)} documents`,
      `${number.format(figures.types.length)} types`]);

    bars($("[data-chart=users] .plot"), top(figures.authors, TOP_USERS, "authors"), "Documents per user");
    note("[data-chart=users] .note", [`Total ${number.format(sum(figures.authors))} documents from ` +
      `${number.format(figures.authors.length)} authors`,
      figures.authors.length > TOP_USERS ? `top ${TOP_USERS} shown` : ""]);

    const perDay = daySeries(figures.perDay, today);
    days($("[data-chart=days] .plot"), perDay.series, "Documents per day");
    note("[data-chart=days] .note", [`${number.format(sum(perDay.series))} in the last ${perDay.series.length} days`,
      perDay.earlier ? `${number.format(perDay.earlier)} earlier` : "",
      documents - sum(figures.perDay) + perDay.undated ? `${number.format(documents - sum(figures.perDay) +
        perDay.undated)} without a date` : ""]);

    if (figures.signUps.error) {
      $("[data-chart=signups] .plot").replaceChildren();
      setText("[data-chart=signups] .note", `Cannot read the sign-ups view: ${figures.signUps.error}`);
      setText("[data-kpi=users] .kpi-value", "–");
    } else {
      const signUps = daySeries(figures.signUps.rows, today);
      days($("[data-chart=signups] .plot"), signUps.series, "Sign-ups per day");
      note("[data-chart=signups] .note", [
        `${number.format(sum(signUps.series))} in the last ${signUps.series.length} days`,
        signUps.earlier ? `${number.format(signUps.earlier)} earlier` : "",
        signUps.undated ? `${number.format(signUps.undated)} users without signed_up_at` : ""]);
      setText("[data-kpi=users] .kpi-value", number.format(sum(figures.signUps.rows)));
    }
    renderFanIn(figures);
  }

  function renderFanIn(figures) {
    const health = figures.fanIn;
    const card = $("[data-chart=fan-in]");
    card.classList.toggle("unavailable", Boolean(health.error));
    if (health.error) {
      setText("[data-chart=fan-in] .note", `Cannot read /_scheduler/docs (a server admin may): ${health.error}`);
      setText("[data-kpi=replications] .kpi-value", "–");
      return;
    }
    const users = figures.signUps.error ? null : sum(figures.signUps.rows);
    setText("[data-fan=covered]", number.format(health.covered));
    setText("[data-fan=users]", users === null ? "?" : number.format(users));
    const share = users ? Math.min(1, health.covered / users) : 0;
    $("[data-fan=meter]").style.width = `${(share * 100).toFixed(1)}%`;
    for (const state of ["running", "pending", "crashing", "failed"]) {
      const count = health.states[state] || 0;
      const tile = $(`[data-state=${state}]`);
      tile.querySelector(".count").textContent = number.format(count);
      tile.classList.toggle("zero", count === 0);
    }
    const oldest = $("[data-fan=oldest]");
    oldest.classList.toggle("late", Boolean(health.oldest && health.oldest.seconds > 300));
    setText("[data-fan=oldest] .count", health.oldest ? ago(health.oldest.seconds) : "none");
    setText("[data-fan=oldest] .detail", health.oldest ? `waiting: ${health.oldest.id}`
      : "every replication into analytics has delivered what it saw");
    setText("[data-kpi=replications] .kpi-value",
      `${number.format((health.states.running || 0) + (health.states.completed || 0))} / ${number.format(health.total)}`);
    note("[data-chart=fan-in] .note", [`${number.format(health.total)} replications into ${settings.analytics}`,
      health.states.completed ? `${number.format(health.states.completed)} completed` : ""]);
  }

  function show(id) {
    for (const screen of screens) $(screen).hidden = screen !== id;
    $("#session").hidden = !["#dashboard", "#refused"].includes(id);
  }

  function banner(message, kind) {
    const element = $("#banner");
    element.hidden = !message;
    element.className = `banner ${kind || ""}`;
    element.textContent = message || "";
  }

  function remember(name, figures) {
    try {
      localStorage.setItem(STORED, JSON.stringify({ name, figures }));
    } catch (error) {
      // A full or disabled storage only costs the offline copy.
    }
  }

  function remembered() {
    try {
      return JSON.parse(localStorage.getItem(STORED) || "null");
    } catch (error) {
      return null;
    }
  }

  function schedule(next, delay) {
    window.clearTimeout(timer);
    timer = window.setTimeout(next, delay);
  }

  function unreachable(error) {
    const last = remembered();
    const server = ROOT.origin + ROOT.pathname;
    if (last) {
      render(last.name, last.figures);
      banner(`Offline: CouchDB at ${server} cannot be reached (${error.message}). These are the figures read at ` +
        `${new Date(last.figures.readAt).toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" })}; ` +
        "the panel retries every 10 s.", "offline");
    } else {
      show("#unreachable");
      setText("#unreachable-server", server);
      banner("");
    }
    schedule(start, RETRY_EVERY);
  }

  async function openDashboard(name) {
    try {
      const figures = await readFigures();
      remember(name, figures);
      render(name, figures);
      banner("");
      schedule(() => openDashboard(name), REFRESH_EVERY);
    } catch (error) {
      if (error instanceof Unreachable) return unreachable(error);
      if (error.status === 401) return signIn("Your session has ended: sign in again.");
      if (error.status === 403) return refuse(name);
      banner(`CouchDB answered ${error.status}: ${error.message}`, "error");
    }
  }

  function refuse(name) {
    window.clearTimeout(timer);
    localStorage.removeItem(STORED);
    setText("#refused-name", name);
    setText("#who-name", name);
    show("#refused");
    banner("");
  }

  function signIn(message) {
    window.clearTimeout(timer);
    show("#signin");
    banner("");
    setText("#signin-error", message || "");
    $("#signin-form [name=name]").focus();
  }

  async function start() {
    let session;
    try {
      session = await request("_session");
    } catch (error) {
      if (error instanceof Unreachable) return unreachable(error);
      return banner(`CouchDB answered ${error.status}: ${error.message}`, "error");
    }
    const name = session.userCtx && session.userCtx.name;
    return name ? openDashboard(name) : signIn();
  }

  $("#signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const button = form.querySelector("button");
    button.disabled = true;
    setText("#signin-error", "");
    try {
      const answer = await request("_session", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name: form.elements.name.value, password: form.elements.password.value }) });
      form.elements.password.value = "";
      await openDashboard(answer.name);
    } catch (error) {
      setText("#signin-error", error instanceof Unreachable ? "CouchDB cannot be reached."
        : error.status === 401 ? "Name or password is incorrect." : error.message);
    } finally {
      button.disabled = false;
    }
  });

  $("#signout").addEventListener("click", async () => {
    localStorage.removeItem(STORED);
    await request("_session", { method: "DELETE" }).catch(() => null);
    signIn();
  });

  $("#refresh").addEventListener("click", () => start());

  let resizing = null;
  window.addEventListener("resize", () => {
    window.clearTimeout(resizing);
    resizing = window.setTimeout(() => { if (shown && !$("#dashboard").hidden) render(...shown); }, 150);
  });

  if ("serviceWorker" in navigator) navigator.serviceWorker.register("sw.js").catch(() => null);
  start();
})();
