// wdrec's page: plain DOM code over the JSON API (no build step). Data goes in via textContent only.
"use strict";

// The card's columns: overall ranking, the paired difference to the best baseline, the repeat / explore split.
const KEY_METRICS = [
  ["ndcg@10", "NDCG@10"], ["recall@10", "Recall@10"], ["hit_rate@10", "HitRate@10"],
  ["ndcg@10_minus_best_baseline", "Δ NDCG@10 vs best baseline (± SE)"],
  ["recall_rep@10", "Recall repeat"], ["recall_expl@10", "Recall explore"],
  ["new_ndcg@10", "\"New to you\" NDCG@10"], ["repeat_share@10", "repeats in top 10"],
];
const PRODUCTS = 5;  // products fetched per label, shown when the label is expanded
const state = { basket: [], labels: [], clac1Ids: new Map(), scoreTimer: null, clientId: null, hidden: [], card: null };

const $ = (selector) => document.querySelector(selector);

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  for (const child of children) node.append(child);
  return node;
}

// The API answers every error as {"error": {"code", "message", "details"}}; a network failure has no body.
class ApiError extends Error {}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { headers: { "Content-Type": "application/json" }, ...options });
  } catch (err) {
    throw new ApiError(`Server unreachable (${err.message}). Is wdrec serve running?`);
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const error = body && body.error;
    let message = error ? error.message : `HTTP ${response.status}`;
    const suggestions = error && error.details && error.details.suggestions;
    if (suggestions) {
      message += " — did you mean " + Object.values(suggestions).flat().join(", ") + "?";
    }
    throw new ApiError(message);
  }
  return body;
}

function showError(node, err) {
  node.textContent = err ? err.message : "";
  node.hidden = !err;
}

function clac1Colour(clac1) {
  if (!state.clac1Ids.has(clac1)) state.clac1Ids.set(clac1, state.clac1Ids.size);
  const hue = Math.round((state.clac1Ids.get(clac1) * 137.508) % 360);  // golden angle: distinct neighbours
  return `hsl(${hue} 70% 88%)`;
}

function chip(label, clac1) {
  const node = el("span", { className: "chip", textContent: label, title: clac1 });
  node.style.background = clac1Colour(clac1);
  return node;
}

function productFacts(product) {
  const origin = {
    bought: `bought in ${product.sessions} session${product.sessions === 1 ? "" : "s"}` +
      (product.days_ago === null ? "" : `, last ${product.days_ago} days before the data ends`),
    segment: "popular with similar clients",
    label: "best seller",
  }[product.source];
  return [product.brand, `PD_C ${product.pd_c}`, origin].filter(Boolean).join(" · ");
}

function productList(products) {
  if (!products.length) return el("em", { textContent: "no product of this label was sold" });
  return el("ol", { className: "products" }, ...products.map((product) => el("li", { className: product.source },
    el("span", { className: "product-name", textContent: product.name || `product ${product.pd_c}` }),
    el("span", { className: "product-facts", textContent: productFacts(product) }))));
}

const signed = (value) => (value < 0 ? "−" : "+") + Math.abs(value).toFixed(3);

// The label's logit as the model's parts (they sum to it), largest first; co-purchase by history label.
// A list, not a table: the ranking's own rows stay the only rows of its table.
function contributionList(explanation) {
  const largest = Math.max(...explanation.contributions.map((c) => Math.abs(c.value)), 1e-9);
  const items = explanation.contributions.map((c) => {
    const bar = el("span", { className: c.value < 0 ? "negative" : "positive" });
    bar.style.width = `${((Math.abs(c.value) / largest) * 100).toFixed(1)}%`;
    const family = el("span", { className: "family", textContent: c.family });
    if (c.sources && c.sources.length) {
      family.append(el("span", { className: "sources", textContent: c.sources
        .map((s) => `${s.label === null ? "other labels" : s.label} ${signed(s.value)}`).join(", ") }));
    }
    const item = el("li", { className: "contribution" }, family,
      el("span", { className: "value", textContent: signed(c.value) }), el("span", { className: "cbar" }, bar));
    item.dataset.term = c.term;
    return item;
  });
  return el("div", { className: "why" },
    el("p", { className: "why-title", textContent: `Why: the logit ${explanation.logit.toFixed(3)} as the model's parts` }),
    el("ul", { className: "contributions" }, ...items));
}

// A label row gets a toggle that shows its contributions and products in a row of their own below it.
function labelRows(item, label, cells) {
  const row = el("tr", { className: item.bought_before ? "bought" : "" }, ...cells);
  if (!item.products && !item.explanation) return [row];
  const parts = [];
  if (item.explanation) parts.push(contributionList(item.explanation));
  if (item.products) parts.push(productList(item.products));
  const detail = el("tr", { className: "products-row", hidden: true }, el("td", { colSpan: 3 }, ...parts));
  const toggle = el("button", { type: "button", className: "expand", textContent: "▸",
    title: `why ${item.label}, and its products` });
  toggle.setAttribute("aria-expanded", "false");
  toggle.addEventListener("click", () => {
    detail.hidden = !detail.hidden;
    toggle.textContent = detail.hidden ? "▸" : "▾";
    toggle.setAttribute("aria-expanded", String(!detail.hidden));
  });
  label.prepend(toggle);
  return [row, detail];
}

const selected = (select) => [...select.selectedOptions].map((option) => option.value);

// The filters of both rankings, as GET /recommend's query parameters and as POST /score's body fields.
function filters() {
  return {
    exclude_bought: $("#filter-new").checked,
    clac1: selected($("#filter-clac1")),
    exclude_clac1: selected($("#filter-exclude-clac1")),
    exclude: [...state.hidden],
  };
}

function filterParams() {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(filters())) {
    if (Array.isArray(value)) value.forEach((item) => params.append(name, item));
    else if (value) params.set(name, "true");
  }
  return params;
}

function filtersChanged() {
  const hidden = state.hidden.map((name) => {
    const node = chip(name, state.labels.find((label) => label.name === name)?.clac1 || "");
    node.title = "click to show again";
    node.addEventListener("click", () => {
      state.hidden = state.hidden.filter((other) => other !== name);
      filtersChanged();
    });
    return node;
  });
  $("#filter-exclude").replaceChildren(...(hidden.length ? hidden : [el("em", { textContent: "none" })]));
  if (state.clientId !== null) rankClient().catch((err) => showError($("#client-error"), err));
  scheduleScore();
}

function hideLabel(name) {
  if (!state.hidden.includes(name)) state.hidden.push(name);
  filtersChanged();
}

// Bars are relative to the best score of the ranking: probabilities of single labels are small.
function fillRanking(table, notice, ranking) {
  const recommendations = ranking.recommendations;
  const top = Math.max(...recommendations.map((item) => item.score), 1e-9);
  const rows = recommendations.flatMap((item) => {
    const bar = el("div", { className: "bar" }, el("span"), el("b", { textContent: item.score.toFixed(3) }));
    bar.firstChild.style.width = `${((item.score / top) * 100).toFixed(1)}%`;
    const label = el("td", {}, chip(item.label, item.clac1));
    if (item.bought_before) {
      label.append(el("span", { className: "bought-marker", textContent: " ★", title: "bought before" }));
    }
    const hide = el("button", { type: "button", className: "hide", textContent: "✕", title: `hide ${item.label}` });
    hide.addEventListener("click", () => hideLabel(item.label));
    label.append(hide);
    if (item.reason) label.append(el("span", { className: "reason", textContent: item.reason }));
    return labelRows(item, label, [el("td", { textContent: item.rank }), label, el("td", {}, bar)]);
  });
  table.tBodies[0].replaceChildren(...rows);
  table.hidden = false;
  notice.textContent = ranking.notice || "";
  notice.hidden = !ranking.notice;
}

async function rankClient() {
  const params = filterParams();
  params.set("k", $("#client-k").value);
  params.set("products", PRODUCTS);
  params.set("explain", "true");
  $("#client-ranking").hidden = true;
  const ranking = await api(`/recommend/${state.clientId}?${params}`);
  showError($("#client-error"), null);
  fillRanking($("#client-ranking"), $("#client-notice"), ranking);
}

// Shows the client's demographics and sessions (training, then recorded, dated), then its ranking.
async function showClient(id) {
  const client = await api(`/clients/${id}`);
  state.clientId = id;
  const gender = { F: "female", M: "male" }[client.gender] || "unknown gender";
  const age = client.age ? `${client.age}s` : "unknown age";
  const recorded = client.recorded_sessions;
  const counts = `${client.sessions.length} training sessions, ${recorded.length} recorded`;
  const origin = client.in_training ? "" : " (not in the training data)";
  $("#client-demographics").textContent = `Client ${client.client_id}${origin}: ${gender}, ${age}, ${counts}`;
  $("#client-sessions").replaceChildren(
    ...client.sessions.map((session) => el("li", {}, ...session.map((l) => chip(l.label, l.clac1)))),
    ...recorded.map((session) => el("li", { className: "recorded", title: `session ${session.session_id}` },
      el("time", { textContent: session.date, dateTime: session.date }),
      ...session.labels.map((l) => chip(l.label, l.clac1 || "?")))));
  await rankClient();
  $("#client-result").hidden = false;
}

async function lookupClient(event) {
  event.preventDefault();
  const id = $("#client-id").value.trim();
  showError($("#client-error"), null);
  showError($("#record-error"), null);
  $("#record-status").textContent = "";
  $("#client-result").hidden = true;
  state.clientId = null;
  try {
    if (!/^-?\d+$/.test(id)) throw new ApiError("A client ID is a whole number");
    await showClient(id);
  } catch (err) {
    showError($("#client-error"), err);
  }
}

// Records the basket builder's labels as a session of the client shown, then shows its new ranking.
async function recordSession(event) {
  event.preventDefault();
  showError($("#record-error"), null);
  $("#record-status").textContent = "";
  const key = $("#record-key").value;
  sessionStorage.setItem("wdrec-write-key", key);
  const session = {
    session_id: `web-${Date.now()}`,
    date: $("#record-date").value,
    labels: state.basket.map((label) => label.name),
  };
  try {
    if (!session.labels.length) throw new ApiError("Pick the session's labels in the basket builder first");
    await api(`/clients/${state.clientId}/sessions`,
      { method: "POST", body: JSON.stringify(session), headers: { "Content-Type": "application/json", "X-API-Key": key } });
    await showClient(state.clientId);
    $("#record-status").textContent = `Recorded session ${session.session_id} of ${session.date}: the ranking above includes it.`;
  } catch (err) {
    showError($("#record-error"), err);
  }
}

function renderBasket() {
  const items = state.basket.map((label) => {
    const node = chip(label.name, label.clac1);
    node.title = "click to remove";
    node.addEventListener("click", () => {
      state.basket = state.basket.filter((other) => other !== label);
      renderBasket();
      scheduleScore();
    });
    return node;
  });
  $("#basket-items").replaceChildren(...(items.length ? items : [el("em", { textContent: "empty — pick labels below" })]));
}

function renderLabelList() {
  const query = $("#label-search").value.trim().toLowerCase();
  const groups = new Map();
  for (const label of state.labels) {
    const match = !query || label.name.toLowerCase().includes(query) || label.clac1.toLowerCase().includes(query);
    if (!match || state.basket.includes(label)) continue;
    if (!groups.has(label.clac1)) groups.set(label.clac1, []);
    groups.get(label.clac1).push(label);
  }
  const nodes = [];
  for (const [clac1, labels] of groups) {
    nodes.push(el("h4", { textContent: clac1 }));
    for (const label of labels) {
      const button = el("button", { type: "button", className: "pick", title: `add ${label.name}` },
        chip(label.name, label.clac1));
      button.addEventListener("click", () => {
        state.basket.push(label);
        renderBasket();
        renderLabelList();
        scheduleScore();
      });
      nodes.push(button);
    }
  }
  $("#label-list").replaceChildren(...(nodes.length ? nodes : [el("em", { textContent: "no label matches" })]));
}

function scheduleScore() {
  clearTimeout(state.scoreTimer);
  state.scoreTimer = setTimeout(scoreBasket, 150);  // one request per burst of clicks
}

async function scoreBasket() {
  const request = {
    basket: state.basket.map((label) => label.name), k: Number($("#basket-k").value), products: PRODUCTS,
    explain: true, ...filters(),
  };
  if ($("#basket-gender").value) request.gender = $("#basket-gender").value;
  if ($("#basket-age").value) request.age = Number($("#basket-age").value);
  showError($("#basket-error"), null);
  if (!request.basket.length && !request.gender && !request.age) {
    $("#basket-ranking").hidden = true;
    return;
  }
  try {
    const ranking = await api("/score", { method: "POST", body: JSON.stringify(request) });
    fillRanking($("#basket-ranking"), $("#basket-notice"), ranking);
  } catch (err) {
    $("#basket-ranking").hidden = true;
    $("#basket-notice").hidden = true;
    showError($("#basket-error"), err);
  }
}

function renderModelCard(card) {
  const data = card.trained_on;
  const facts = [
    ["version", card.version],
    ["trained", new Date(card.created_at).toLocaleString()],
    ["data", [data.source, data.profile && `profile ${data.profile}`].filter(Boolean).join(", ") || "unknown"],
    ["size", `${card.n_labels} labels, ${card.n_clients} clients`],
  ];
  $("#model-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { textContent: k }), el("dd", { textContent: v })]));
  state.card = card;
  renderModelMetrics();
}

function verdict(card, split) {
  const paired = ((card.card || {})["paired_ndcg@10"] || {})[split];
  if (!paired) return "";
  const start = card.card.start || {};
  const sign = paired.mean >= 0 ? "+" : "";
  let text = `${card.model_method} minus ${paired.versus} (the best baseline): NDCG@10 ${sign}${paired.mean.toFixed(4)}`
    + ` ± ${paired.se.toFixed(4)} per client (z = ${paired.z.toFixed(2)}, ratio ${paired.ratio.toFixed(3)}).`;
  if (start.baseline) {
    text += ` Training started at ${start.baseline}'s ranking`
      + (start.kept ? "; nothing beat it on validation, so the start was kept." : ".");
  }
  return text;
}

function renderModelMetrics() {
  const card = state.card;
  if (!card) return;
  const split = $("#model-split").value;
  const rows = card.metrics[split] || {};
  const methods = Object.keys(rows);
  $("#model-verdict").textContent = verdict(card, split);
  if (!methods.length) return;
  const available = Object.keys(rows[methods[0]]);
  const columns = KEY_METRICS.filter(([key]) => available.includes(key));
  const cell = (values, key) => {
    const value = (values[key] ?? NaN).toFixed(4);
    return key === "ndcg@10_minus_best_baseline" ? `${value} ± ${(values[`${key}_se`] ?? NaN).toFixed(4)}` : value;
  };
  const table = $("#model-metrics");
  table.tHead.replaceChildren(el("tr", {}, el("th", { textContent: `${split} set` }),
    ...columns.map(([, title]) => el("th", { textContent: title }))));
  table.tBodies[0].replaceChildren(...methods.map((method) => el("tr",
    { className: method === card.model_method ? "model-row" : "" },
    el("td", { textContent: method }),
    ...columns.map(([key]) => el("td", { textContent: cell(rows[method], key) })))));
}

async function loadCatalog() {
  try {
    const [labels, card, clients, openapi] = await Promise.all(
      [api("/labels"), api("/model"), api("/clients?limit=20"), api("/openapi.json")]);
    $("#record-form").hidden = !("/clients/{client_id}/sessions" in openapi.paths);  // no write key: no route
    state.labels = labels.groups.flatMap((g) => g.labels.map((l) => ({ name: l.name, clac1: g.clac1 })));
    labels.groups.forEach((g) => clac1Colour(g.clac1));
    for (const id of ["#filter-clac1", "#filter-exclude-clac1"]) {
      $(id).replaceChildren(...labels.groups.map((g) => el("option", { value: g.clac1, textContent: g.clac1 })));
    }
    renderLabelList();
    renderModelCard(card);
    $("#client-ids").replaceChildren(...clients.clients.map((c) => el("option", { value: c.client_id })));
    if (clients.clients.length) $("#client-id").placeholder = `e.g. ${clients.clients[0].client_id}`;
  } catch (err) {
    showError($("#global-error"), err);
    showError($("#model-error"), err);
  }
}

function init() {
  for (let age = 10; age <= 80; age += 10) $("#basket-age").append(el("option", { value: age, textContent: `${age}s` }));
  $("#lookup-form").addEventListener("submit", lookupClient);
  $("#record-form").addEventListener("submit", recordSession);
  $("#record-date").value = new Date().toLocaleDateString("sv");  // today, YYYY-MM-DD, in local time
  $("#record-key").value = sessionStorage.getItem("wdrec-write-key") || "";
  $("#label-search").addEventListener("input", renderLabelList);
  $("#model-split").addEventListener("change", renderModelMetrics);
  for (const id of ["#basket-gender", "#basket-age", "#basket-k"]) $(id).addEventListener("change", scheduleScore);
  for (const id of ["#filter-new", "#filter-clac1", "#filter-exclude-clac1"]) {
    $(id).addEventListener("change", filtersChanged);
  }
  $("#filter-clear").addEventListener("click", () => {
    $("#filter-new").checked = false;
    for (const id of ["#filter-clac1", "#filter-exclude-clac1"]) [...$(id).options].forEach((o) => { o.selected = false; });
    state.hidden = [];
    filtersChanged();
  });
  $("#filter-exclude").replaceChildren(el("em", { textContent: "none" }));
  loadCatalog();
}

init();
