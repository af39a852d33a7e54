// reelwatch dashboard: live rows, live generation page, toasts. No build step, no framework.
// The server renders every fragment (the same templates as the page); this file only listens
// to /api/events and swaps fragments in.
"use strict";

const page = document.body.dataset.page;
// Event kinds, as the server names them (models.EventKind, written into the page).
const KIND = JSON.parse(document.getElementById("event-kinds").textContent);
const pending = new Map();

function toast(event) {
  const box = document.getElementById("toasts");
  if (!box) return;
  const item = document.createElement("div");
  const failed = event.kind === KIND.FAILED;
  item.className = "toast" + (failed ? " failed" : "");
  item.setAttribute("role", "status");
  const text = document.createElement("span");
  text.textContent = failed
    ? `Failed: ${event.data.message || event.data.code || "unknown error"}`
    : "Finished: a video is ready";
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
  if (current) current.replaceWith(row); else rows.prepend(row);
}

async function refreshDetail(id) {
  const detail = document.getElementById("detail");
  if (!detail || detail.dataset.generation !== id) return;
  const content = await fragment(`/partials/generations/${id}`);
  if (!content) return;
  detail.replaceChildren(content);
}

function listen() {
  if (!window.EventSource || page === "login") return;
  const source = new EventSource("/api/events");
  source.addEventListener("generation", (message) => {
    const event = JSON.parse(message.data);
    const id = event.generation_id;
    if (event.kind === KIND.COMPLETED || event.kind === KIND.FAILED) toast(event);
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

listen();
