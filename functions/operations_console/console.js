"use strict";
// The operations console. Vanilla JS, no build step: every value shown is set with textContent, never parsed as
// HTML. The operator's token stays in this tab's sessionStorage and goes only to this API's own routes.
(() => {
  const TOKEN_KEY = "billing.operatorToken";
  // The page is served at <stage prefix>/ops/console (e.g. /Prod/ops/console in AWS, /ops/console locally);
  // the admin routes live beside it.
  const apiBase = window.location.pathname.replace(/\/ops\/console\/?$/, "");
  const byId = (id) => document.getElementById(id);

  class Refused extends Error {
    constructor(status, body) {
      super((body && body.message) || `the API answered ${status}`);
      this.status = status;
      this.code = (body && body.code) || "http_" + status;
    }
  }

  async function api(method, path, token) {
    const response = await fetch(apiBase + path, {
      method,
      headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
    });
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Refused(response.status, body);
    return body;
  }

  // Who is signed in. Today every operator shares the admin token and the API records them as `user:admin`;
  // when operator identities exist, this asks the API (GET /ops/whoami) instead.
  function operatorFor(_token) {
    return { name: "admin", via: "(shared admin token)" };
  }

  function showSignedIn(operator) {
    byId("operator-name").textContent = operator.name;
    byId("operator-via").textContent = operator.via;
    byId("operator").hidden = false;
    byId("sign-in").hidden = true;
    byId("workspace").hidden = false;
  }

  function showSignedOut(message) {
    byId("operator").hidden = true;
    byId("workspace").hidden = true;
    byId("sign-in").hidden = false;
    const error = byId("sign-in-error");
    error.textContent = message || "";
    error.hidden = !message;
    byId("token").value = "";
    byId("token").focus();
  }

  function renderSwitches(overview) {
    const rows = overview.switches.map((item) => {
      const row = document.createElement("tr");
      row.dataset.switch = item.name;
      const cells = [item.name, item.scope, item.enabled ? "on" : "off", item.description];
      for (const value of cells) {
        const cell = document.createElement("td");
        cell.textContent = String(value);
        row.append(cell);
      }
      if (item.enabled) row.children[2].className = "on";
      return row;
    });
    byId("switches-table").tBodies[0].replaceChildren(...rows);
    byId("switches-status").textContent = `${rows.length} switches, read at ${overview.read_at}`;
  }

  async function signIn(token) {
    try {
      const overview = await api("GET", "/ops/switches", token);
      sessionStorage.setItem(TOKEN_KEY, token);
      showSignedIn(operatorFor(token));
      renderSwitches(overview);
    } catch (error) {
      sessionStorage.removeItem(TOKEN_KEY);
      const refused = error instanceof Refused && error.status === 401;
      showSignedOut(refused ? `Refused: ${error.message} (${error.code})` : `Could not reach the API: ${error.message}`);
    }
  }

  byId("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = byId("token").value.trim();
    if (token) signIn(token);
  });
  byId("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showSignedOut("");
  });

  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
  else showSignedOut("");
})();
