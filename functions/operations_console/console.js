"use strict";
// The operations console (ADR 0028). Vanilla JS, no build step: every value shown is set with textContent, never
// parsed as HTML (a dead letter's payload and reason are whatever a producer sent). The operator's token stays in
// this tab's sessionStorage and goes only to this API's own routes.
//
// Views are chosen by the URL's hash, so a support report or an alarm can link to them:
//   #dlq?job_type=...&correlation_id=...   the list, filtered (any GET /ops/dlq query parameter)
//   #dlq/<id>                              one item: envelope, attempts, payload, replay and discard
(() => {
  const TOKEN_KEY = "billing.operatorToken";
  const FILTER_FIELDS = ["status", "job_type", "fingerprint", "correlation_id", "failed_after", "failed_before"];
  const TIME_FIELDS = new Set(["failed_after", "failed_before"]);
  const PAGE_SIZE = 25;
  const BULK_POLL_MS = 1000;
  // The page is served at <stage prefix>/ops/console (e.g. /Prod/ops/console in AWS, /ops/console locally);
  // the admin routes live beside it.
  const apiBase = window.location.pathname.replace(/\/ops\/console\/?$/, "");
  const byId = (id) => document.getElementById(id);
  const state = {
    token: null,
    operator: null,
    filter: {},
    cursors: [],
    next: null,
    bulkTimer: null,
    bulkKey: null,
    item: null,
  };

  class Refused extends Error {
    constructor(status, body) {
      super((body && body.message) || `the API answered ${status}`);
      this.status = status;
      this.code = (body && body.code) || "http_" + status;
      this.details = (body && body.details) || null;
    }
  }

  async function api(method, path, body, extraHeaders) {
    const headers = { Authorization: `Bearer ${state.token}`, Accept: "application/json", ...(extraHeaders || {}) };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(apiBase + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
    const answer = await response.json().catch(() => null);
    if (!response.ok) throw new Refused(response.status, answer);
    return answer;
  }

  // "Refused: <message> (<code>)": the machine-readable code is what a runbook or an engineer searches for.
  function describe(error) {
    if (error instanceof Refused) return `Refused: ${error.message} (${error.code})`;
    return `Could not reach the API: ${error.message}`;
  }

  function showAlert(id, message) {
    const element = byId(id);
    element.textContent = message || "";
    element.hidden = !message;
  }

  function cell(row, value) {
    const element = document.createElement("td");
    element.textContent = value === null || value === undefined ? "" : String(value);
    row.append(element);
    return element;
  }

  // --- sign-in -----------------------------------------------------------------------------------------------

  function showSignedIn(operator) {
    byId("operator-name").textContent = operator.name;
    byId("operator-role").textContent = `(${operator.role})`;
    byId("operator").hidden = false;
    byId("sign-in").hidden = true;
    byId("workspace").hidden = false;
    const admin = operator.role === "admin";
    byId("dlq-discard-form").hidden = !admin;
    byId("dlq-discard-note").hidden = admin;
    byId("dlq-discard-note").textContent = admin
      ? ""
      : `Discarding needs the admin role; you are signed in as ${operator.role}. Ask an admin, or replay.`;
  }

  function showSignedOut(message) {
    state.token = null;
    state.operator = null;
    stopBulkPolling();
    byId("operator").hidden = true;
    byId("workspace").hidden = true;
    byId("sign-in").hidden = false;
    showAlert("sign-in-error", message);
    byId("token").value = "";
    byId("password").value = "";
    (byId("sign-in-form").dataset.signInUrl ? byId("username") : byId("token")).focus();
  }

  // Cognito's InitiateAuth from the browser (the operators' public client, USER_PASSWORD_AUTH): the password goes
  // there and nowhere else. A first sign-in with a temporary password, or one that asks for a TOTP code, is a
  // challenge this page does not answer: the runbook's CLI steps do (docs/runbooks/operations.md, Operators).
  async function cognitoSignIn(username, password) {
    const form = byId("sign-in-form");
    let response;
    try {
      response = await fetch(form.dataset.signInUrl, {
        method: "POST",
        headers: {
          "Content-Type": "application/x-amz-json-1.1",
          "X-Amz-Target": "AWSCognitoIdentityProviderService.InitiateAuth",
        },
        body: JSON.stringify({
          AuthFlow: "USER_PASSWORD_AUTH",
          ClientId: form.dataset.clientId,
          AuthParameters: { USERNAME: username, PASSWORD: password },
        }),
      });
    } catch (error) {
      showSignedOut(`Sign-in service unreachable: ${error.message}`);
      return;
    }
    const body = await response.json().catch(() => ({}));
    byId("password").value = "";
    if (!response.ok) {
      const kind = String(body.__type || `http_${response.status}`).split("#").pop();
      showSignedOut(`Not signed in: ${body.message || "refused"} (${kind})`);
      return;
    }
    if (body.ChallengeName) {
      showSignedOut(
        `Not signed in: the sign-in asks for ${body.ChallengeName}; complete it as the runbook describes ` +
          "(docs/runbooks/operations.md, Operators), then sign in here.",
      );
      return;
    }
    const token = body.AuthenticationResult && body.AuthenticationResult.IdToken;
    if (!token) {
      showSignedOut("Not signed in: the sign-in service returned no ID token");
      return;
    }
    signIn(token);
  }

  async function signIn(token) {
    state.token = token;
    try {
      state.operator = await api("GET", "/ops/whoami");
    } catch (error) {
      sessionStorage.removeItem(TOKEN_KEY);
      showSignedOut(describe(error));
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    showSignedIn(state.operator);
    route();
    loadSwitches();
  }

  // --- kill switches -----------------------------------------------------------------------------------------

  async function loadSwitches() {
    try {
      const overview = await api("GET", "/ops/switches");
      const rows = overview.switches.map((item) => {
        const row = document.createElement("tr");
        row.dataset.switch = item.name;
        for (const value of [item.name, item.scope, item.enabled ? "on" : "off", item.description]) cell(row, value);
        if (item.enabled) row.children[2].className = "on";
        return row;
      });
      byId("switches-table").tBodies[0].replaceChildren(...rows);
      byId("switches-status").textContent = `${rows.length} switches, read at ${overview.read_at}`;
    } catch (error) {
      byId("switches-status").textContent = describe(error);
    }
  }

  // --- routing -----------------------------------------------------------------------------------------------

  function parseHash() {
    const hash = decodeURIComponent(window.location.hash.replace(/^#/, "").split("?")[0]);
    const query = new URLSearchParams(window.location.hash.includes("?") ? window.location.hash.split("?")[1] : "");
    if (hash.startsWith("dlq/") && hash.length > 4) return { view: "item", id: hash.slice(4) };
    const filter = {};
    for (const name of FILTER_FIELDS) {
      const value = query.get(name);
      if (value) filter[name] = value;
    }
    return { view: "list", filter };
  }

  function route() {
    if (!state.operator) return;
    const where = parseHash();
    const list = where.view === "list";
    byId("dlq-list").hidden = !list;
    byId("dlq-bulk-replay").hidden = !list;
    byId("switches").hidden = !list;
    byId("dlq-item").hidden = list;
    if (list) {
      byId("dlq-back").href = window.location.hash.startsWith("#dlq") ? window.location.hash : "#dlq";
      state.filter = where.filter;
      fillFilterForm(where.filter);
      state.cursors = [];
      loadList(null);
    } else {
      loadItem(where.id);
    }
  }

  // --- list --------------------------------------------------------------------------------------------------

  // datetime-local has no zone: the console speaks UTC, as the API does.
  const toUtcIso = (local) => (local ? `${local.length === 16 ? local + ":00" : local}Z` : "");
  const fromUtcIso = (iso) => (iso ? iso.replace(/(\.\d+)?(Z|[+-]00:00)$/, "").slice(0, 19) : "");

  function fillFilterForm(filter) {
    const form = byId("dlq-filter");
    for (const name of FILTER_FIELDS) {
      const value = filter[name] || "";
      form.elements[name].value = TIME_FIELDS.has(name) ? fromUtcIso(value) : value;
    }
  }

  function filterFromForm() {
    const form = byId("dlq-filter");
    const filter = {};
    for (const name of FILTER_FIELDS) {
      const raw = form.elements[name].value.trim();
      if (raw) filter[name] = TIME_FIELDS.has(name) ? toUtcIso(raw) : raw;
    }
    return filter;
  }

  const queryOf = (filter) => new URLSearchParams(filter).toString();

  async function loadList(cursor) {
    const query = { ...state.filter, limit: String(PAGE_SIZE) };
    if (cursor) query.cursor = cursor;
    showAlert("dlq-list-error", "");
    byId("dlq-list-status").textContent = "Loading…";
    try {
      const page = await api("GET", `/ops/dlq?${queryOf(query)}`);
      renderList(page.items);
      state.next = page.next_cursor;
      byId("dlq-next-page").disabled = !page.next_cursor;
      byId("dlq-first-page").disabled = !cursor;
      const described = Object.keys(state.filter).length ? ` matching ${queryOf(state.filter)}` : " (status dead)";
      byId("dlq-list-status").textContent =
        `${page.items.length} item${page.items.length === 1 ? "" : "s"}${described}` +
        (page.next_cursor ? "; more on the next page" : "");
    } catch (error) {
      renderList([]);
      byId("dlq-list-status").textContent = "";
      showAlert("dlq-list-error", describe(error));
    }
  }

  function renderList(items) {
    const rows = items.map((item) => {
      const row = document.createElement("tr");
      row.dataset.id = item.id;
      const opened = cell(row, "");
      const link = document.createElement("a");
      link.href = `#dlq/${encodeURIComponent(item.id)}`;
      link.textContent = item.failed_at;
      opened.append(link);
      for (const value of [
        item.job_type,
        item.status,
        item.reason,
        item.fingerprint,
        `${item.attempt} / ${item.cycles}`,
        item.correlation_id || "",
        item.expires_at,
      ]) {
        cell(row, value);
      }
      return row;
    });
    byId("dlq-table").tBodies[0].replaceChildren(...rows);
  }

  // --- one item ----------------------------------------------------------------------------------------------

  async function loadItem(id) {
    showAlert("dlq-item-error", "");
    byId("dlq-action-result").textContent = "";
    byId("dlq-item-title").textContent = `Item ${id}`;
    byId("dlq-item-body").hidden = true;
    try {
      renderItem(await api("GET", `/ops/dlq/${encodeURIComponent(id)}`));
    } catch (error) {
      showAlert("dlq-item-error", describe(error));
    }
  }

  function renderItem(item) {
    state.item = item;
    const envelope = item.envelope || {};
    const fields = [
      ["Status", item.status],
      ["Job type", item.job_type],
      ["Job id", envelope.job_id],
      ["Source", item.source],
      ["Reason", item.reason],
      ["Error", [item.error_type, envelope.error_code].filter(Boolean).join(" / ")],
      ["Failure class", envelope.failure_class],
      ["Fingerprint", item.fingerprint],
      ["Failed at (UTC)", item.failed_at],
      ["Attempt", `${item.attempt} of ${envelope.max_attempts} per cycle; cycles: ${item.cycles}`],
      ["Backoff", envelope.backoff_strategy],
      ["Correlation id", item.correlation_id || "none"],
      ["Event id", envelope.event_id],
      ["First enqueued at (UTC)", envelope.original_enqueued_at],
      ["Expires at (UTC)", item.expires_at],
      ["Came from", `${item.origin} via ${item.dead_letter_queue}`],
      ["Replays to", item.replay_target ? describeTarget(item.replay_target) : item.not_replayable_reason || "—"],
    ];
    if (item.status === "discarded") {
      fields.push(["Discarded", `by ${item.discarded_by} at ${item.discarded_at}: ${item.discard_reason}`]);
    }
    const list = byId("dlq-item-fields");
    list.replaceChildren();
    for (const [name, value] of fields) {
      const term = document.createElement("dt");
      term.textContent = name;
      const definition = document.createElement("dd");
      definition.textContent = value === null || value === undefined ? "" : String(value);
      definition.dataset.field = name;
      list.append(term, definition);
    }
    byId("dlq-attempts").tBodies[0].replaceChildren(
      ...(envelope.attempts || []).map((attempt) => {
        const row = document.createElement("tr");
        const error = [attempt.error_type, attempt.error_code].filter(Boolean).join(" / ");
        for (const value of [attempt.attempt, attempt.at, error, attempt.failure_class, attempt.fingerprint,
          attempt.reason]) {
          cell(row, value);
        }
        return row;
      }),
    );
    byId("dlq-replays").tBodies[0].replaceChildren(
      ...(item.replays || []).map((replay) => {
        const row = document.createElement("tr");
        for (const value of [replay.replay_id, replay.by, replay.at, replay.cycle, replay.result || "sending"]) {
          cell(row, value);
        }
        return row;
      }),
    );
    byId("dlq-payload").textContent = prettyPayload(envelope.payload);
    byId("dlq-stack").textContent = (envelope.stack || []).join("\n") || "(none recorded)";
    const replayable = item.replayable && item.status === "dead";
    byId("dlq-replay").disabled = !item.replayable;
    const note = byId("dlq-replay-note");
    note.hidden = replayable;
    note.textContent = !item.replayable
      ? `Cannot be replayed: ${item.not_replayable_reason || "no replay target"}`
      : item.status === "dead"
        ? ""
        : `This item is ${item.status}: the API refuses another replay until it fails again.`;
    byId("dlq-discard").disabled = item.status !== "dead";
    byId("dlq-item-body").hidden = false;
  }

  function describeTarget(target) {
    return target.kind === "sqs" ? `queue ${target.queue}` : `function ${target.function}`;
  }

  // The payload is the producer's text, shown as text: pretty-printed when it is JSON, unchanged otherwise.
  function prettyPayload(payload) {
    if (typeof payload !== "string") return "";
    try {
      return JSON.stringify(JSON.parse(payload), null, 2);
    } catch {
      return payload;
    }
  }

  async function replayItem() {
    const item = state.item;
    if (!item) return;
    byId("dlq-replay").disabled = true;
    byId("dlq-action-result").textContent = "Replaying…";
    showAlert("dlq-item-error", "");
    try {
      const replayed = await api("POST", `/ops/dlq/${encodeURIComponent(item.id)}/replay`);
      renderItem(replayed);
      const last = replayed.replays[replayed.replays.length - 1];
      byId("dlq-action-result").textContent =
        `Replayed: status ${replayed.status}, replay ${last ? last.replay_id : ""} ${last ? last.result : ""}`.trim();
    } catch (error) {
      byId("dlq-action-result").textContent = "";
      showAlert("dlq-item-error", describe(error));
      byId("dlq-replay").disabled = !item.replayable;
    }
  }

  async function discardItem(reason) {
    const item = state.item;
    if (!item) return;
    byId("dlq-action-result").textContent = "Discarding…";
    showAlert("dlq-item-error", "");
    try {
      const discarded = await api("POST", `/ops/dlq/${encodeURIComponent(item.id)}/discard`, { reason });
      renderItem(discarded);
      byId("dlq-discard-reason").value = "";
      byId("dlq-action-result").textContent = `Discarded by ${discarded.discarded_by}`;
    } catch (error) {
      byId("dlq-action-result").textContent = "";
      showAlert("dlq-item-error", describe(error));
    }
  }

  // --- bulk replay -------------------------------------------------------------------------------------------

  function bulkRequest(dryRun) {
    const form = byId("bulk-form");
    const filter = { ...state.filter };
    delete filter.status; // a bulk replay only ever takes dead items
    return {
      filter,
      dry_run: dryRun,
      max_count: Number(form.elements.max_count.value),
      rate_per_second: Number(form.elements.rate_per_second.value),
    };
  }

  async function previewBulk() {
    stopBulkPolling();
    showAlert("bulk-error", "");
    byId("bulk-progress").hidden = true;
    byId("bulk-preview-result").hidden = true;
    try {
      const preview = await api("POST", "/ops/dlq/replay", bulkRequest(true));
      const rows = (preview.by_fingerprint || []).map((group) => {
        const row = document.createElement("tr");
        for (const value of [group.fingerprint, group.job_type, group.reason, group.count]) cell(row, value);
        return row;
      });
      byId("bulk-table").tBodies[0].replaceChildren(...rows);
      // `refused`: {code, switches} when a kill switch covering a selected job type is on (a real run is refused)
      const refused = preview.refused
        ? `; it would be refused: ${preview.refused.code} (${(preview.refused.switches || []).join(", ")})`
        : "";
      byId("bulk-summary").textContent =
        `Dry run: ${preview.matched} matched, ${preview.selected} selected, at ${preview.rate_per_second}/s about ` +
        `${preview.estimated_seconds} s${refused}.`;
      byId("bulk-confirm").textContent = `Confirm replay of ${preview.selected} items`;
      byId("bulk-confirm").disabled = !preview.selected || Boolean(preview.refused);
      // One key per previewed request: a double click or a retry answers the same job, never a second one.
      state.bulkKey = newKey();
      byId("bulk-preview-result").hidden = false;
    } catch (error) {
      showAlert("bulk-error", describe(error));
    }
  }

  async function confirmBulk() {
    byId("bulk-confirm").disabled = true;
    showAlert("bulk-error", "");
    try {
      const started = await api("POST", "/ops/dlq/replay", bulkRequest(false), { "Idempotency-Key": state.bulkKey });
      byId("bulk-preview-result").hidden = true;
      byId("bulk-progress").hidden = false;
      byId("bulk-progress-bar").max = Math.max(1, started.selected);
      byId("bulk-progress-bar").value = 0;
      byId("bulk-progress-text").textContent =
        `Job ${started.replay_job_id} ${started.status}: 0 of ${started.selected}, about ${started.estimated_seconds} s`;
      pollBulk(started.replay_job_id);
    } catch (error) {
      byId("bulk-confirm").disabled = false;
      showAlert("bulk-error", describe(error));
    }
  }

  const FINAL = new Set(["completed", "refused", "failed", "cancelled"]);

  async function pollBulk(jobId) {
    stopBulkPolling();
    let job;
    try {
      job = await api("GET", `/ops/dlq/replays/${encodeURIComponent(jobId)}`);
    } catch (error) {
      showAlert("bulk-error", describe(error));
      return;
    }
    // Processed = replayed + skipped + not sent (as the job counts it); "failed again" are replayed items that
    // came back dead (the job pauses itself when too many of its first items do).
    const done = (job.replayed || 0) + (job.skipped || 0) + (job.send_failed || 0);
    byId("bulk-progress-bar").max = Math.max(1, job.selected);
    byId("bulk-progress-bar").value = done;
    const counts =
      `replayed ${job.replayed}, skipped ${job.skipped}, not sent ${job.send_failed}, failed again ${job.failed_again}`;
    const why = job.reason ? ` (${job.reason})` : "";
    byId("bulk-progress-text").textContent =
      `Job ${jobId} ${job.status}: ${done} of ${job.selected}; ${counts}${why}`;
    if (FINAL.has(job.status) || job.status === "paused") {
      if (job.status === "completed") loadList(null);
      return;
    }
    state.bulkTimer = window.setTimeout(() => pollBulk(jobId), BULK_POLL_MS);
  }

  function newKey() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
    const bytes = window.crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function stopBulkPolling() {
    if (state.bulkTimer !== null) window.clearTimeout(state.bulkTimer);
    state.bulkTimer = null;
  }

  // --- events ------------------------------------------------------------------------------------------------

  byId("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = byId("token").value.trim();
    const username = byId("username").value.trim();
    if (token) signIn(token);
    else if (username && byId("password").value) cognitoSignIn(username, byId("password").value);
  });
  byId("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignedOut("");
  });
  byId("dlq-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    const query = queryOf(filterFromForm());
    const target = query ? `#dlq?${query}` : "#dlq";
    if (window.location.hash === target) route();
    else window.location.hash = target;
  });
  byId("filter-clear").addEventListener("click", () => {
    if (window.location.hash === "#dlq") route();
    else window.location.hash = "#dlq";
  });
  byId("dlq-next-page").addEventListener("click", () => {
    if (!state.next) return;
    state.cursors.push(state.next);
    loadList(state.next);
  });
  byId("dlq-first-page").addEventListener("click", () => {
    state.cursors = [];
    loadList(null);
  });
  byId("dlq-replay").addEventListener("click", replayItem);
  byId("dlq-discard-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const reason = byId("dlq-discard-reason").value.trim();
    if (reason) discardItem(reason);
  });
  byId("bulk-form").addEventListener("submit", (event) => {
    event.preventDefault();
    previewBulk();
  });
  byId("bulk-confirm").addEventListener("click", confirmBulk);
  byId("bulk-cancel").addEventListener("click", () => {
    byId("bulk-preview-result").hidden = true;
  });
  window.addEventListener("hashchange", route);

  if (!byId("sign-in-form").dataset.signInUrl) {
    // no sign-in service configured: the token field is the way in
    for (const id of ["username", "password"]) byId(id).hidden = true;
    for (const label of byId("sign-in-form").querySelectorAll("label[for=username], label[for=password]")) {
      label.hidden = true;
    }
    byId("token-entry").open = true;
  }
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
  else showSignedOut("");
})();
