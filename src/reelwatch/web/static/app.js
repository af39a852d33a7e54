// reelwatch dashboard: live rows, live generation page, toasts. No build step, no framework.
// The server renders every fragment (the same templates as the page); this file only listens
// to /api/events and swaps fragments in.
"use strict";

const page = document.body.dataset.page;
// Event kinds, as the server names them (models.EventKind, written into the page).
const KIND = JSON.parse(document.getElementById("event-kinds").textContent);
const pending = new Map();

// The prompt a toast names the video by: from the row on the page, else from the API.
async function promptOf(id) {
  const link = document.querySelector(`tr[data-generation="${id}"] .what a`);
  if (link) return link.textContent.trim();
  try {
    const response = await fetch(`/api/generations/${id}`, { credentials: "same-origin" });
    if (response.ok) return (await response.json()).prompt;
  } catch (error) { console.warn("prompt lookup failed", error); }
  return id;
}

function shorten(text, most) {
  return text.length > most ? text.slice(0, most - 1) + "…" : text;
}

async function toast(event) {
  const box = document.getElementById("toasts");
  if (!box) return;
  const name = `“${shorten(await promptOf(event.generation_id), 60)}”`;
  const item = document.createElement("div");
  const failed = event.kind === KIND.FAILED;
  item.className = "toast" + (failed ? " failed" : "");
  item.setAttribute("role", "status");
  const text = document.createElement("span");
  text.textContent = failed
    ? `Failed: ${name}: ${event.data.message || event.data.code || "unknown error"}`
    : `Ready: ${name}`;
  const link = document.createElement("a");
  link.href = `/generations/${event.generation_id}`;
  link.textContent = "Open";
  item.append(text, link);
  box.append(item);
  setTimeout(() => item.remove(), 12000);
}

async function fragment(url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
  if (!response.ok) return null;
  const holder = document.createElement("template");
  holder.innerHTML = (await response.text()).trim();
  return holder.content;
}

// Several events for one generation often arrive together: refresh each once per burst.
function refresh(id, work) {
  if (pending.has(id)) return;
  pending.set(id, setTimeout(async () => {
    pending.delete(id);
    try { await work(); } catch (error) { console.warn("refresh failed", error); }
  }, 100));
}

async function refreshRow(id) {
  const rows = document.getElementById("rows");
  if (!rows) return;
  const current = rows.querySelector(`tr[data-generation="${id}"]`);
  const firstPage = document.querySelector("table.generations")?.dataset.firstPage === "yes";
  if (!current && !firstPage) return;  // not on this page of results
  const content = await fragment(`/partials/row/${id}`);
  if (!content) return;
  const row = content.querySelector("tr");
  const ticked = current?.querySelector("input[name=ids]")?.checked;
  if (ticked) row.querySelector("input[name=ids]").checked = true;  // a live update keeps the tick
  if (current) current.replaceWith(row); else rows.prepend(row);
}

async function refreshDetail(id) {
  const detail = document.getElementById("detail");
  if (!detail || detail.dataset.generation !== id) return;
  const content = await fragment(`/partials/generations/${id}`);
  if (!content) return;
  detail.replaceChildren(content);
}

// --- the "New generation" form (a dialog on the list, or its own page) ---------------------

const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";
const following = new Map();  // generation id -> the form following it

function formBody(form) {
  const data = new FormData(form);
  const params = {};
  for (const line of (data.get("params") || "").split("\n")) {
    const at = line.indexOf("=");
    if (line.trim() && at > 0) params[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  const body = { prompt: data.get("prompt") || "", provider: data.get("provider"), model: data.get("model"), params };
  const seconds = (data.get("seconds") || "").trim();
  const size = (data.get("size") || "").trim();
  if (seconds) body.seconds = /^\d+$/.test(seconds) ? Number(seconds) : seconds;
  if (size) body.size = size;
  return body;
}

async function api(path, body) {
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
    body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  return { ok: response.ok, data };
}

async function estimate(form) {
  const body = formBody(form);
  if (!body.prompt.trim()) body.prompt = "estimate";  // the cost does not depend on the words
  const { ok, data } = await api("/api/estimate", body);
  form.querySelector("output[name=cost]").textContent =
    ok ? (data.estimated_cost_usd == null ? "unknown" : `$${data.estimated_cost_usd.toFixed(2)}`) : "--";
  form.querySelector(".estimate-error").textContent = ok ? "" : (data.error?.message || "");
}

function fillModels(form) {
  const choices = JSON.parse(form.dataset.choices || "[]");
  const chosen = choices.find((p) => p.name === form.elements.provider.value);
  const models = form.elements.model;
  models.replaceChildren(...(chosen?.models || []).map((m) => new Option(m, m, false, m === chosen.default_model)));
}

async function showFollowed(form, id) {
  const response = await fetch(`/api/generations/${id}`, { credentials: "same-origin" });
  if (!response.ok) return null;
  const g = await response.json();
  const bar = form.querySelector(".follow [role=progressbar]");
  bar.setAttribute("aria-valuenow", g.progress);
  bar.querySelector("span").style.width = `${g.progress}%`;
  const eta = g.eta_text ? (g.overdue ? ` · ${g.eta_text}` : ` · ETA ${g.eta_text}`) : "";
  form.querySelector(".follow-step").textContent = `${g.step} (${g.progress}%)${eta}`;
  return g;
}

function wireNewForm(form) {
  let timer = null;
  const later = () => { clearTimeout(timer); timer = setTimeout(() => estimate(form), 250); };
  form.elements.provider.addEventListener("change", () => { fillModels(form); later(); });
  for (const name of ["model", "seconds", "size", "params"]) form.elements[name].addEventListener("input", later);
  form.querySelector(".close").addEventListener("click", () => form.closest("dialog")?.close());
  form.addEventListener("submit", async (submitted) => {
    submitted.preventDefault();
    const { ok, data } = await api("/api/generations", formBody(form));
    if (!ok) {
      form.querySelector(".estimate-error").textContent = data.error?.message || "not submitted";
      return;
    }
    form.querySelector(".follow").hidden = false;
    form.querySelector("button[type=submit]").disabled = true;
    form.querySelector(".close").hidden = false;
    form.dataset.following = data.id;
    following.set(data.id, form);
    await showFollowed(form, data.id);
  });
  estimate(form);
}

function wireNewForms() {
  for (const form of document.querySelectorAll("form.new-generation")) wireNewForm(form);
  const dialog = document.getElementById("new-dialog");
  const opener = document.querySelector(".open-new");
  if (dialog && opener && dialog.showModal) {
    opener.addEventListener("click", (clicked) => { clicked.preventDefault(); dialog.showModal(); });
  }
}

async function followed(event) {
  const form = following.get(event.generation_id);
  if (!form) return;
  const g = await showFollowed(form, event.generation_id);
  if (!g || (g.status !== "completed" && g.status !== "failed" && g.status !== "cancelled")) return;
  following.delete(event.generation_id);
  form.querySelector("button[type=submit]").disabled = false;
  if (g.status === "completed") {
    form.reset();
    form.querySelector(".follow").hidden = true;
    form.closest("dialog")?.close();
  }
}

function listen() {
  if (!window.EventSource || page === "login") return;
  const source = new EventSource("/api/events");
  source.addEventListener("generation", (message) => {
    const event = JSON.parse(message.data);
    const id = event.generation_id;
    if (event.kind === KIND.COMPLETED || event.kind === KIND.FAILED) toast(event);
    if (following.has(id)) refresh(`new-${id}`, () => followed(event));
    if (page === "list") refresh(id, () => refreshRow(id));
    if (page === "generation") {
      refresh(id, () => refreshDetail(id));
      const detail = document.getElementById("detail");
      if (event.kind === KIND.COMPLETED && detail?.dataset.generation === id && !document.getElementById("player")) {
        setTimeout(() => location.reload(), 300);  // the player appears once the file is stored
      }
    }
  });
}

document.querySelector(".select-all")?.addEventListener("change", (changed) => {
  for (const box of document.querySelectorAll("#rows input[name=ids]")) box.checked = changed.target.checked;
});
// Charts: the figures of the bar or mark under the pointer (or focused) read out beside the
// chart, where a touch screen can show them too; each carries them in its SVG <title>.
function wireCharts() {
  for (const chart of document.querySelectorAll("svg.chart")) {
    const readout = document.createElement("p");
    readout.className = "readout";
    readout.setAttribute("aria-live", "polite");
    readout.textContent = "Point at a bar for its figures.";
    chart.after(readout);
    const show = (target) => {
      const title = target.closest("rect, line")?.querySelector("title");
      if (title) readout.textContent = title.textContent;
    };
    chart.addEventListener("pointerover", (moved) => show(moved.target));
    chart.addEventListener("click", (clicked) => show(clicked.target));
  }
}

wireCharts();
wireNewForms();
listen();
