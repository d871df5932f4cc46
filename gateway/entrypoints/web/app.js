/* The citizen page: accesses timeline, consents, language switch. No framework, no build step. */
"use strict";
(function () {
  const T = window.PASSERELLE_I18N;
  const LANGS = ["fr", "de", "en"];
  const TOKEN_KEY = "passerelle.citizenToken";
  const LANG_KEY = "passerelle.lang";
  const PAGE_SIZE = 20;
  const $ = (id) => document.getElementById(id);
  const state = { lang: "en", next: "", shown: 0, agencies: new Map(), purposes: new Map(), consents: null,
    session: null };  // {csrfToken} when signed in with the eID (a session cookie), null otherwise

  function pickLanguage() {
    const saved = localStorage.getItem(LANG_KEY);
    if (LANGS.includes(saved)) return saved;
    for (const l of navigator.languages || [navigator.language || "en"]) {
      const base = String(l).slice(0, 2).toLowerCase();
      if (LANGS.includes(base)) return base;
    }
    return "en";
  }

  // Texts and codes are looked up by keys a caller may choose (?signin_error=constructor): own keys only.
  const own = (obj, key) => (obj != null && typeof key === "string" && Object.hasOwn(obj, key) ? obj[key] : undefined);

  const t = (key, ...args) => {
    const v = own(T[state.lang], key);
    return typeof v === "function" ? v(...args) : v;
  };

  function applyTexts() {
    document.documentElement.lang = state.lang;
    document.title = `Passerelle – ${t("title")}`;
    document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    document.querySelectorAll("[data-i18n-label]").forEach((el) => { el.setAttribute("aria-label", t(el.dataset.i18nLabel)); });
    document.querySelectorAll("button.lang").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.lang === state.lang)));
  }

  function say(text) { $("status").textContent = text; }

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
  function signedIn() { return Boolean(state.session || token()); }

  // With an eID session the cookie authenticates and every state-changing call carries the CSRF token.
  async function api(path, options = {}) {
    const auth = state.session ? { "x-csrf-token": state.session.csrfToken } : { authorization: `Bearer ${token()}` };
    const headers = Object.assign(auth, options.headers || {});
    const response = await fetch(path, Object.assign({ credentials: "same-origin" }, options, { headers }));
    if (response.status === 401) {
      signOut(t("expired"));
      throw new Error("401");
    }
    return response;
  }

  // The gateway's problem texts are English: the page shows its own words for the reason code.
  async function problemText(response) {
    try { const p = await response.json(); return reasonText(p.reason); }
    catch (e) { return reasonText(""); }
  }

  function reasonText(code) { return own(T[state.lang].reasons, code) || T[state.lang].reasons.other; }

  // --- sign-in ------------------------------------------------------------------------------------

  async function detectSession() {
    try {
      const r = await fetch("/me/auth/session", { credentials: "same-origin" });
      const body = r.ok ? await r.json() : {};
      $("eid-signin").hidden = !body.configured;
      state.session = body.signedIn ? { csrfToken: body.csrfToken } : null;
    } catch (e) { $("eid-signin").hidden = true; }
  }

  // A refused eID sign-in comes back as /me/?signin_error=CODE: said in the reader's words, then dropped.
  function signinRefusal() {
    const code = new URLSearchParams(location.search).get("signin_error");
    if (!code) return;
    history.replaceState(null, "", location.pathname + location.hash);
    say(t("signinFailed") + reasonText(code));
  }

  async function detectDemo() {
    try {
      const r = await fetch("/v1/demo");
      $("demo-signin").hidden = !r.ok;
    } catch (e) { $("demo-signin").hidden = true; }
  }

  function signIn(tok) {
    sessionStorage.setItem(TOKEN_KEY, tok);
    say(t("signedIn"));
    show();
  }

  async function signOut(message) {
    if (state.session) {   // ends the session at the gateway, then at the identity provider
      let r = null;
      try {
        r = await fetch("/me/auth/logout", { method: "POST", credentials: "same-origin",
          headers: { "x-csrf-token": state.session.csrfToken, accept: "application/json" } });
      } catch (e) { r = null; }
      // Not ended at the gateway (network, 5xx, 403): still signed in, so the page does not pretend otherwise.
      // A 401 means the session is already gone there: signed out.
      if (!r || (!r.ok && r.status !== 401)) { say(t("failed") + (r ? await problemText(r) : reasonText(""))); return; }
      state.session = null;
      const next = r.ok ? ((await r.json().catch(() => ({}))).next || "") : "";
      if (next) { location.assign(next); return; }
    }
    sessionStorage.removeItem(TOKEN_KEY);
    state.agencies.clear(); state.purposes.clear();
    show();
    say(message || t("signedOut"));
  }

  $("demo-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await fetch("/v1/demo/citizen-token", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ nationalId: $("demo-nid").value.trim() }),
    });
    if (!r.ok) { say(t("failed") + await problemText(r)); return; }
    signIn((await r.json()).token);
  });

  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    signIn($("token-input").value.trim());
    $("token-input").value = "";
  });

  $("signout").addEventListener("click", () => signOut());

  // --- views --------------------------------------------------------------------------------------

  function show() {
    const inside = signedIn();
    $("view-signin").hidden = inside;
    $("signed-in").hidden = !inside;
    if (!inside) return;
    const consents = location.hash === "#consents";
    $("view-accesses").hidden = consents;
    $("view-consents").hidden = !consents;
    $("nav-accesses").toggleAttribute("aria-current", !consents);
    $("nav-consents").toggleAttribute("aria-current", consents);
    if (consents) loadConsents(); else loadAccesses(true);
  }

  window.addEventListener("hashchange", () => {
    show();
    const heading = location.hash === "#consents" ? $("consents-h") : $("accesses-h");
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  });

  document.querySelectorAll("button.lang").forEach((b) => b.addEventListener("click", () => {
    state.lang = b.dataset.lang;
    localStorage.setItem(LANG_KEY, state.lang);
    applyTexts();
    rerender();
  }));

  function rerender() {
    if (!signedIn()) return;
    if (!$("view-accesses").hidden) loadAccesses(true);
    if (!$("view-consents").hidden) renderConsents();
  }

  // --- accesses -----------------------------------------------------------------------------------

  function when(iso) {
    return new Intl.DateTimeFormat(state.lang, { dateStyle: "long", timeStyle: "short" }).format(new Date(iso));
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k === "text") node.textContent = v; else node.setAttribute(k, v);
    });
    children.forEach((c) => c && node.append(c));
    return node;
  }

  function row(dl, key, value) {
    if (!value) return;
    dl.append(el("dt", { text: t(key) }), el("dd", {}, value));
  }

  function title(obj) { return (obj && (own(obj, state.lang) || own(obj, "en") || own(obj, "fr"))) || ""; }

  // An agency by its name in the reader's language when the configuration gives one per language.
  function agencyName(agency) { return agency ? title(agency.names) || agency.name || "" : ""; }

  // "registry.population.v1.PopulationRegistry/GetPerson" -> the register's name in the reader's language.
  function source(service) {
    const m = /^registry\.([a-z_]+)\./.exec(service || "");
    const names = T[state.lang].registries;
    return service ? (m && own(names, m[1])) || names.other : "";
  }

  // Data items by their display name from the contract, else their category; never the field's name.
  function dataItems(fields) {
    const words = (fields || []).map((f) => title(f.displayName) || own(T[state.lang].cat, f.category) || "").filter(Boolean);
    return [...new Set(words)].join(", ");
  }

  function basisText(code) { return code ? own(T[state.lang].basis, code) || T[state.lang].basis.other : ""; }

  function renderAccess(a) {
    const id = `access-${a.id}`;
    const outcome = a.outcome || "ok";
    const third = a.subjectRole === "third_party";
    const kind = outcome === "checked" ? "check" : third ? "third-party" : a.notification ? "notification" : "own";
    const article = el("article", { "aria-labelledby": id, class: `access ${outcome} ${kind}` });
    const badges = { check: "checkBadge", "third-party": "thirdPartyBadge", notification: "notificationBadge" };
    if (kind !== "own") article.append(el("p", { class: `kind ${kind}`, text: t(badges[kind]) }));
    const heading = el("h3", { id });
    heading.append(el("span", { text: agencyName(a.agency) }), " ",
      el("time", { datetime: a.time, class: "when", text: when(a.time) }));
    article.append(heading);
    if (outcome === "checked") return renderCheck(a, article);
    if (third) {  // the lookup was about someone else; only this person's fields are listed
      article.append(el("p", { class: "third-party", text: t("thirdPartyNote", agencyName(a.agency)) }));
    }
    if (kind === "notification" && outcome === "ok") {  // "<agency> was notified of your change of address"
      const what = (a.changedCategories || []).map((c) => own(T[state.lang].cat, c) || c).join(", ");
      article.append(el("p", { class: "notification", text: t("notifiedNote", agencyName(a.agency), what) }));
    }
    const dl = el("dl");
    row(dl, "purpose", a.purpose ? (title(a.purpose.title) || a.purpose.code) : "");
    row(dl, "fields", dataItems(a.dataFields));
    row(dl, "source", source(a.service));
    row(dl, "legalBasis", basisText(a.legalBasis));
    row(dl, "legalReference", title(a.legalReferenceTitle) || a.legalReference);
    row(dl, "consent", a.consentId);
    row(dl, "outcome", el("span", { class: `badge ${outcome}`, text: t(outcome) }));
    row(dl, "processing", a.bulk ? t("bulkProcessing") : "");   // one of many subjects looked up in one call
    row(dl, "reason", a.reason ? reasonText(a.reason) : "");
    row(dl, "ai", a.aiSystem);
    row(dl, "recordId", a.id);
    article.append(dl);
    return el("li", {}, article);
  }

  // An agency (or staff) asked whether it could access this person's data: a probe, shown as such.
  function renderCheck(a, article) {
    const who = agencyName(a.agency);
    article.append(el("p", { text: t("checkNote", who, source(a.service)) }));
    const dl = el("dl");
    row(dl, "purpose", a.purpose ? (title(a.purpose.title) || a.purpose.code) : "");
    row(dl, "outcome", el("span", { class: "badge checked", text: t("checked") }));
    row(dl, "checkAnswer", a.reason ? reasonText(a.reason) : t("checkAllowed"));
    row(dl, "recordId", a.id);
    article.append(dl);
    return el("li", {}, article);
  }

  function remember(a) {
    if (a.agency) state.agencies.set(a.agency.id, a.agency);
    if (a.purpose) state.purposes.set(a.purpose.code, a.purpose.title);
  }

  function fillSelect(select, entries, label) {
    const current = select.value;
    select.replaceChildren(el("option", { value: "", text: t("all") }));
    for (const [value, text] of entries) select.append(el("option", { value, text: label(text, value) }));
    select.value = current;
  }

  function query() {
    const p = new URLSearchParams({ pageSize: String(PAGE_SIZE) });
    for (const name of ["since", "until", "consumer", "purpose"]) {
      const v = $(`f-${name}`).value;
      if (v) p.set(name, v);
    }
    if (state.next) p.set("pageToken", state.next);
    return p;
  }

  async function loadAccesses(reset) {
    if (reset) { state.next = ""; state.shown = 0; $("timeline").replaceChildren(); }
    say(t("loading"));
    let r;
    try { r = await api(`/v1/me/accesses?${query()}`); } catch (e) { return; }
    if (!r.ok) { say(t("failed") + await problemText(r)); return; }
    const body = await r.json();
    const accesses = body.accesses || [];
    accesses.forEach((a) => { remember(a); $("timeline").append(renderAccess(a)); });
    state.shown += accesses.length;
    state.next = body.nextPageToken || "";
    $("more").hidden = !state.next;
    $("summary").textContent = t("summary", body.totalCount || 0);
    const hidden = body.hiddenCount || 0;
    $("hidden-note").hidden = hidden === 0;
    $("hidden-note").textContent = hidden ? t("hidden", hidden) : "";
    fillSelect($("f-consumer"), state.agencies, (agency) => agencyName(agency));
    fillSelect($("f-purpose"), state.purposes, (titles, code) => title(titles) || code);
    say(t("loaded", state.shown));
  }

  $("filters").addEventListener("submit", (ev) => { ev.preventDefault(); loadAccesses(true); });
  $("filters").addEventListener("reset", () => setTimeout(() => loadAccesses(true), 0));
  $("more").addEventListener("click", () => loadAccesses(false));

  async function download(format) {
    let r;
    try { r = await api(`/v1/me/accesses/export?format=${format}`); } catch (e) { return; }
    if (!r.ok) { say(t("failed") + await problemText(r)); return; }
    const url = URL.createObjectURL(await r.blob());
    const link = el("a", { href: url, download: `my-accesses.${format}` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }
  $("export-json").addEventListener("click", () => download("json"));
  $("export-csv").addEventListener("click", () => download("csv"));

  // --- consents -----------------------------------------------------------------------------------

  const STATUS = {
    CONSENT_STATUS_ACTIVE: "statusActive", CONSENT_STATUS_REVOKED: "statusRevoked",
    CONSENT_STATUS_EXPIRED: "statusExpired", CONSENT_STATUS_SPENT: "statusSpent",
  };

  async function loadConsents() {
    say(t("loading"));
    let r;
    try { r = await api("/v1/me/consents"); } catch (e) { return; }
    if (!r.ok) {
      state.consents = null;
      $("consents").replaceChildren(el("li", { text: r.status === 404 ? t("consentsUnavailable") : t("failed") + await problemText(r) }));
      say("");
      return;
    }
    state.consents = (await r.json()).consents || [];
    renderConsents();
    say("");
  }

  function dateOnly(value) {
    if (!value) return "";
    return new Intl.DateTimeFormat(state.lang, { dateStyle: "long" }).format(new Date(value));
  }

  function renderConsents() {
    const list = $("consents");
    if (!state.consents) return;
    if (!state.consents.length) { list.replaceChildren(el("li", { text: t("noConsents") })); return; }
    list.replaceChildren(...state.consents.map(renderConsent));
  }

  function renderConsent(c) {
    const id = `consent-${c.id}`;
    const who = title(c.consumerNames) || c.consumerName || c.consumer;
    const article = el("article", { "aria-labelledby": id, class: "consent" });
    article.append(el("h3", { id, text: who }));
    const dl = el("dl");
    row(dl, "purpose", title(c.purposeTitle) || c.purpose);
    row(dl, "categories", (c.categories || []).map((k) => own(T[state.lang].cat, k) || k).join(", "));
    row(dl, "outcome", el("span", { class: "badge", text: t(own(STATUS, c.status) || "statusActive") }));
    row(dl, "granted", dateOnly(c.grantedAt));
    row(dl, "expires", c.expiresAt ? dateOnly(c.expiresAt) : t("noExpiry"));
    if (c.singleUse) row(dl, "consent", t("singleUse"));
    article.append(dl);
    if (c.status === "CONSENT_STATUS_ACTIVE") {
      const button = el("button", { type: "button", class: "danger", "aria-label": t("revokeLabel", who), text: t("revoke") });
      button.addEventListener("click", () => confirmRevoke(c, who, button));
      article.append(button);
    }
    return el("li", {}, article);
  }

  // A modal dialog says what withdrawing changes; Cancel (or Escape) returns focus to the button.
  function confirmRevoke(c, who, button) {
    const dialog = $("confirm");
    $("confirm-text").textContent = t("confirmText", who, title(c.purposeTitle) || c.purpose);
    dialog.onclose = () => {
      if (dialog.returnValue === "yes") revoke(c.id); else button.focus();
    };
    dialog.returnValue = "";
    dialog.showModal();
    $("confirm-no").focus();
  }

  async function revoke(id) {
    let r;
    try { r = await api(`/v1/me/consents/${encodeURIComponent(id)}`, { method: "DELETE" }); } catch (e) { return; }
    if (!r.ok) { say(t("failed") + await problemText(r)); return; }
    await loadConsents();
    say(t("revoked"));
    $("consents-h").setAttribute("tabindex", "-1");
    $("consents-h").focus();
  }

  // --- start --------------------------------------------------------------------------------------

  state.lang = pickLanguage();
  applyTexts();
  detectDemo();
  detectSession().then(show).then(signinRefusal);
})();
